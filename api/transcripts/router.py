"""Routes of the qualitative layer: transcripts, REFI-QDA exchange, indicators and joint displays
(the codebook, codings and suggestions are in :mod:`api.transcripts.coding_router`).

Admins and coordinators (their sites) upload and code; analysts read de-identified material only;
the originals (identifier vault) are for admins.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import Response
from sqlmodel import Session

from api.audit.service import record
from api.auth.dependencies import authorize
from api.auth.policy import ADMIN, READERS, STAFF
from api.auth.service import Actor
from api.db import end_read, get_session
from api.errors import Unprocessable
from api.exports.deid import sees_calendar_dates
from api.inputguard import NUL_TYPE, NulInDatabaseValue
from api.routing import add_plot_route
from api.studies.dependencies import valid_study
from api.studies.models import Study
from api.transcripts import analysis, exchange, service
from api.transcripts.dependencies import (
    settings_of,
    valid_transcript,
)
from api.transcripts.models import Transcript
from api.transcripts.schemas import (
    ImportReport,
    JointDisplayRead,
    JointDisplayRequest,
    TranscriptOriginalRead,
    TranscriptRead,
    TranscriptSummary,
    UploadReport,
)

router = APIRouter(tags=["transcripts"])


# --------------------------------------------------------------------------- transcripts


@router.post("/studies/{study_id}/transcripts", status_code=201, response_model=UploadReport)
def upload(
    request: Request,
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    file: UploadFile = File(..., description="plain text, Markdown, WebVTT, SRT or .docx"),
    participants: str = Form(
        ..., max_length=2000, description="study code(s), comma-separated; several make a focus group"
    ),
    wave: str | None = Form(None, max_length=40, description="wave code"),
    kind: Literal["interview", "focus_group"] | None = Form(None),
    format: Literal["text", "markdown", "vtt", "srt", "docx"] | None = Form(
        None, description="default: from the file name's suffix"
    ),
    title: str | None = Form(None, max_length=200),
    interviewer_labels: str | None = Form(
        None, max_length=500, description="comma-separated labels of interviewers/facilitators"
    ),
    speaker_map: str | None = Form(
        None, max_length=5000, description='JSON {"label": "study code"} for focus-group speakers'
    ),
):
    """Upload a transcript; it is de-identified with the participants' vault identifiers before storage."""
    codes = service.parse_list(participants, ("body", "participants")) or []
    labels = service.parse_list(interviewer_labels, ("body", "interviewer_labels")) if interviewer_labels else None
    smap = service.parse_speaker_map(speaker_map)
    data = file.file.read()
    row, result = service.upload_transcript(
        session,
        study,
        actor,
        data=data,
        filename=file.filename or "upload",
        participants=codes,
        wave=wave,
        kind=kind,
        fmt=format,
        title=title,
        interviewer_labels=labels,
        speaker_map=smap,
        settings=settings_of(request),
    )
    waves = service.wave_codes(session, study.id)
    out = {
        **service.read(row, waves),
        "ner_model": row.ner_model,
        "replacements": row.replacement_counts,
        "warnings": result.warnings,
    }
    session.commit()
    return out


