"""The TIDieR checklist per arm (Hoffmann et al. 2014, BMJ 348:g1687): versioned descriptions typed
by the study team (items 1–9 and 11) and items generated from the records (10 and 12).

Generated items come from *providers*: functions ``(session, arm) -> value`` registered per item key
in :data:`PROVIDERS`. This module registers item 12 (adherence as delivered, from
:func:`api.delivery.dose.participant_dose`) and a default item 10 that says no modification log is
kept yet; the adaptation log registers its own item 10 with :func:`register_provider`, a fidelity
summary may extend item 12 the same way. :func:`checklist` is what the REST route and reports render.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from sqlmodel import Session, col, func, select

from api.audit.service import record, snapshot
from api.auth.policy import ensure_can_write
from api.auth.service import Actor
from api.delivery.dose import participant_dose
from api.delivery.models import DeliveryPlan, DeliverySession, TidierDescription
from api.delivery.schemas import TIDIER_ITEMS, TYPED_ITEMS, TidierIn, TidierItem, TidierRead
from api.errors import Unprocessable
from api.studies.models import Arm

Provider = Callable[[Session, Arm], Any]


def _modifications(session: Session, arm: Arm) -> Any:
    return {"adaptations": None, "note": "no adaptation log is kept for this study"}


def _how_well_actual(session: Session, arm: Arm) -> Any:
    rows = [r for r in participant_dose(session, arm.study_id) if r["arm"] == arm.code]
    plan = session.get(DeliveryPlan, arm.id)
    sessions = session.exec(
        select(DeliverySession.status, func.count())
        .where(DeliverySession.arm_id == arm.id)
        .group_by(col(DeliverySession.status))
    ).all()
    attended = [r["sessions_attended"] for r in rows]
    adherent = [r["adherent"] for r in rows if r["adherent"] is not None]
    return {
        "participants": len(rows),
        "sessions": dict(sessions),
        "sessions_attended_median": statistics.median(attended) if attended else None,
        "any_session": sum(1 for a in attended if a > 0),
        "adherent": sum(adherent) if plan is not None else None,
        "adherence_definition": (
            f"{plan.adherence_kind} >= {plan.adherence_threshold:g} (of {plan.planned_sessions} planned sessions)"
            if plan is not None
            else None
        ),
    }


#: item key → provider of its generated value
PROVIDERS: dict[str, Provider] = {"10_modifications": _modifications, "12_how_well_actual": _how_well_actual}


def register_provider(item: str, provider: Provider) -> None:
    """Fill a generated item (``10_modifications`` or ``12_how_well_actual``) with ``provider``."""
    if item not in TIDIER_ITEMS or item in TYPED_ITEMS:
        raise ValueError(f"{item} is not a generated TIDieR item")
    PROVIDERS[item] = provider


def latest(session: Session, arm: Arm) -> TidierDescription | None:
    return session.exec(
        select(TidierDescription)
        .where(TidierDescription.arm_id == arm.id)
        .order_by(col(TidierDescription.version).desc())
    ).first()


def add_version(session: Session, arm: Arm, body: TidierIn, actor: Actor) -> TidierDescription:
    """A new version of the arm's description (earlier versions stay readable; audited)."""
    ensure_can_write(actor)
    for key, text in body.items.items():
        if key not in TIDIER_ITEMS:
            raise Unprocessable(["body", "items", key], "not a TIDieR item key", "unknown_item")
        if key not in TYPED_ITEMS:
            raise Unprocessable(["body", "items", key], "generated from the records, not typed", "generated_item")
        if not text.strip() or len(text) > 8000:
            raise Unprocessable(["body", "items", key], "1 to 8000 characters", "string_length")
    if "1_name" not in body.items:
        raise Unprocessable(["body", "items", "1_name"], "the brief name is required", "missing")
    prev = latest(session, arm)
    d = TidierDescription(
        study_id=arm.study_id,
        arm_id=arm.id,
        version=(prev.version if prev else 0) + 1,
        items=dict(body.items),
        note=body.note,
        created_by=actor.user_id,
    )
    session.add(d)
    session.flush()
    record(session, actor, "create", "tidier_description", d.id, study_id=arm.study_id, after=snapshot(d))
    return d


def versions(session: Session, arm: Arm) -> list[TidierDescription]:
    return list(
        session.exec(
            select(TidierDescription).where(TidierDescription.arm_id == arm.id).order_by(col(TidierDescription.version))
        )
    )


def checklist(
    session: Session, arm: Arm, version: int | None = None, providers: dict[str, Provider] | None = None
) -> TidierRead:
    """The filled 12-item checklist of ``arm`` (the latest version, or ``version``); generated items
    come from ``providers`` (default :data:`PROVIDERS`)."""
    d = (
        latest(session, arm)
        if version is None
        else session.exec(
            select(TidierDescription).where(TidierDescription.arm_id == arm.id, TidierDescription.version == version)
        ).first()
    )
    if version is not None and d is None:
        raise Unprocessable(["query", "version"], "no such version of this arm's description", "unknown_version")
    use = PROVIDERS | (providers or {})
    items = []
    for key, label in TIDIER_ITEMS.items():
        if key in TYPED_ITEMS:
            items.append(TidierItem(key=key, label=label, value=(d.items.get(key) if d else None), generated=False))
        else:
            items.append(TidierItem(key=key, label=label, value=use[key](session, arm), generated=True))
    return TidierRead(
        arm_id=arm.id,
        arm=arm.code,
        version=d.version if d else None,
        created_at=d.created_at if d else None,
        note=d.note if d else None,
        items=items,
    )
