"""What the report takes from other domains when they exist, with the fallback it uses until then.

* ``api.sap.service.current_plan(session, study_id)``: the locked statistical analysis plan (and
  its hash), or None. Without it the report says "no analysis plan recorded" and marks every
  analysis as not pre-specified.
* ``api.sap.blinding.arm_labels(session, study_id, actor) -> {arm id: label}``: neutral labels
  while the study is blinded (``Arm A``); arm names otherwise. ``api.sap.blinding.unblinding``
  gives the unblinding time the report shows.
* ``api.delivery.report.received_allocated(session, study_id) -> {participant id: (bool, reason)}``,
  else ``api.delivery.dose.participant_dose``'s ``adherent``: whether each participant received
  the allocated intervention (the process evaluation's adherence definition). Without either the
  flow diagram says "not recorded".
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, select

from api.auth.service import Actor
from api.studies.models import Arm, Study


def hook(module: str, name: str) -> Callable[..., Any] | None:
    """``module.name`` if that module exists (another domain's contribution), else None."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return None  # the domain is not there; an import error inside it is a real error
        raise
    return getattr(mod, name, None)


@dataclass(frozen=True)
class PlanView:
    """What the report reads from a locked analysis plan."""

    version: Any
    hash: str | None
    locked_at: Any
    primary: tuple[str, str | None] | None  # (scale, wave)
    secondary: list[tuple[str, str | None]]
    mcids: dict[str, float]
    covariates: list[str]
    families: dict[str, list[str]]
    multiplicity: str
    alpha: float


#: Plan models the outcome table estimates (others, such as ``responders``, have their own tables).
ESTIMATED_BY_ANCOVA = (None, "trial", "ancova")


def _outcome(o: Any) -> tuple[str, str | None] | None:
    if o is None:
        return None
    if isinstance(o, str):
        return (o, None)
    if isinstance(o, dict):
        if o.get("model") not in ESTIMATED_BY_ANCOVA:
            return None
        return (str(o.get("scale")), o.get("wave"))
    if getattr(o, "model", None) not in ESTIMATED_BY_ANCOVA:
        return None
    return (str(getattr(o, "scale", o)), getattr(o, "wave", None))


def plan_view(plan: Any) -> PlanView:
    """The plan as :class:`PlanView`, from ``api.sap.service.LockedPlan`` (``version``, ``hash``,
    ``locked_at`` and a ``content`` mapping with ``primary``/``secondary`` outcomes of ``scale`` and
    ``wave``, ``mcids``, ``covariates``, ``families``, ``multiplicity``, ``alpha``)."""
    content = plan_field(plan, "content", default=None) or plan
    return PlanView(
        version=plan_field(plan, "version"),
        hash=plan_field(plan, "hash", "content_hash", "sha256"),
        locked_at=plan_field(plan, "locked_at"),
        primary=_outcome(plan_field(content, "primary", "primary_outcome")),
        secondary=list(
            dict.fromkeys(
                o
                for o in map(_outcome, plan_field(content, "secondary", "secondary_outcomes", default=[]) or [])
                if o is not None
            )
        ),
        mcids={str(k): float(v) for k, v in (plan_field(content, "mcids", default={}) or {}).items()},
        covariates=[str(c) for c in plan_field(content, "covariates", default=[]) or []],
        families={str(k): [str(x) for x in v] for k, v in (plan_field(content, "families", default={}) or {}).items()},
        multiplicity=str(plan_field(content, "multiplicity", default="holm")),
        alpha=float(plan_field(content, "alpha", default=0.05)),
    )


def current_plan(session: Session, study: Study) -> PlanView | None:
    """The study's locked analysis plan, or None when none is recorded (or plans do not exist yet)."""
    fn = hook("api.sap.service", "current_plan")
    plan = fn(session, study.id) if fn is not None else None
    return plan_view(plan) if plan is not None else None


def plan_field(plan: Any, *names: str, default: Any = None) -> Any:
    """The first of ``names`` a plan carries (a mapping or an object), else ``default``."""
    for n in names:
        v = plan.get(n) if isinstance(plan, dict) else getattr(plan, n, None)
        if v is not None:
            return v
    return default


def arm_labels(session: Session, study: Study, actor: Actor) -> tuple[dict[int, str], bool]:
    """``{arm id: label}`` as ``actor`` may see them, and whether they are masked (neutral labels
    while blinded: ``Arm A``; otherwise the arms' names)."""
    arms = list(session.exec(select(Arm).where(Arm.study_id == study.id).order_by(Arm.id)).all())
    names = {a.id: a.name for a in arms if a.id is not None}
    fn = hook("api.sap.blinding", "arm_labels")
    if fn is None:
        return names, False
    given = dict(fn(session, study.id, actor))
    codes = {a.id: a.code for a in arms if a.id is not None}
    masked = any(given.get(i) not in (codes[i], names[i]) for i in names)
    if not masked:
        return names, False
    return {i: (v if str(v).startswith("Arm ") else f"Arm {v}") for i, v in given.items()}, True


def unblinded_at(session: Session, study: Study) -> Any | None:
    """When the study was unblinded (None while blinded, or when blinding is not recorded)."""
    fn = hook("api.sap.blinding", "unblinding")
    row = fn(session, study.id) if fn is not None else None
    return getattr(row, "unblinded_at", None) if row is not None else None


def received_allocated(session: Session, study: Study) -> dict[int, tuple[bool | None, str | None]] | None:
    """Per participant id, whether the allocated intervention was received (and why not), or None
    when no delivery records exist.

    ``api.delivery.report.received_allocated`` when a domain provides it; else the arm's adherence
    definition applied by ``api.delivery.dose.participant_dose`` over the whole follow-up (``None``
    for an arm without a delivery plan).
    """
    fn = hook("api.delivery.report", "received_allocated")
    if fn is not None:
        return dict(fn(session, study.id))
    dose = hook("api.delivery.dose", "participant_dose")
    if dose is None:
        return None
    out: dict[int, tuple[bool | None, str | None]] = {}
    for row in dose(session, study.id, None):
        adherent = row.get("adherent")
        if adherent is None:
            out[row["participant_id"]] = (None, None)
        elif adherent:
            out[row["participant_id"]] = (True, None)
        else:
            none = not row.get("sessions_attended") and not row.get("contacts")
            out[row["participant_id"]] = (False, "never attended" if none else "below the adherence definition")
    return out if any(v[0] is not None for v in out.values()) else None
