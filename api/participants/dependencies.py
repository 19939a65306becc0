"""Path dependencies of participant routes."""

from __future__ import annotations

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials
from sqlmodel import Session

from api.auth.dependencies import _bearer, resolve_actor_and_row
from api.db import end_read, get_session
from api.participants.models import Participant
from api.participants.service import get_participant


def valid_participant(
    request: Request,
    participant_id: int = Path(ge=1, le=2**31 - 1),
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    session: Session = Depends(get_session),
) -> Participant:
    """The participant of the path; 404 when unknown or at a site the user does not cover.

    The actor is resolved in this same worker-thread step (or taken from the request when an
    earlier dependency resolved it): the token is still checked first, so a missing or bad token
    is a 401 before any participant judgement. Without a cached actor the token and the
    participant are read in one query; the participant then sits in the session, so
    ``get_participant`` finds it without another round trip.
    """
    actor = getattr(request.state, "actor", None)
    if actor is None:
        actor, _ = resolve_actor_and_row(request, credentials, session, Participant, participant_id)
    participant = get_participant(session, participant_id, actor)
    end_read(session)
    return participant
