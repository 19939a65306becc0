"""Path-parameter dependency shared by routers: a study that exists and that the current user may
see (404 otherwise)."""

from __future__ import annotations

from fastapi import Depends, Path
from sqlmodel import Session

from api.auth.dependencies import authenticated
from api.auth.service import Actor
from api.db import end_read, get_session
from api.studies.models import Study
from api.studies.service import require_study


def valid_study(
    study_id: int = Path(ge=1, le=2**31 - 1),
    session: Session = Depends(get_session),
    actor: Actor = Depends(authenticated),
) -> Study:
    """The study of the path, visible to the current user."""
    study = require_study(session, study_id, actor)
    end_read(session)
    return study
