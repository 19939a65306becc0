"""The ``fidelity`` and ``adaptations`` export shapes.

They go through the exports domain (``GET /studies/{id}/exports/fidelity?format=…``, ``peerlens
export --shape fidelity``) with the same site scope, formats, data dictionary and audit as every
shape. Supporters appear by their pseudonymous code and raters by a user number: no name, email or
phone of a supporter (or anyone) is ever read. De-identified readers get no calendar dates (days on
the study's process timeline instead, day 0 being its first delivered session) and no free text.

``fidelity``: one row per rating and score part (``record = score``: total, core, form, core_full)
and per rating and checklist item (``record = item``); :func:`analysis.fidelity.fidelity_over_time`
reads the score rows, :func:`analysis.fidelity.item_agreement` the item rows.
``adaptations``: one row per logged adaptation with its FRAME fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from sqlmodel import Session, select

from api.auth.service import Actor
from api.exports import dictionary as dd
from api.fidelity import frames
from api.fidelity.models import (
    FIDELITY_CONSISTENCY,
    FRAME_CONTEXT,
    FRAME_GOALS,
    FRAME_LEVELS,
    FRAME_NATURE,
    FRAME_PHASES,
    FRAME_WHAT,
    RATING_METHODS,
    Adaptation,
)
from api.fidelity.service import study_day_zero
from api.studies.models import Arm, Site, Study

if TYPE_CHECKING:
    import pandas as pd
else:
    from api.lazyimport import pandas as pd

_B = ((False, "No"), (True, "Yes"))
_DATE = "ISO date (staff only; empty in de-identified exports)"
_DAY = "days since the study's first delivered session"


def _v(values) -> tuple[tuple[str, str], ...]:
    return tuple((v, v.replace("_", " ")) for v in values)


def fidelity_columns() -> list[dd.Column]:
    """The columns of the ``fidelity`` shape (also its data dictionary)."""
    return [
        dd.Column("rating_id", "id of the rating", "int"),
        dd.Column("session", "id of the delivered session (delivery domain)", "int"),
        dd.Column("site", "site code", "string"),
        dd.Column("arm", "arm code", "string"),
        dd.Column("group", "peer group code", "string"),
        dd.Column("supporter", "pseudonymous code of the session's peer supporter", "string"),
        dd.Column("session_number", "the session's number in its group's programme", "int"),
        dd.Column("curriculum_module", "curriculum module of the session", "string"),
        dd.Column("session_date", "day the session was delivered", "string", unit=_DATE),
        dd.Column("session_day", "day the session was delivered", "int", unit=_DAY),
        dd.Column("rater", "rater (R + user number; independent evaluator or admin)", "string"),
        dd.Column("method", "how the rater observed the session", "string", values=_v(RATING_METHODS)),
        dd.Column("checklist", "checklist code", "string"),
        dd.Column("checklist_version", "checklist version", "string"),
        dd.Column("rated_day", "day the rating was made", "int", unit=_DAY),
        dd.Column(
            "record", "score (a score part) or item (one checklist item)", "string", values=_v(("score", "item"))
        ),
        dd.Column(
            "part",
            "score part: total, core, form (percent of maximum) or core_full (% core items fully delivered)",
            "string",
            values=_v(("total", "core", "form", "core_full")),
        ),
        dd.Column("item", "checklist item code (item rows)", "string"),
        dd.Column("component", "core component or adaptable form (item rows)", "string", values=_v(("core", "form"))),
        dd.Column(
            "value",
            "score (0-100) or the item's option code",
            "float",
            notes="item rows: empty when not rated or not applicable",
        ),
        dd.Column("items_answered", "items rated (not 'not applicable') in the rating", "int"),
    ]


def adaptation_columns() -> list[dd.Column]:
    """The columns of the ``adaptations`` shape (also its data dictionary)."""
    text = "free text: empty in de-identified exports"
    return [
        dd.Column("adaptation_id", "id of the adaptation", "int"),
        dd.Column("arm", "arm code", "string"),
        dd.Column("site", "site code (empty: every site)", "string"),
        dd.Column("group_id", "peer group id (delivery domain)", "int"),
        dd.Column("session_id", "session id (delivery domain)", "int"),
        dd.Column("adapted_on", "day of the adaptation", "string", unit=_DATE),
        dd.Column("adapted_day", "day of the adaptation", "int", unit=_DAY),
        dd.Column("phase", "FRAME: when", "string", values=_v(FRAME_PHASES)),
        dd.Column("what", "FRAME: what is modified", "string", values=_v(FRAME_WHAT)),
        dd.Column("context_aspect", "FRAME: which part of the context", "string", values=_v(FRAME_CONTEXT)),
        dd.Column("level", "FRAME: level of delivery", "string", values=_v(FRAME_LEVELS)),
        dd.Column("nature", "FRAME: nature of the modification", "string", values=_v(FRAME_NATURE)),
        dd.Column("planned", "planned (proactive) rather than unplanned (reactive)", "bool", values=_B),
        dd.Column("decided_by", "FRAME: who decided, ';'-separated", "string"),
        dd.Column("reasons", "FRAME: reasons, ';'-separated", "string"),
        dd.Column("goal", "FRAME: goal", "string", values=_v(FRAME_GOALS)),
        dd.Column("fidelity", "fidelity-consistent?", "string", values=_v(FIDELITY_CONSISTENCY)),
        dd.Column("component", "checklist item or component touched", "string"),
        dd.Column("description", "what was changed", "string", notes=text),
        dd.Column("reason_detail", "the reason in words", "string", notes=text),
    ]


def _sites(session: Session, plan) -> set[str]:
    return set(session.exec(select(Site.code).where(Site.id.in_(plan.site_ids or [-1]))).all())


def _blind(session: Session, study: Study, plan, codes: pd.Series) -> pd.Series:
    """Arm codes as this reader may see them: neutral labels (A, B, …) while the study is blind to them."""
    if getattr(plan, "blind_arms", None) is None:
        return codes
    ids = dict(session.exec(select(Arm.code, Arm.id).where(Arm.study_id == study.id)).all())
    return codes.map(lambda c: plan.blind_arms.get(ids.get(c)) if isinstance(c, str) else None)


def iter_fidelity(
    session: Session, study: Study, actor: Actor, filters=None, *, secret: str = "", batch_size: int = 500, plan=None
) -> Iterator[pd.DataFrame]:
    """The ``fidelity`` frame (one batch: ratings are few beside participants)."""
    from api.exports import service as exports

    plan = plan or exports.plan_export(session, study, actor, filters, secret=secret)
    cols = fidelity_columns()
    frame, answers = frames.ratings_frame(session, study, actor)
    keep = frame["site"].isin(_sites(session, plan)).to_numpy()
    frame = frame[keep].reset_index(drop=True)
    answers = [a for a, k in zip(answers, keep, strict=True) if k]
    scores = frames.scores_long(frame).assign(record="score", item=None, component=None)
    items = frames.items_long(frame, answers).assign(record="item", part=None)
    meta = frame.drop(columns=["total", "core", "form", "core_full"])
    items = items[["rating_id", "item", "component", "value", "record", "part"]].merge(meta, on="rating_id")
    out = pd.concat([scores, items], ignore_index=True) if len(frame) else pd.DataFrame(columns=[c.name for c in cols])
    if len(out):
        out["arm"] = _blind(session, study, plan, out["arm"])
        out["session_date"] = [d.isoformat() if hasattr(d, "isoformat") else None for d in out["session_date"]]
        out["_items_last"] = out["record"] == "item"
        out = out.sort_values(["rating_id", "_items_last"], kind="stable").drop(columns="_items_last")
    yield exports.dd_conform(out.reset_index(drop=True), cols)


def iter_adaptations(
    session: Session, study: Study, actor: Actor, filters=None, *, secret: str = "", batch_size: int = 500, plan=None
) -> Iterator[pd.DataFrame]:
    """The ``adaptations`` frame (one batch)."""
    from api.auth import policy
    from api.exports import service as exports
    from api.fidelity.adaptations import list_adaptations

    plan = plan or exports.plan_export(session, study, actor, filters, secret=secret)
    cols = adaptation_columns()
    sites = dict(session.exec(select(Site.id, Site.code).where(Site.study_id == study.id)).all())
    arms = dict(session.exec(select(Arm.id, Arm.code).where(Arm.study_id == study.id)).all())
    zero = study_day_zero(session, study)
    allowed = set(plan.site_ids)
    hide = policy.deidentified(actor)
    rows = []
    a: Adaptation
    for a in list_adaptations(session, study, actor):
        if a.site_id is not None and a.site_id not in allowed:
            continue
        rows.append(
            {
                "adaptation_id": a.id,
                "arm": arms[a.arm_id],
                "site": sites.get(a.site_id) if a.site_id else None,
                "group_id": a.group_id,
                "session_id": a.session_id,
                "adapted_on": None if hide else a.adapted_on.isoformat(),
                "adapted_day": (a.adapted_on - zero).days,
                "phase": a.phase,
                "what": a.what,
                "context_aspect": a.context_aspect,
                "level": a.level,
                "nature": a.nature,
                "planned": a.planned,
                "decided_by": ";".join(a.decided_by),
                "reasons": ";".join(a.reasons),
                "goal": a.goal,
                "fidelity": a.fidelity,
                "component": a.component,
                "description": None if hide else a.description,
                "reason_detail": None if hide else a.reason_detail,
            }
        )
    df = pd.DataFrame(rows, columns=[c.name for c in cols])
    df["arm"] = _blind(session, study, plan, df["arm"])
    yield exports.dd_conform(df, cols)
