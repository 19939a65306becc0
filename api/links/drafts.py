"""Drafts of participant-form pages: each answer saved as it is given, kept until the page is sent.

A draft is not study data yet (no score, not in exports or analyses): it only lets a participant who
leaves half-way find their ticks again. Saving one is audited like every other write.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from api.audit.service import record
from api.auth.service import Actor
from api.db import utcnow
from api.links.models import FormDraft
from api.participants.models import Participant
from api.studies.models import Wave


def load_draft(session: Session, participant: Participant, wave: Wave, instrument: str) -> dict[str, Any] | None:
    row = session.get(FormDraft, (participant.id, wave.id, instrument))
    return dict(row.answers) if row is not None else None


def save_draft(
    session: Session, participant: Participant, wave: Wave, instrument: str, answers: dict[str, Any], actor: Actor
) -> None:
    """Keep the answers given so far (blank ones dropped); flushes and audits, the caller commits."""
    given = {k: v for k, v in answers.items() if v is not None}
    row = session.get(FormDraft, (participant.id, wave.id, instrument))
    if row is None:
        row = FormDraft(participant_id=participant.id, wave_id=wave.id, instrument=instrument, answers=given)
    else:
        row.answers, row.updated_at = given, utcnow()
    session.add(row)
    session.flush()
    record(
        session,
        actor,
        "draft",
        "form_draft",
        f"{participant.id}:{wave.id}:{instrument}",
        study_id=participant.study_id,
        site_id=participant.site_id,
        after={"answered": sorted(given)},
    )


def drop_draft(session: Session, participant: Participant, wave: Wave, instrument: str) -> None:
    row = session.get(FormDraft, (participant.id, wave.id, instrument))
    if row is not None:
        session.delete(row)
        session.flush()
