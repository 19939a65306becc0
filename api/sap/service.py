"""The statistical analysis plan: versions, locking, deviations, and pre-specified vs post hoc.

A study's plan is a series of versions. A draft is edited freely by admins; locking one records
the SHA-256 of its canonical serialisation (:func:`canonical`: study, version and content as JSON
with sorted keys, no insignificant whitespace) and makes the row immutable. Locking is refused
once the study is unblinded (:mod:`api.sap.blinding`): a plan written after seeing results by arm
is not pre-specified. A new version can be drafted after a lock (an amendment); its deviations
from the locked plan are listed field by field (:func:`deviations`).

The trial report calls :func:`current_plan` (the latest locked version and its hash),
:func:`classify` (is this analysis pre-specified or post hoc, and how does it deviate) and
:func:`amendments` (versions drafted after the lock, with their deviations);
:mod:`api.analyses.service` records the same classification with every analysis run.

Examples
--------
>>> a = {"primary": {"scale": "phq9", "wave": "m6", "model": "trial"}, "covariates": ["site"]}
>>> b = {"primary": {"scale": "phq9", "wave": "m12", "model": "trial"}, "covariates": ["site"]}
>>> [(d["field"], d["planned"], d["actual"]) for d in deviations(a, b)]
[('primary.wave', 'm6', 'm12')]
>>> len(content_hash(1, 1, a)) == 64 and content_hash(1, 1, a) == content_hash(1, 1, dict(reversed(a.items())))
True
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from api.analyses.checks import check_scale, check_wave, study_design
from api.audit.service import record, snapshot
from api.auth import policy
from api.auth.service import Actor
from api.db import utcnow
from api.errors import Conflict, NotFound, Unprocessable
from api.sap import blinding
from api.sap.models import AnalysisPlan
from api.sap.schemas import PlanContent
from api.studies.models import Study

#: Analysis kinds that describe the data rather than test the plan's hypotheses.
DESCRIPTIVE = ("reliability", "retention", "attrition", "power")


def canonical(study_id: int, version: int, content: dict[str, Any]) -> bytes:
    """The canonical serialisation that a lock hashes (stable across key order and processes)."""
    doc = {"study_id": study_id, "version": version, "content": content}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def content_hash(study_id: int, version: int, content: dict[str, Any]) -> str:
    """SHA-256 (hex) of :func:`canonical`."""
    return hashlib.sha256(canonical(study_id, version, content)).hexdigest()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k in sorted(value):
            out.update(_flatten(value[k], f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    return {prefix: value}


def deviations(planned: dict[str, Any], actual: dict[str, Any]) -> list[dict[str, Any]]:
    """Field-by-field differences (dotted paths; lists compared whole) from ``planned`` to ``actual``."""
    a, b = _flatten(planned), _flatten(actual)
    return [
        {"field": k, "planned": a.get(k), "actual": b.get(k)}
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k) and k
    ]


# ---- versions ---------------------------------------------------------------------------------


def _check_content(session: Session, study: Study, content: PlanContent) -> dict[str, Any]:
    """422 naming the field for a scale or wave the study does not have."""
    design = study_design(session, study)
    outcomes = [(["body", "primary"], content.primary)] + [
        (["body", "secondary", i], o) for i, o in enumerate(content.secondary)
    ]
    for loc, o in outcomes:
        check_scale(design, o.scale, [*loc, "scale"])
        check_wave(design, o.wave, [*loc, "wave"], o.scale)
    for scale, value in content.mcids.items():
        check_scale(design, scale, ["body", "mcids", scale])
        if not value > 0:
            raise Unprocessable(["body", "mcids", scale], "an MCID is a positive number", "out_of_range")
    for name, scales in content.families.items():
        if not scales:
            raise Unprocessable(["body", "families", name], "a family names at least one scale", "empty")
        for i, scale in enumerate(scales):
            check_scale(design, scale, ["body", "families", name, i])
    for i, c in enumerate(content.covariates):
        if c != "site" and not c.startswith(("context_", "code:", "cmo:")):
            raise Unprocessable(
                ["body", "covariates", i], "a covariate is site or a context_* / code:* column", "unknown_column"
            )
    return content.model_dump(mode="json")


def list_plans(session: Session, study: Study) -> list[AnalysisPlan]:
    return list(
        session.exec(select(AnalysisPlan).where(AnalysisPlan.study_id == study.id).order_by(AnalysisPlan.version))
    )


def get_plan(session: Session, study: Study, version: int) -> AnalysisPlan:
    row = session.exec(
        select(AnalysisPlan).where(AnalysisPlan.study_id == study.id, AnalysisPlan.version == version)
    ).first()
    if row is None:
        raise NotFound(["path", "version"], "no analysis plan version with this number", "not_found")
    return row


def create_draft(session: Session, study: Study, content: PlanContent, actor: Actor) -> AnalysisPlan:
    """A new draft version (admins; one draft at a time: edit it, or lock it first)."""
    policy.ensure_admin(actor, "write the analysis plan")
    data = _check_content(session, study, content)
    open_draft = session.exec(
        select(AnalysisPlan.version).where(AnalysisPlan.study_id == study.id, AnalysisPlan.status == "draft")
    ).first()
    if open_draft is not None:
        raise Conflict(
            ["body"], f"version {open_draft} is still a draft; edit it (PUT) or lock it first", "draft_exists"
        )
    last = session.exec(select(func.max(AnalysisPlan.version)).where(AnalysisPlan.study_id == study.id)).one()
    row = AnalysisPlan(study_id=study.id, version=int(last or 0) + 1, content=data)
    session.add(row)
    session.flush()
    record(session, actor, "create", "analysis_plan", row.id, study_id=study.id, after=snapshot(row))
    return row


def update_draft(session: Session, study: Study, version: int, content: PlanContent, actor: Actor) -> AnalysisPlan:
    """Replace a draft's content (409 once it is locked: a locked version is immutable)."""
    policy.ensure_admin(actor, "write the analysis plan")
    row = get_plan(session, study, version)
    if row.status == "locked":
        raise Conflict(["path", "version"], "a locked plan cannot change; draft a new version (POST)", "plan_locked")
    data = _check_content(session, study, content)
    before = snapshot(row)
    row.content = data
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    record(session, actor, "update", "analysis_plan", row.id, study_id=study.id, before=before, after=snapshot(row))
    return row


