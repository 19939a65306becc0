"""/studies/{id}/analysis-plans (the statistical analysis plan), /blinding and /unblind."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path
from sqlmodel import Session

from api.auth.dependencies import authorize
from api.auth.policy import ADMIN, READERS
from api.auth.service import Actor
from api.db import end_read, get_session
from api.sap import blinding, service
from api.sap.models import AnalysisPlan
from api.sap.schemas import (
    BlindingRead,
    DeviationList,
    LockRequest,
    PlanContent,
    PlanRead,
    UnblindingRead,
    UnblindRequest,
)
from api.studies.dependencies import valid_study
from api.studies.models import Study

router = APIRouter(prefix="/studies/{study_id}", tags=["analysis plan and blinding"])

Version = Path(ge=1, le=10_000, description="the plan version (1, 2, …)")


def _read(row: AnalysisPlan) -> PlanRead:
    return PlanRead.model_validate(row, from_attributes=True)


@router.post("/analysis-plans", status_code=201, response_model=PlanRead)
def create_plan(
    body: PlanContent,
    actor: Actor = Depends(authorize(*ADMIN)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Draft a new version of the statistical analysis plan (one draft at a time)."""
    row = service.create_draft(session, study, body, actor)
    out = _read(row)
    session.commit()
    return out


@router.get("/analysis-plans", response_model=list[PlanRead])
def list_plans(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    out = [_read(r) for r in service.list_plans(session, study)]
    end_read(session)
    return out


@router.get("/analysis-plans/{version}", response_model=PlanRead)
def get_plan(
    version: int = Version,
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    out = _read(service.get_plan(session, study, version))
    end_read(session)
    return out


@router.put("/analysis-plans/{version}", response_model=PlanRead)
def update_plan(
    body: PlanContent,
    version: int = Version,
    actor: Actor = Depends(authorize(*ADMIN)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Replace a draft's content (409 for a locked version)."""
    out = _read(service.update_draft(session, study, version, body, actor))
    session.commit()
    return out


@router.post("/analysis-plans/{version}/lock", response_model=PlanRead)
def lock_plan(
    body: LockRequest | None = None,
    version: int = Version,
    actor: Actor = Depends(authorize(*ADMIN)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Lock a draft: its SHA-256 is recorded and it can no longer change (refused after unblinding)."""
    out = _read(service.lock(session, study, version, actor, body.confirm_hash if body else None))
    session.commit()
    return out


@router.get("/analysis-plans/{version}/deviations", response_model=DeviationList)
def plan_deviations(
    version: int = Version,
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Field-by-field deviations of a version from the locked plan."""
    out = service.version_deviations(session, study, version)
    end_read(session)
    return out


@router.get("/blinding", response_model=BlindingRead)
def get_blinding(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Whether the study is unblinded, and whether you read arms as neutral labels."""
    out = blinding.status(session, study, actor)
    end_read(session)
    return out


@router.post("/unblind", status_code=201, response_model=UnblindingRead)
def unblind(
    body: UnblindRequest,
    actor: Actor = Depends(authorize(*ADMIN)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Unblind the study for every reader (audited; cannot be undone)."""
    row = blinding.unblind(session, study, actor, body.reason)
    out = UnblindingRead.model_validate(row, from_attributes=True)
    session.commit()
    return out
