"""The participant flow of a study (CONSORT counts per arm), read from the database.

The counting itself is :func:`analysis.flow.participant_flow` (pure); this module builds its
inputs: participants with day offsets (never calendar dates, so every reader may see the flow),
the waves, and per participant and wave whether data exist and whether the window has closed.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, select

from analysis.flow import participant_flow
from api.auth import policy
from api.auth.service import Actor
from api.db import utcnow
from api.participants.models import WITHDRAWAL_KINDS, Participant
from api.participants.service import local_date, window
from api.responses.models import Response
from api.studies.models import Arm, Study, Wave

if TYPE_CHECKING:
    import pandas as pd
else:
    from api.lazyimport import pandas as pd

CONTEXT = "context"  # the context questionnaire is not an outcome wave's data


def _day(value: date | None, enrolled: date) -> float | None:
    return None if value is None else float((value - enrolled).days)


def study_flow(session: Session, study: Study, actor: Actor, today: date | None = None) -> dict[str, Any]:
    """The flow of ``study`` as :func:`analysis.flow.participant_flow` counts it, over the actor's sites.

    Coordinators get the counts of their own sites; admins and analysts the whole study.
    """
    stmt = select(Participant).where(Participant.study_id == study.id)
    if policy.site_scoped(actor):
        stmt = stmt.where(Participant.site_id.in_(actor.site_ids or [-1]))
    people = list(session.exec(stmt.order_by(Participant.id)).all())
    arms = {a.id: a.code for a in session.exec(select(Arm).where(Arm.study_id == study.id).order_by(Arm.id))}
    waves = list(session.exec(select(Wave).where(Wave.study_id == study.id).order_by(Wave.offset_days, Wave.id)))
    today = today or local_date(study, utcnow())
    frame, wave_frame, visit_frame = flow_frames(session, study, people, waves, today)
    flow = participant_flow(frame, wave_frame, visit_frame, arms=list(arms.values()))
    from api.sap import blinding

    blind = blinding.blinded(session, study.id, actor)
    if blind:
        # A blinded reader gets the neutral letters, in letter order, and no discontinuation counts.
        letters = {arms[i]: label for i, label in blinding.neutral_labels(session, study.id).items() if i in arms}
        for entry in flow["arms"]:
            entry["arm"] = letters.get(entry["arm"], entry["arm"]) if entry["arm"] is not None else None
            entry["discontinued_intervention"] = None
        flow["arms"] = sorted(flow["arms"], key=lambda e: (e["arm"] is None, e["arm"] or ""))
    return {"study_id": study.id, "as_of": today.isoformat(), "blinded": blind, **flow}


def flow_frames(
    session: Session, study: Study, people: list[Participant], waves: list[Wave], today: date
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three inputs of :func:`analysis.flow.participant_flow` for ``people`` (arms as codes):
    participants with day offsets, the waves, and per participant and wave whether data exist and
    whether the window has closed on ``today``."""
    arms = {a.id: a.code for a in session.exec(select(Arm).where(Arm.study_id == study.id))}
    ids = [p.id for p in people]
    answered: set[tuple[int, int]] = set()
    if ids:
        answered = {
            (pid, wid)
            for pid, wid in session.exec(
                select(Response.participant_id, Response.wave_id)
                .where(Response.participant_id.in_(ids), Response.instrument != CONTEXT)
                .distinct()
            ).all()
        }
    rows, visits = [], []
    for p in people:
        row: dict[str, Any] = {
            "participant": p.id,
            "arm": arms.get(p.arm_id) if p.arm_id else None,
            "status": p.status,
            "status_day": _day(p.status_date, p.enrolled_on),
            "status_reason": p.status_reason,
            "voided": p.voided_at is not None,
        }
        for prefix in WITHDRAWAL_KINDS.values():
            row[f"{prefix}_day"] = _day(getattr(p, f"{prefix}_on"), p.enrolled_on)
            row[f"{prefix}_reason"] = getattr(p, f"{prefix}_reason")
        rows.append(row)
        for w in waves:
            closes = window(study, p, w)[2]
            got = (p.id, w.id) in answered
            visits.append({"participant": p.id, "wave": w.code, "responded": got, "due": got or today > closes})
    frame = pd.DataFrame(rows, columns=[*rows[0].keys()] if rows else ["participant", "arm", "status", "voided"])
    wave_frame = pd.DataFrame({"wave": [w.code for w in waves], "offset_days": [w.offset_days for w in waves]})
    visit_frame = pd.DataFrame(visits, columns=["participant", "wave", "responded", "due"])
    return frame, wave_frame, visit_frame
