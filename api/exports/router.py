"""/studies/{id}/exports: streamed cohort files, their data dictionaries and export settings."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response as PlainResponse
from fastapi.responses import StreamingResponse
from sqlmodel import Session

from api.auth.dependencies import authorize
from api.auth.policy import ADMIN, READERS
from api.auth.service import Actor
from api.db import end_read, get_session
from api.errors import NotFound
from api.exports import integrity, service, writers
from api.exports.dictionary import dictionary_bytes, dictionary_csv
from api.exports.schemas import ExportReceipt, ExportSettingsIn, ExportSettingsRead, Format, Shape
from api.studies.dependencies import valid_study
from api.studies.models import Study

router = APIRouter(tags=["exports"])

# Response header of every streamed export: the URL of its receipt (see api/exports/integrity.py).
RECEIPT_HEADER = "Peerlens-Export-Receipt"

_WAVES = Query(None, description="comma-separated wave codes (default: all)")
_INSTRUMENTS = Query(None, description="comma-separated instrument codes (default: all)")
_SITES = Query(None, description="comma-separated site codes (default: all you may see)")
_IDENTIFIERS = Query(False, description="join the contact vault (admins; coordinators for their own sites)")
_ITEMS = Query(False, description="wide shape: add a column per item")
_ESCAPE = Query(
    True,
    description="CSV: prefix ' to text cells starting with = + - @ tab or CR so spreadsheets show them as text "
    "(OWASP CSV injection); false writes them verbatim",
)


def _filters(waves, instruments, sites, identifiers, items, escape_formulas=True) -> service.ExportFilters:
    return service.ExportFilters(
        waves=[waves] if waves else None,
        instruments=[instruments] if instruments else None,
        sites=[sites] if sites else None,
        identifiers=identifiers,
        items=items,
        escape_formulas=escape_formulas,
    )


def stream(engine, plan: service.Plan, shape: str, fmt: str, dictionary: dict) -> Iterator[bytes]:
    """Encode the export as it is read (audited when the stream ends, see :func:`service.audited_stream`)."""
    return service.audited_stream(
        engine,
        plan,
        lambda session: service.export_chunks(session, plan, shape, fmt, dictionary),
        shape=shape,
        fmt=fmt,
    )


@router.get("/studies/{study_id}/export-settings", response_model=ExportSettingsRead)
def get_settings(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    s = service.export_settings(session, study.id)
    end_read(session)
    return ExportSettingsRead(
        study_id=study.id, date_mode=s.date_mode, free_text_items=s.free_text_items, updated_at=s.updated_at
    )


@router.put("/studies/{study_id}/export-settings", response_model=ExportSettingsRead)
def put_settings(
    body: ExportSettingsIn,
    actor: Actor = Depends(authorize(*ADMIN)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Choose how dates reach analysts and flag free-text items to withhold (audited).

    Admins only: the settings apply to every site of the study, so a coordinator of one site
    must not change what analysts see of another."""
    s = service.update_settings(session, study, actor, date_mode=body.date_mode, free_text_items=body.free_text_items)
    session.commit()
    return ExportSettingsRead(
        study_id=study.id, date_mode=s.date_mode, free_text_items=s.free_text_items, updated_at=s.updated_at
    )


@router.get("/studies/{study_id}/exports/redcap")
def export_redcap(
    request: Request,
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    waves: str | None = _WAVES,
    instruments: str | None = _INSTRUMENTS,
    sites: str | None = _SITES,
    escape_formulas: bool = _ESCAPE,
):
    """The study as a REDCap flat records CSV (``record_id, redcap_event_name, fields…, <form>_complete``),
    de-identified by the same role rules as every export."""
    from api.interop.redcap_export import stream_records

    settings = request.app.state.settings
    plan = service.plan_export(
        session,
        study,
        actor,
        _filters(waves, instruments, sites, False, False, escape_formulas),
        secret=settings.secret_key,
    )
    end_read(session)
    return StreamingResponse(
        integrity.primed(stream_records(request.app.state.engine, plan)),
        media_type=writers.MEDIA_TYPES["csv"],
        headers={
            "Content-Disposition": f'attachment; filename="study-{study.id}-redcap.csv"',
            **receipt_header(study, actor),
        },
    )


