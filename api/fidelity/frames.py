"""Ratings as tidy frames for the analysis library, the summaries and the exports.

One query reads a study's ratings with their sessions, supporters (pseudonymous codes only: never
the identifier vault), sites, arms and checklist versions, restricted to the sites the reader sees.
:func:`scores_long` and :func:`items_long` give the shapes :mod:`analysis.fidelity` takes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select as sa_select
from sqlmodel import Session

from api.auth.service import Actor
from api.delivery.models import DeliverySession, PeerGroup, PeerSupporter
from api.fidelity.models import FidelityChecklist, FidelityRating
from api.fidelity.service import find_checklist, sees_session_dates, study_day_zero, visible
from api.studies.models import Arm, Site, Study
from instruments.checklist import PARTS

if TYPE_CHECKING:
    import pandas as pd
else:
    from api.lazyimport import pandas as pd

RATING_COLUMNS = [
    "rating_id",
    "session",
    "site",
    "arm",
    "group",
    "supporter",
    "session_number",
    "curriculum_module",
    "session_date",
    "session_day",
    "rater",
    "method",
    "checklist",
    "checklist_version",
    "rated_day",
    *PARTS,
    "items_answered",
]


def rater_label(user_id: int | None) -> str:
    """A rater as analysts see them: a user number, never a name or an email."""
    return f"R{user_id}" if user_id is not None else "R-system"


def ratings_frame(
    session: Session, study: Study, actor: Actor, checklist: FidelityChecklist | None = None
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """One row per rating the actor may see (:data:`RATING_COLUMNS`), and their answers (same order)."""
    # sqlalchemy's select: sqlmodel's typed overloads stop at four entities
    stmt = (
        sa_select(
            FidelityRating, DeliverySession, FidelityChecklist, Site.code, Arm.code, PeerGroup.code, PeerSupporter.code
        )
        .join(DeliverySession, DeliverySession.id == FidelityRating.session_id)
        .join(FidelityChecklist, FidelityChecklist.id == FidelityRating.checklist_id)
        .join(Site, Site.id == FidelityRating.site_id)
        .join(Arm, Arm.id == FidelityRating.arm_id)
        .join(PeerGroup, PeerGroup.id == DeliverySession.group_id)
        .outerjoin(PeerSupporter, PeerSupporter.id == FidelityRating.supporter_id)
        .where(FidelityRating.study_id == study.id)
    )
    stmt = visible(stmt, actor)
    if checklist is not None:
        stmt = stmt.where(FidelityRating.checklist_id == checklist.id)
    rows = session.execute(stmt.order_by(FidelityRating.id)).all()
    zero = study_day_zero(session, study)
    calendar = sees_session_dates(actor)
    out, answers = [], []
    for r, ds, cl, site, arm, group, supporter in rows:
        out.append(
            {
                "rating_id": r.id,
                "session": r.session_id,
                "site": site,
                "arm": arm,
                "group": group,
                "supporter": supporter,
                "session_number": ds.number,
                "curriculum_module": ds.curriculum_module,
                "session_date": ds.delivered_on if calendar else None,
                "session_day": (ds.delivered_on - zero).days if ds.delivered_on else None,
                "rater": rater_label(r.rater_id),
                "method": r.method,
                "checklist": cl.code,
                "checklist_version": cl.version,
                "rated_day": (r.rated_on - zero).days,
                "total": r.total,
                "core": r.core,
                "form": r.form,
                "core_full": r.core_full,
                "items_answered": r.items_answered,
            }
        )
        answers.append({"definition": cl.definition, "answers": r.answers})
    return pd.DataFrame(out, columns=RATING_COLUMNS), answers


def scores_long(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per rating × score part (``part``, ``value``): the input of ``fidelity_over_time``."""
    keep = [c for c in RATING_COLUMNS if c not in PARTS]
    return frame.melt(id_vars=keep, value_vars=list(PARTS), var_name="part", value_name="value").sort_values(
        ["rating_id", "part"], kind="stable"
    )