def lock(session: Session, study: Study, version: int, actor: Actor, confirm_hash: str | None = None) -> AnalysisPlan:
    """Lock a draft: record its hash and make it immutable (admins; refused after unblinding)."""
    policy.ensure_admin(actor, "lock the analysis plan")
    row = get_plan(session, study, version)
    if row.status == "locked":
        raise Conflict(["path", "version"], "this version is already locked", "plan_locked")
    if blinding.is_unblinded(session, study.id):
        raise Conflict(
            ["path", "version"],
            "the study is unblinded: a plan locked now would not be pre-specified; "
            "keep this version as a draft (its deviations from the locked plan are listed)",
            "unblinded",
        )
    digest = content_hash(study.id, row.version, row.content)
    if confirm_hash is not None and confirm_hash != digest:
        raise Conflict(["body", "confirm_hash"], "the plan changed since this hash was computed", "hash_mismatch")
    before = snapshot(row)
    row.status = "locked"
    row.content_hash = digest
    row.locked_at = utcnow()
    row.locked_by = actor.user_id
    row.updated_at = row.locked_at
    session.add(row)
    session.flush()
    record(session, actor, "sap.lock", "analysis_plan", row.id, study_id=study.id, before=before, after=snapshot(row))
    return row


# ---- what the report and the analyses read -----------------------------------------------------


@dataclass(frozen=True)
class LockedPlan:
    """The locked plan a study is analysed against."""

    study_id: int
    version: int
    content: dict[str, Any]
    hash: str
    locked_at: datetime
    locked_by: int | None


def current_plan(session: Session, study_id: int) -> LockedPlan | None:
    """The latest locked version of the study's plan with its hash (None: nothing locked yet)."""
    row = session.exec(
        select(AnalysisPlan)
        .where(AnalysisPlan.study_id == study_id, AnalysisPlan.status == "locked")
        .order_by(AnalysisPlan.version.desc())
    ).first()
    if row is None or row.content_hash is None or row.locked_at is None:
        return None
    return LockedPlan(study_id, row.version, dict(row.content), row.content_hash, row.locked_at, row.locked_by)


def version_deviations(session: Session, study: Study, version: int) -> dict[str, Any]:
    """Deviations of ``version`` from the locked plan (from the previous version when it is the
    locked plan itself, or when nothing is locked)."""
    row = get_plan(session, study, version)
    locked = current_plan(session, study.id)
    base: AnalysisPlan | None = None
    if locked is not None and locked.version != version:
        base = get_plan(session, study, locked.version)
    elif version > 1:
        base = get_plan(session, study, version - 1)
    return {
        "study_id": study.id,
        "locked_version": locked.version if locked else None,
        "locked_hash": locked.hash if locked else None,
        "version": version,
        "deviations": deviations(base.content, row.content) if base is not None else [],
    }


def amendments(session: Session, study_id: int) -> list[dict[str, Any]]:
    """Every version after the locked plan with its deviations from it, for the report's
    "deviations from the analysis plan" (empty when nothing is locked or nothing changed)."""
    locked = current_plan(session, study_id)
    if locked is None:
        return []
    later = session.exec(
        select(AnalysisPlan)
        .where(AnalysisPlan.study_id == study_id, AnalysisPlan.version > locked.version)
        .order_by(AnalysisPlan.version)
    ).all()
    return [
        {
            "version": row.version,
            "status": row.status,
            "updated_at": row.updated_at,
            "deviations": deviations(locked.content, row.content),
        }
        for row in later
    ]


