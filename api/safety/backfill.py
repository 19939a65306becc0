"""Raising alerts for answers stored before a rule was in force.

Alerts are raised when answers are stored. Answers stored before safety monitoring existed (a
database upgraded from an earlier release), or before a study added a rule of its own, met no rule
at the time; :func:`backfill` evaluates them against the rules in force now and raises what they
meet, with the usual audit events and messages. It is idempotent (one alert per response and rule),
so running it twice raises nothing new. ``peerlens safety backfill STUDY --dry-run`` says how many
alerts it would raise.
"""

from __future__ import annotations

from collections import defaultdict

from sqlmodel import Session, select

import instruments
from api.auth.policy import ensure_can_write
from api.auth.service import Actor
from api.participants.models import Participant
from api.responses.models import Response, Score
from api.safety.service import raise_alerts
from api.studies.models import Study


def backfill(session: Session, study: Study, actor: Actor) -> dict[str, int]:
    """Raise the alerts every stored response of ``study`` meets now (flushes; the caller commits,
    or rolls back for a dry run). Returns ``{"responses": checked, "alerts": raised}``."""
    ensure_can_write(actor)
    rows = session.exec(
        select(Response, Participant)
        .join(Participant, Participant.id == Response.participant_id)
        .where(Response.study_id == study.id)
        .order_by(Response.id)
    ).all()
    scores: dict[int, list[Score]] = defaultdict(list)
    for s in session.exec(
        select(Score).join(Response, Response.id == Score.response_id).where(Response.study_id == study.id)
    ):
        scores[s.response_id].append(s)
    raised = 0
    for resp, participant in rows:
        try:
            inst = instruments.get(resp.instrument)
        except instruments.InstrumentError:
            continue
        raised += len(
            raise_alerts(
                session,
                participant=participant,
                response_id=resp.id,
                wave_id=resp.wave_id,
                instrument=inst,
                answers=resp.answers or {},
                scores=scores.get(resp.id, []),
                completed_at=resp.completed_at,
                mode=resp.mode,
                actor=actor,
            )
        )
    return {"responses": len(rows), "alerts": raised}