def items_long(frame: pd.DataFrame, answers: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per rating × checklist item (``item``, ``component``, ``value``; "not applicable" and
    unrated items are NaN): the input of ``item_agreement``."""
    rows = []
    for (_, r), a in zip(frame.iterrows(), answers, strict=True):
        for it in a["definition"]["items"]:
            v = a["answers"].get(it["code"])
            missing = {float(o["code"]) for o in it["options"] if o.get("missing")}
            value = float(v) if v is not None and float(v) not in missing else None
            rows.append(
                {
                    "rating_id": r["rating_id"],
                    "session": r["session"],
                    "rater": r["rater"],
                    "checklist": r["checklist"],
                    "checklist_version": r["checklist_version"],
                    "item": it["code"],
                    "component": it["component"],
                    "value": value,
                }
            )
    cols = ["rating_id", "session", "rater", "checklist", "checklist_version", "item", "component", "value"]
    return pd.DataFrame(rows, columns=cols)


def _checklist_for(session: Session, study: Study, code: str | None, version: str | None) -> FidelityChecklist | None:
    if code is None:
        return None
    return find_checklist(session, study.id, code, version, loc=("query", "checklist"))


def summary(
    session: Session,
    study: Study,
    actor: Actor,
    *,
    by: list[str],
    period: str | None,
    part: str,
    checklist: str | None = None,
    version: str | None = None,
) -> list[dict[str, Any]]:
    """Fidelity per group and period (:func:`analysis.fidelity.fidelity_over_time`) as rows
    ``{key: {...}, period, n_sessions, …}``; periods of the de-identified are 28-day blocks of the
    process timeline (day 0: the first delivered session), months for staff."""
    from analysis.fidelity import fidelity_over_time
    from api.jsonable import jsonable

    frame, _ = ratings_frame(session, study, actor, _checklist_for(session, study, checklist, version))
    if frame.empty:
        return []
    long = scores_long(frame)
    if period in ("week", "month", "quarter", "year") and not sees_session_dates(actor):
        period_arg: str | float | None = {"week": 7.0, "month": 28.0, "quarter": 91.0, "year": 364.0}[period]
    else:
        period_arg = period
    time = "session_day" if isinstance(period_arg, float) else None
    table = fidelity_over_time(long, by=by or None, period=period_arg, part=part, time=time)
    out = []
    for rec in table.to_dict("records"):
        clean = jsonable(rec)
        out.append(
            {
                "key": {k: clean[k] for k in by},
                "period": str(clean["period"]),
                **{k: clean[k] for k in ("n_sessions", "n_double_rated", "mean", "sd", "min", "max")},
                "ci_lower": clean["ci_lower"],
                "ci_upper": clean["ci_upper"],
            }
        )
    return out


def agreement(
    session: Session, study: Study, actor: Actor, *, checklist: str, version: str | None, part: str, weights: str | None
) -> dict[str, Any]:
    """Inter-rater agreement of one checklist version on its double-rated sessions: weighted kappa
    per item, per component and pooled (:func:`analysis.fidelity.item_agreement`), ICC of the
    session scores (:func:`analysis.fidelity.score_agreement`)."""
    from analysis.fidelity import double_rated, item_agreement, score_agreement
    from api.jsonable import records

    cl = _checklist_for(session, study, checklist, version)
    assert cl is not None
    frame, answers = ratings_frame(session, study, actor, cl)
    n_double = 0 if frame.empty else int(double_rated(frame[["session", "rater"]])["session"].nunique())
    items = item_agreement(items_long(frame, answers), weights=weights) if n_double else pd.DataFrame()
    scores = score_agreement(scores_long(frame), part=part) if n_double else pd.DataFrame()
    return {
        "checklist": cl.code,
        "checklist_version": cl.version,
        "double_rated_sessions": n_double,
        "items": records(items),
        "scores": records(scores),
    }
