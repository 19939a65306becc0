"""TIDieR items 10 (modifications) and 12 (how well: actual) from the adaptation log and the ratings.

:func:`register` puts :func:`modifications` and :func:`how_well_actual` into the delivery domain's
provider table (:func:`api.delivery.tidier.register_provider`); item 12 keeps what the delivery
domain reports (dose and adherence) and adds fidelity. Importing :mod:`api.fidelity.router` (as the
application does) registers them.
"""

from __future__ import annotations

from collections import Counter
from statistics import fmean
from typing import Any

from sqlmodel import Session, col, func, select

from api.delivery import tidier as delivery_tidier
from api.delivery.models import DeliverySession
from api.fidelity.models import Adaptation, FidelityRating
from api.studies.models import Arm

_DELIVERY_ITEM_12 = delivery_tidier.PROVIDERS["12_how_well_actual"]


def modifications(session: Session, arm: Arm) -> dict[str, Any]:
    """Item 10: what was modified, when, why and how, from the arm's adaptation log (FRAME)."""
    rows = list(
        session.exec(select(Adaptation).where(Adaptation.arm_id == arm.id).order_by(col(Adaptation.adapted_on)))
    )
    if not rows:
        return {"adaptations": 0, "summary": "No modification was logged for this arm."}
    fid = Counter(r.fidelity for r in rows)
    planned = sum(r.planned for r in rows)
    summary = (
        f"{len(rows)} modification(s) logged: {planned} planned, {len(rows) - planned} unplanned; "
        f"{fid['consistent']} fidelity-consistent, {fid['inconsistent']} fidelity-inconsistent, "
        f"{fid['unknown']} not judged."
    )
    return {
        "adaptations": len(rows),
        "summary": summary,
        "planned": planned,
        "unplanned": len(rows) - planned,
        "fidelity": dict(fid),
        "what": dict(Counter(r.what for r in rows)),
        "nature": dict(Counter(r.nature for r in rows)),
        "reasons": dict(Counter(reason for r in rows for reason in r.reasons)),
        "entries": [
            {
                "date": r.adapted_on.isoformat(),
                "phase": r.phase,
                "level": r.level,
                "what": r.what,
                "nature": r.nature,
                "planned": r.planned,
                "decided_by": r.decided_by,
                "reasons": r.reasons,
                "fidelity": r.fidelity,
                "description": r.description,
            }
            for r in rows
        ],
    }


def fidelity_actual(session: Session, arm: Arm) -> dict[str, Any]:
    """How faithfully the arm's sessions were delivered: sessions rated, mean scores, double rating."""
    delivered = session.exec(
        select(func.count()).where(DeliverySession.arm_id == arm.id, DeliverySession.status == "delivered")
    ).one()
    ratings = list(session.exec(select(FidelityRating).where(FidelityRating.arm_id == arm.id)))
    by_session: dict[int, list[FidelityRating]] = {}
    for r in ratings:
        by_session.setdefault(r.session_id, []).append(r)

    def mean_of(part: str) -> float | None:
        per = [
            fmean(v)
            for v in ([getattr(r, part) for r in rs if getattr(r, part) is not None] for rs in by_session.values())
            if v
        ]
        return round(fmean(per), 1) if per else None

    return {
        "delivered_sessions": delivered,
        "rated_sessions": len(by_session),
        "proportion_rated": round(len(by_session) / delivered, 3) if delivered else None,
        "double_rated_sessions": sum(len({r.rater_id for r in rs}) > 1 for rs in by_session.values()),
        "mean_total": mean_of("total"),
        "mean_core": mean_of("core"),
        "mean_form": mean_of("form"),
        "mean_core_full": mean_of("core_full"),
        "scale": "percent of the maximum checklist score; core_full: % of core components fully delivered",
    }


def how_well_actual(session: Session, arm: Arm) -> dict[str, Any]:
    """Item 12: the delivery domain's dose and adherence, plus fidelity of delivery."""
    base = _DELIVERY_ITEM_12(session, arm)
    out = dict(base) if isinstance(base, dict) else {"delivery": base}
    out["fidelity"] = fidelity_actual(session, arm)
    return out


def register() -> None:
    """Fill TIDieR items 10 and 12 from the adaptation log and the fidelity ratings."""
    delivery_tidier.register_provider("10_modifications", modifications)
    delivery_tidier.register_provider("12_how_well_actual", how_well_actual)


register()