@router.get("/studies/{study_id}/transcripts", response_model=list[TranscriptSummary])
def list_transcripts(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    waves = service.wave_codes(session, study.id)
    out = [service.summary(t, waves) for t in service.visible_transcripts(session, study, actor)]
    _analyst_times(actor, out)
    end_read(session)
    return out


def _analyst_times(actor: Actor, items: list[dict]) -> None:
    """The upload time of an interview dates the interview: analysts, who see no calendar date of a
    participant (api/exports/deid.py), get none (a focus group has no single participant's shift)."""
    if not sees_calendar_dates(actor):
        for item in items:
            item["created_at"] = None


@router.get("/studies/{study_id}/transcripts/search")
def search(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    q: str = Query(..., min_length=1, max_length=200, description="word or phrase"),
    window: int = Query(40, ge=5, le=400),
    lemma: bool = Query(True, description="match on lemmas"),
):
    """Keyword in context over the de-identified texts (every inflection matches with ``lemma=true``)."""
    corpus = analysis.load_corpus(session, study, actor)
    end_read(session)
    return analysis.search(corpus, q, window, lemma)


@router.get("/transcripts/{transcript_id}", response_model=TranscriptRead)
def get_transcript(
    actor: Actor = Depends(authorize(*READERS)),
    t: Transcript = Depends(valid_transcript),
    session: Session = Depends(get_session),
):
    out = service.read(t, service.wave_codes(session, t.study_id))
    _analyst_times(actor, [out])
    end_read(session)
    return out


@router.get("/transcripts/{transcript_id}/original", response_model=TranscriptOriginalRead)
def get_original(
    actor: Actor = Depends(authorize(*ADMIN)),
    t: Transcript = Depends(valid_transcript),
    session: Session = Depends(get_session),
):
    """The original text and the replaced identifiers (identifier vault: admins only)."""
    out = service.original(session, t)
    end_read(session)
    return out


# --------------------------------------------------------------------------- REFI-QDA


@router.get("/studies/{study_id}/refi/codebook.qdc")
def refi_codebook(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    corpus = analysis.load_corpus(session, study, actor)
    end_read(session)
    return Response(
        analysis.export_qdc(corpus),
        media_type="application/xml",
        headers={"Content-Disposition": f'attachment; filename="study-{study.id}-codebook.qdc"'},
    )


@router.get("/studies/{study_id}/codebook.csv")
def codebook_csv(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """The codebook as Taguette's CSV (UTF-8 with BOM): path, description, counts, Peerlens' fields."""
    corpus = analysis.load_corpus(session, study, actor)
    end_read(session)
    return Response(
        exchange.export_codebook_csv(corpus),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="study-{study.id}-codebook.csv"'},
    )


@router.get("/studies/{study_id}/refi/project.qdpx")
def refi_project(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """The de-identified coded corpus the caller may see, as a REFI-QDA project."""
    corpus = analysis.load_corpus(session, study, actor)
    data = analysis.export_qdpx(session, corpus)
    record(
        session,
        actor,
        "export",
        "refi_project",
        study.id,
        study_id=study.id,
        after={"transcripts": len(corpus.rows), "codes": len(corpus.codes), "codings": len(corpus.codings)},
    )
    session.commit()
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="study-{study.id}.qdpx"'},
    )


@router.post("/studies/{study_id}/refi/import", status_code=201, response_model=ImportReport)
def refi_import(
    request: Request,
    actor: Actor = Depends(authorize(*ADMIN)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    file: UploadFile = File(
        ...,
        description="REFI-QDA codebook (.qdc) or project (.qdpx), Taguette project (.sqlite3) or codebook (.csv)",
    ),
    on_conflict: Literal["merge", "rename", "skip"] | None = Form(
        None, description="what to do with imported codes whose key exists with another name, codability or parent"
    ),
):
    """Import codes (and, from a project, sources, codings and memos); sources are de-identified again.

    A code that clashes with the study's code of the same key is a 409 listing the conflicts unless
    ``on_conflict`` says to merge, rename or skip."""
    data = file.file.read()
    if not data:
        raise Unprocessable(["body", "file"], "the file is empty", "empty_file")
    try:
        report = exchange.import_file(
            session, study, actor, data, file.filename or "import", settings_of(request), on_conflict=on_conflict
        )
    except NulInDatabaseValue as exc:
        raise Unprocessable(["body", "file"], exc.errors[0]["msg"], NUL_TYPE) from None
    session.commit()
    return report


# --------------------------------------------------------------------------- mixed methods


@router.get("/studies/{study_id}/qualitative/indicators")
def indicators(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """One row per interviewed participant: ``code:<key>`` (0/1) and ``count:<key>`` per codable code."""
    corpus = analysis.load_corpus(session, study, actor)
    end_read(session)
    return analysis.indicators(corpus)


@router.post("/studies/{study_id}/qualitative/joint-display", response_model=JointDisplayRead)
def joint_display(
    body: JointDisplayRequest,
    request: Request,
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Themes against outcome change (Hedges' g with CI, exemplar quotes) and a plot.

    Analysts, who never write, ask for the same table with ``GET .../joint-display?theme=...``.
    """
    out = analysis.joint_display(session, study, actor, body, settings_of(request))
    session.commit()
    return out


@router.get("/studies/{study_id}/qualitative/joint-display", response_model=JointDisplayRead)
def joint_display_get(
    request: Request,
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    theme: list[str] = Query(..., min_length=1, max_length=50, description="code key or id"),
    scale: list[str] | None = Query(None, max_length=50),
    baseline: str | None = Query(None, max_length=40),
    followup: str | None = Query(None, max_length=40),
    arm: str | None = Query(None, max_length=40),
    quotes: int = Query(2, ge=0, le=10),
    plot_format: Literal["png", "svg"] = "svg",
):
    """The joint display of the POST route, as a read (query parameters instead of a body)."""
    try:
        body = JointDisplayRequest(
            themes=theme,
            scales=scale,
            baseline=baseline,
            followup=followup,
            arm=arm,
            quotes=quotes,
            plot_format=plot_format,
        )
    except ValueError:
        raise Unprocessable(["query", "theme"], "invalid joint-display parameters", "value_error") from None
    out = analysis.joint_display(session, study, actor, body, settings_of(request), write=False)
    end_read(session)
    return out


add_plot_route(router, "qualitative", "A joint-display plot (PNG or SVG) of this study.")