def receipt_header(study: Study, actor: Actor) -> dict[str, str]:
    """The header naming a streamed export's receipt (none without a request id)."""
    return {RECEIPT_HEADER: f"/studies/{study.id}/export-receipts/{actor.request_id}"} if actor.request_id else {}


@router.get("/studies/{study_id}/export-receipts/{request_id}", response_model=ExportReceipt)
def export_receipt(
    request_id: str = Path(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$"),
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """What the server sent for one streamed export (named by its ``X-Request-Id``): whether it
    completed, its rows, byte count and SHA-256. A download whose size or digest differs, or whose
    receipt says ``complete: false``, is truncated or damaged: discard it. 404 while the export is
    still streaming or for an unknown id."""
    found = integrity.receipt(session, study.id, request_id)
    end_read(session)
    if found is None:
        raise NotFound(["path", "request_id"], "no finished export with this request id in the study")
    return found


@router.get("/studies/{study_id}/exports/redcap/dictionary")
def export_redcap_dictionary(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    escape_formulas: bool = _ESCAPE,
):
    """The REDCap data dictionary (18 columns) of the study's instruments."""
    from api.interop.redcap_export import data_dictionary_csv

    plan = service.plan_export(session, study, actor, service.ExportFilters(escape_formulas=escape_formulas))
    end_read(session)
    return PlainResponse(
        data_dictionary_csv(plan),
        media_type=writers.MEDIA_TYPES["csv"],
        headers={"Content-Disposition": f'attachment; filename="study-{study.id}-redcap-dictionary.csv"'},
    )


@router.get("/studies/{study_id}/exports/{shape}/dictionary")
def export_dictionary(
    shape: Shape,
    request: Request,
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    format: str = Query("json", pattern="^(json|csv)$"),
    waves: str | None = _WAVES,
    instruments: str | None = _INSTRUMENTS,
    sites: str | None = _SITES,
    identifiers: bool = _IDENTIFIERS,
    items: bool = _ITEMS,
    escape_formulas: bool = _ESCAPE,
):
    """The data dictionary of the export with the same parameters: every column's name, label, type,
    unit, allowed values, instrument, citation and licence."""
    plan = service.plan_export(
        session, study, actor, _filters(waves, instruments, sites, identifiers, items, escape_formulas)
    )
    end_read(session)
    if format == "csv":
        return PlainResponse(
            dictionary_csv(service.columns(plan, shape), escape_formulas=escape_formulas),
            media_type=writers.MEDIA_TYPES["csv"],
        )
    return PlainResponse(dictionary_bytes(service.dictionary(plan, shape)), media_type="application/json")


@router.get("/studies/{study_id}/exports/{shape}")
def export(
    shape: Shape,
    request: Request,
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    format: Format = Query("csv"),
    waves: str | None = _WAVES,
    instruments: str | None = _INSTRUMENTS,
    sites: str | None = _SITES,
    identifiers: bool = _IDENTIFIERS,
    items: bool = _ITEMS,
    escape_formulas: bool = _ESCAPE,
):
    """Stream the cohort in ``shape`` (long, wide, items) as csv, json, parquet, dta or sav.

    Analysts always receive de-identified data; the export is audited with its parameters and row
    count once streaming ends.
    """
    settings = request.app.state.settings
    plan = service.plan_export(
        session,
        study,
        actor,
        _filters(waves, instruments, sites, identifiers, items, escape_formulas),
        secret=settings.secret_key,
    )
    dictionary = service.dictionary(plan, shape)
    end_read(session)
    return StreamingResponse(
        integrity.primed(stream(request.app.state.engine, plan, shape, format, dictionary)),
        media_type=writers.MEDIA_TYPES[format],
        headers={
            "Content-Disposition": f'attachment; filename="study-{study.id}-{shape}.{format}"',
            **receipt_header(study, actor),
        },
    )
