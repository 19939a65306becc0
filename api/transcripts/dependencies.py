"""Path dependencies: a transcript, code, coding or suggestion that exists and that the caller may see.

Coordinators see the transcripts of their own sites (and what hangs off them); anything else is a
404, so that they cannot learn another site's records exist.
"""

from __future__ import annotations

from fastapi import Depends, Path, Request
from sqlmodel import Session

from api.auth.dependencies import authenticated
from api.auth.service import Actor
from api.db import end_read, get_session
from api.errors import NotFound
from api.studies.models import Study
from api.studies.service import can_see_study
from api.transcripts.models import QualCode, QualCoding, Suggestion, Transcript

MAX_ID = 2**31 - 1  # ids are 32-bit integers on every backend


def settings_of(request: Request):
    """The application's settings (NER model, secret) as the routes pass them to the services."""
    return request.app.state.settings


def same_study(study: Study, study_id: int, loc) -> None:
    """404 naming ``loc`` when an object of study ``study_id`` is asked for under another study."""
    if study.id != study_id:
        raise NotFound(list(loc), "not found in this study")


def transcript_for(session: Session, actor: Actor, transcript_id: int, loc=("path", "transcript_id")) -> Transcript:
    t = session.get(Transcript, transcript_id)
    if t is None or not can_see_study(session, actor, t.study_id) or not actor.sees_site(t.site_id):
        raise NotFound(list(loc), "transcript not found")
    return t


def valid_transcript(
    transcript_id: int = Path(ge=1, le=MAX_ID),
    session: Session = Depends(get_session),
    actor: Actor = Depends(authenticated),
) -> Transcript:
    t = transcript_for(session, actor, transcript_id)
    end_read(session)
    return t


def valid_code(
    code_id: int = Path(ge=1, le=MAX_ID), session: Session = Depends(get_session), actor: Actor = Depends(authenticated)
) -> QualCode:
    c = session.get(QualCode, code_id)
    if c is None or not can_see_study(session, actor, c.study_id):
        raise NotFound(["path", "code_id"], "code not found")
    end_read(session)
    return c


def valid_coding(
    coding_id: int = Path(ge=1, le=MAX_ID),
    session: Session = Depends(get_session),
    actor: Actor = Depends(authenticated),
) -> QualCoding:
    c = session.get(QualCoding, coding_id)
    if c is None:
        raise NotFound(["path", "coding_id"], "coding not found")
    transcript_for(session, actor, c.transcript_id, loc=("path", "coding_id"))
    end_read(session)
    return c


def valid_suggestion(
    suggestion_id: int = Path(ge=1, le=MAX_ID),
    session: Session = Depends(get_session),
    actor: Actor = Depends(authenticated),
) -> Suggestion:
    s = session.get(Suggestion, suggestion_id)
    if s is None:
        raise NotFound(["path", "suggestion_id"], "suggestion not found")
    transcript_for(session, actor, s.transcript_id, loc=("path", "suggestion_id"))
    end_read(session)
    return s
