"""Path dependencies of participant routes."""
from __future__ import annotations

from fastapi import Depends, Path
from sqlmodel import Session

from api.auth.dependencies import authenticated
from api.auth.service import Actor
from api.db import end_read, get_session
from api.participants.models import Participant
from api.participants.service import get_participant


def valid_participant(participant_id: int = Path(ge=1, le=2**31 - 1), session: Session = Depends(get_session),
                      actor: Actor = Depends(authenticated)) -> Participant:
    """The participant of the path; 404 when unknown or at a site the user does not cover."""
    participant = get_participant(session, participant_id, actor)
    end_read(session)
    return participant
