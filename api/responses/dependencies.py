"""The dependency of the submission route: the token, the participant and the request's slot, read once.

On PostgreSQL one statement (:data:`api.responses.fastpath.READ`) reads everything a new response
needs, so that the route can store it with one more (:func:`api.responses.fastpath.submit`). On
SQLite this is :func:`api.participants.dependencies.valid_participant`. Either way the answers
come in the same order as on every participant route: 401 for a missing or bad token, then 404
for a participant that is unknown or at a site the user does not cover; the role check (403)
follows in :func:`api.auth.dependencies.authorize`, from the actor cached on the request.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials
from sqlmodel import Session

from api.auth.dependencies import _bearer, admit, bearer_token, invalid_token
from api.auth.service import Actor, hash_token, token_in_force
from api.db import get_session
from api.participants.dependencies import valid_participant
from api.participants.models import Participant
from api.participants.service import ensure_visible, get_participant
from api.responses import fastpath


@dataclass(frozen=True)
class Submission:
    """The participant of the path: as an ORM row (SQLite) or as the fast path's read (PostgreSQL)."""

    participant_id: int
    participant: Participant | None
    found: fastpath.Read | None

    def participant_in(self, session: Session, actor: Actor) -> Participant:
        """The participant as an ORM row of ``session`` (for the ORM path)."""
        if self.participant is not None:
            return self.participant
        return get_participant(session, self.participant_id, actor)


async def _asked(request: Request) -> tuple[str | None, str | None, str | None]:
    """Wave, instrument and Idempotency-Key of the request as sent, for the read.

    FastAPI parsed the JSON body before any dependency runs (the parse is cached on the request);
    it is validated only after the dependencies, so a value that is not a string is left out here
    and the route's fast path declines a read made for other values than the validated body's.
    """
    try:
        raw = await request.json()
    except ValueError:  # not JSON: the body's validation answers 422 after the dependencies
        raw = None
    wave = raw.get("wave") if isinstance(raw, dict) else None
    instrument = raw.get("instrument") if isinstance(raw, dict) else None
    return (
        wave if isinstance(wave, str) else None,
        instrument if isinstance(instrument, str) else None,
        request.headers.get("idempotency-key"),
    )


async def submission(
    request: Request,
    participant_id: int = Path(ge=1, le=2**31 - 1),
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    session: Session = Depends(get_session),
) -> Submission:
    """The actor (cached on the request) and the participant of the path, in one statement on PostgreSQL."""
    engine = request.app.state.engine
    if engine.dialect.name != "postgresql":
        participant = await run_in_threadpool(valid_participant, request, participant_id, credentials, session)
        return Submission(participant_id, participant, None)
    token = bearer_token(credentials)
    wave, instrument, key = await _asked(request)
    found = await run_in_threadpool(fastpath.read, engine, hash_token(token), participant_id, wave, instrument, key)
    if found is None or not token_in_force(*found.token_state):
        raise invalid_token()
    actor = admit(request, found.user_id, found.role, found.site_ids, found.email)
    ensure_visible(actor, found.participant)
    return Submission(participant_id, None, found)
