"""Case variables for REFI-QDA exports: one case per participant with its attributes.

Built in: ``arm`` and ``site`` (codes) and ``status``. Other domains add theirs — delivery's dose,
the outcome analysis' trajectory group, context attributes — with a hook::

    from api.transcripts.cases import register_case_variables

    @register_case_variables
    def dose(session, study, participants):          # -> {study_code: {variable: value}}
        return {p.study_code: {"sessions_attended": n} for p, n in attended(session, participants)}

Values may be str, int, float, bool or date; each variable's REFI-QDA type follows its values.
Never return identifiers or calendar dates that analysts may not see: the export is analyst-facing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlmodel import Session, select

from api.participants.models import Participant
from api.studies.models import Arm, Site, Study

__all__ = ["CaseVariableSource", "register_case_variables", "unregister_case_variables", "case_variables"]

CaseVariableSource = Callable[[Session, Study, Sequence[Participant]], Mapping[str, Mapping[str, Any]]]

_SOURCES: list[CaseVariableSource] = []


def register_case_variables(fn: CaseVariableSource) -> CaseVariableSource:
    """Add a source of case variables (idempotent; usable as a decorator)."""
    if fn not in _SOURCES:
        _SOURCES.append(fn)
    return fn


def unregister_case_variables(fn: CaseVariableSource) -> None:
    if fn in _SOURCES:
        _SOURCES.remove(fn)


def case_variables(session: Session, study: Study, participants: Sequence[Participant]) -> dict[str, dict[str, Any]]:
    """{study code: {variable: value}} from every registered source, in registration order."""
    out: dict[str, dict[str, Any]] = {p.study_code: {} for p in participants}
    for source in _SOURCES:
        for code, values in (source(session, study, participants) or {}).items():
            if code in out:
                out[code].update({str(k)[:100]: v for k, v in values.items()})
    return out


@register_case_variables
def _design(session: Session, study: Study, participants: Sequence[Participant]) -> dict[str, dict[str, Any]]:
    from api.sap import blinding

    # The export is analyst-facing: until the study is unblinded the arm is its neutral letter.
    if blinding.is_unblinded(session, study.id):
        arms = {a.id: a.code for a in session.exec(select(Arm).where(Arm.study_id == study.id)).all()}
    else:
        arms = blinding.neutral_labels(session, study.id)
    sites = {s.id: s.code for s in session.exec(select(Site).where(Site.study_id == study.id)).all()}
    return {
        p.study_code: {
            "arm": arms.get(p.arm_id) if p.arm_id else None,
            "site": sites.get(p.site_id),
            "status": p.status,
        }
        for p in participants
    }
