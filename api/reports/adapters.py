"""What the report takes from other domains when they exist, with the fallback it uses until then.

* ``api.sap.service.current_plan(session, study_id)``: the locked statistical analysis plan (and
  its hash), or None. Without it the report says "no analysis plan recorded" and marks every
  analysis as not pre-specified.
* ``api.sap.blinding.arm_labels(session, study_id, actor) -> {arm id: label}``: neutral labels
  while the study is blinded. Without it the report names arms by their names.
* ``api.delivery.report.received_allocated(session, study_id) -> {participant id: (bool, reason)}``:
  whether each participant received the allocated intervention (the process evaluation's
  adherence definition). Without it the flow diagram says "not recorded".
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
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


def current_plan(session: Session, study: Study) -> Any | None:
    """The study's locked analysis plan, or None when none is recorded (or plans do not exist yet)."""
    fn = hook("api.sap.service", "current_plan")
    return fn(session, study.id) if fn is not None else None


def plan_field(plan: Any, *names: str, default: Any = None) -> Any:
    """The first of ``names`` a plan carries (a mapping or an object), else ``default``."""
    for n in names:
        v = plan.get(n) if isinstance(plan, dict) else getattr(plan, n, None)
        if v is not None:
            return v
    return default


def arm_labels(session: Session, study: Study, actor: Actor) -> tuple[dict[int, str], bool]:
    """``{arm id: label}`` as ``actor`` may see them, and whether they are masked."""
    arms = list(session.exec(select(Arm).where(Arm.study_id == study.id).order_by(Arm.id)).all())
    names = {a.id: a.name for a in arms if a.id is not None}
    fn = hook("api.sap.blinding", "arm_labels")
    if fn is None:
        return names, False
    labels = dict(fn(session, study.id, actor))
    return labels, any(labels.get(i) != n for i, n in names.items())


def received_allocated(session: Session, study: Study) -> dict[int, tuple[bool, str | None]] | None:
    """Per participant id, whether the allocated intervention was received (and why not), or None."""
    fn = hook("api.delivery.report", "received_allocated")
    return fn(session, study.id) if fn is not None else None
