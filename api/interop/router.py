"""Other systems' files: REDCap, clinical measures and participant imports, and the CDISC ODM export."""

from __future__ import annotations

import json
from typing import Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from sqlmodel import Session

from api.auth.dependencies import authorize
from api.auth.policy import READERS, STAFF
from api.auth.service import Actor
from api.db import end_read, get_session
from api.errors import Unprocessable
from api.exports import integrity
from api.exports import service as exports
from api.exports.router import receipt_header
from api.inputguard import decode_upload
from api.interop import odm
from api.interop.measures import import_measures
from api.interop.participants_csv import import_participants
from api.interop.service import import_redcap
from api.studies.dependencies import valid_study
from api.studies.models import Study

router = APIRouter(tags=["imports"])


@router.get("/studies/{study_id}/exports/odm", tags=["exports"])
def export_odm(
    request: Request,
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    content: Literal["all", "metadata"] = Query("all", description="all: design and data; metadata: design only"),
    waves: str | None = Query(None, description="comma-separated wave codes (default: all)"),
    instruments: str | None = Query(None, description="comma-separated instrument codes (default: all)"),
    sites: str | None = Query(None, description="comma-separated site codes (default: all you may see)"),
):
    """The study as one CDISC ODM 1.3.2 file (``Snapshot``): the design as ``MetaDataVersion``, sites and
    users as ``AdminData``, and every participant's data as ``ClinicalData``, de-identified by the same
    role rules as every export. Streamed; its receipt (``Peerlens-Export-Receipt``) gives the SHA-256."""
    plan = exports.plan_export(
        session,
        study,
        actor,
        exports.ExportFilters(
            waves=[waves] if waves else None,
            instruments=[instruments] if instruments else None,
            sites=[sites] if sites else None,
        ),
        secret=request.app.state.settings.secret_key,
    )
    end_read(session)
    suffix = "-design" if content == "metadata" else ""
    return StreamingResponse(
        integrity.primed(odm.stream(request.app.state.engine, plan, content=content)),
        media_type="application/xml",
        headers={
            "Content-Disposition": f'attachment; filename="study-{study.id}-odm{suffix}.xml"',
            **receipt_header(study, actor),
        },
    )


def _event_map(raw: str) -> dict[str, str]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise Unprocessable(
            ["body", "event_map"], "expected a JSON object of event name to wave code", "json_invalid"
        ) from None
    if (
        not isinstance(value, dict)
        or not value
        or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in value.items())
    ):
        raise Unprocessable(
            ["body", "event_map"], "expected a non-empty JSON object of event name to wave code", "event_map_invalid"
        )
    return value


def _text(upload: UploadFile, loc: str) -> str:
    text = decode_upload(upload.file.read(), ["body", loc], message="the file must be UTF-8 CSV")
    return text


@router.post("/studies/{study_id}/imports/redcap")
def import_redcap_route(
    records: UploadFile = File(..., description="REDCap flat records export (CSV)"),
    event_map: str = Form(..., description='JSON, e.g. {"baseline_arm_1": "baseline"}; "*" maps every event'),
    dictionary: UploadFile | None = File(None, description="REDCap data dictionary (CSV)"),
    dry_run: bool = Form(False),
    default_site: str | None = Form(None),
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Import REDCap data through the same validation, scoring and audit as any submission.

    200 with the report (``committed: true``) when written or on ``dry_run``; 422 with the report
    (``detail`` + ``report``) when any row failed, in which case nothing was written.
    """
    mapping = _event_map(event_map)
    report = import_redcap(
        session,
        study,
        actor,
        records_csv=_text(records, "records"),
        event_map=mapping,
        dictionary_csv=_text(dictionary, "dictionary") if dictionary is not None else None,
        dry_run=dry_run,
        default_site=default_site,
    )
    return _answer(session, report, "records")


@router.post("/studies/{study_id}/imports/measures")
def import_measures_route(
    file: UploadFile = File(..., description="CSV: participant, wave, instrument, measured_at, then item columns"),
    dry_run: bool = Form(False),
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Import clinical measures (lab results, records) through the same validation as any submission.

    200 with the report when written (``committed: true``) or on ``dry_run``; 422 with
    ``detail`` (row and column of each problem) and the report when any row failed, in which case
    nothing was written.
    """
    report = import_measures(session, study, actor, _text(file, "file"), dry_run=dry_run)
    return _answer(session, report, "file")


@router.post("/studies/{study_id}/imports/participants")
def import_participants_route(
    file: UploadFile = File(
        ...,
        description="CSV: site, enrolled_on, consent_date, consent_version[, study_code, arm, "
        "name, email, phone, date_of_birth, preferred_channel, opt_out]",
    ),
    dry_run: bool = Form(False),
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Enrol participants from a spreadsheet through the same checks as ``POST /studies/{id}/participants``.

    200 with the report when written (``committed: true``) or on ``dry_run``; 422 with ``detail``
    (row and column of each problem) and the report when any row failed, in which case nothing was written.
    """
    report = import_participants(session, study, actor, _text(file, "file"), dry_run=dry_run)
    return _answer(session, report, "file")


def _answer(session: Session, report, field: str):
    """An import's answer: commit when the report says so; 200 with the report, or 422 with ``detail``
    naming the row and column of each problem (``["body", field, row, column]``) and the report."""
    if report.committed:
        session.commit()
    body = report.as_dict()
    if not report.ok:
        detail = [
            {"loc": ["body", field, e.row if e.row is not None else "", e.field or ""], "msg": e.msg, "type": e.kind}
            for e in report.errors
        ]
        return JSONResponse({"detail": detail, "report": body}, status_code=422)
    return body