@dataclass
class PlanMatch:
    """Whether one analysis was pre-specified by the locked plan.

    ``status``: ``pre-specified`` (it is an outcome or subgroup of the plan and its settings match),
    ``deviates`` (an outcome of the plan, run with other settings: ``deviations`` lists them),
    ``post hoc`` (not in the plan), ``descriptive`` (reliability, retention, attrition, power), or
    ``no plan`` (nothing locked yet).
    """

    status: str
    plan_version: int | None = None
    plan_hash: str | None = None
    role: str | None = None  # primary | secondary | subgroup
    deviations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def prespecified(self) -> bool:
        return self.status == "pre-specified"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "prespecified": self.prespecified}


def _wave_parameter(kind: str, parameters: dict[str, Any]) -> tuple[str, Any] | None:
    if kind in ("trial", "missing-data"):
        return "followup", parameters.get("followup")
    if kind in ("effect-sizes", "responders"):
        return "post", parameters.get("post")
    return None


def classify(session: Session, study_id: int, kind: str, parameters: dict[str, Any]) -> PlanMatch:
    """Whether an analysis of ``kind`` with ``parameters`` (an analysis request, as JSON) is
    pre-specified by the study's locked plan, and how it deviates from it."""
    plan = current_plan(session, study_id)
    if plan is None:
        return PlanMatch("no plan")
    if kind in DESCRIPTIVE:
        return PlanMatch("descriptive", plan.version, plan.hash)
    c = plan.content
    if kind == "moderation":
        moderator = parameters.get("moderator")
        if moderator in c.get("subgroups", []):
            return PlanMatch("pre-specified", plan.version, plan.hash, "subgroup")
        return PlanMatch(
            "post hoc",
            plan.version,
            plan.hash,
            deviations=[{"field": "subgroups", "planned": c.get("subgroups", []), "actual": moderator}],
        )
    outcome = parameters.get("outcome")
    planned = [("primary", c["primary"])] + [("secondary", o) for o in c.get("secondary", [])]
    same_scale = [(role, o) for role, o in planned if o["scale"] == outcome]
    if kind == "missing-data":
        # The sensitivity analysis of a planned outcome, when the plan names imputation.
        wanted = {"multiple_imputation", "tipping_point"} & ({c.get("missing_data")} | set(c.get("sensitivity", [])))
        if same_scale and not wanted:
            return PlanMatch(
                "post hoc",
                plan.version,
                plan.hash,
                same_scale[0][0],
                [{"field": "sensitivity", "planned": c.get("sensitivity", []), "actual": "multiple_imputation"}],
            )
        matches = [(role, {**o, "model": kind}) for role, o in same_scale]
    else:
        matches = [(role, o) for role, o in same_scale if o.get("model") == kind]
    if not matches:
        return PlanMatch(
            "post hoc",
            plan.version,
            plan.hash,
            deviations=[
                {
                    "field": "outcome",
                    "planned": [f"{o['scale']} ({o['model']})" for _, o in planned],
                    "actual": f"{outcome} ({kind})",
                }
            ],
        )
    best: PlanMatch | None = None
    for role, o in matches:
        found: list[dict[str, Any]] = []
        wave = _wave_parameter(kind, parameters)
        if wave is not None and wave[1] is None and kind in ("effect-sizes", "responders"):
            # The request's default follow-up: the last wave collecting the outcome.
            study = session.get(Study, study_id)
            collected = study_design(session, study).scales.get(str(outcome), []) if study else []
            wave = (wave[0], collected[-1] if collected else None)
        if wave is not None and wave[1] is not None and wave[1] != o["wave"]:
            found.append({"field": f"{role}.wave", "planned": o["wave"], "actual": wave[1]})
        if "covariates" in parameters and sorted(parameters["covariates"] or []) != sorted(c.get("covariates", [])):
            found.append(
                {"field": "covariates", "planned": c.get("covariates", []), "actual": parameters["covariates"]}
            )
        if kind == "responders":
            mcid = c.get("mcids", {}).get(outcome)
            if parameters.get("mcid") is not None and mcid is not None and float(parameters["mcid"]) != float(mcid):
                found.append({"field": f"mcids.{outcome}", "planned": mcid, "actual": parameters["mcid"]})
        if "alpha" in parameters and float(parameters["alpha"]) != float(c.get("alpha", 0.05)):
            found.append({"field": "alpha", "planned": c.get("alpha", 0.05), "actual": parameters["alpha"]})
        candidate = PlanMatch("deviates" if found else "pre-specified", plan.version, plan.hash, role, found)
        if best is None or len(candidate.deviations) < len(best.deviations):
            best = candidate
    assert best is not None
    return best
