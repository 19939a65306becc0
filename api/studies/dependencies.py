"""Path-parameter dependencies shared by routers: a study, a participant, a wave that exists and
that the current user may see (404 otherwise)."""

from __future__ import annotations

from fastapi import Depends, Path
from sqlmodel import Session

from api.auth.dependencies import authenticated
from api.auth.service import Actor
from api.db import end_read, get_session
from api.studies.models import Study, Wave
from api.studies.service import get_wave, require_study


def valid_study(
    study_id: int = Path(ge=1, le=2**31 - 1),
    session: Session = Depends(get_session),
    actor: Actor = Depends(authenticated),
) -> Study:
    """The study of the path, visible to the current user."""
    study = require_study(session, study_id, actor)
    end_read(session)
    return study


def valid_wave(wave_code: str, study: Study = Depends(valid_study), session: Session = Depends(get_session)) -> Wave:
    """The wave ``wave_code`` of the study in the path (for routes under ``/studies/{id}/waves/{code}``)."""
    wave = get_wave(session, study.id, wave_code, loc=("path", "wave_code"))
    end_read(session)
    return wave
