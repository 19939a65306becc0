"""Context routes: context records, context events, personal goals, the logic model, CMO
configurations and the realist output table."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response as PlainResponse
from sqlmodel import Session

from api.auth.dependencies import authorize
from api.auth.policy import ADMIN, READERS, STAFF
from api.auth.service import Actor
from api.context import realist, service
from api.context.schemas import (
    CmoIn,
    CmoPatch,
    CmoRead,
    ContextEventIn,
    ContextEventPatch,
    ContextEventRead,
    ContextRecordIn,
    ContextRecordRead,
    GoalIn,
    GoalRead,
    LogicModelIn,
    LogicModelRead,
    RatingIn,
)
from api.db import end_read, get_session
from api.jsonable import records
from api.studies.dependencies import valid_study
from api.studies.models import Study

router = APIRouter(tags=["context"])


# ---- context records and events ----------------------------------------------------------------


@router.get("/studies/{study_id}/context/records", response_model=list[ContextRecordRead])
def list_records(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    current: bool = Query(False, description="only the current version of each site's (and the programme's) context"),
):
    """Site and programme context, every version (or the current ones); coordinators: their sites."""
    out = service.list_context_records(session, study, actor, current_only=current)
    end_read(session)
    return out


@router.post("/studies/{study_id}/context/records", response_model=ContextRecordRead, status_code=201)
def add_record(
    body: ContextRecordIn,
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """A new version of a site's context (coordinators: their sites; admins: also the programme's) or
    of a participant's (``participant``: their study code)."""
    rec = service.add_context_record(session, study, body, actor)
    session.commit()
    return {**rec.model_dump(), "site": body.site, "participant": body.participant}


@router.get("/studies/{study_id}/context/events", response_model=list[ContextEventRead])
def list_events(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """The context timeline (clinic closures, supporters leaving, lockdowns, policy changes), by start date."""
    out = service.list_events(session, study, actor)
    end_read(session)
    return out


@router.post("/studies/{study_id}/context/events", response_model=ContextEventRead, status_code=201)
def add_event(
    body: ContextEventIn,
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Record a context event at study, site or peer-group level."""
    out = service.add_event(session, study, body, actor)
    session.commit()
    return out


@router.patch("/studies/{study_id}/context/events/{context_event_id}", response_model=ContextEventRead)
def patch_event(
    body: ContextEventPatch,
    context_event_id: int = Path(ge=1, le=2**31 - 1),
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Correct an event or close it (``ends_on``); audited."""
    out = service.update_event(session, study, context_event_id, body, actor)
    session.commit()
    return out


# ---- personal goals ----------------------------------------------------------------------------


@router.get("/studies/{study_id}/goals", response_model=list[GoalRead])
def list_goals(
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    participant: str | None = Query(None, max_length=40, description="participant study code"),
):
    """Participants' personal goals with their GAS levels and ratings (staff; analysts get T-scores
    through the ``gas`` analysis, without the goals' wording)."""
    out = service.list_goals(session, study, actor, participant)
    end_read(session)
    return out


@router.post("/studies/{study_id}/goals", response_model=GoalRead, status_code=201)
def add_goal(
    body: GoalIn,
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Set a participant's goal with its five GAS levels at baseline."""
    out = service.add_goal(session, study, body, actor)
    session.commit()
    return out


@router.post("/studies/{study_id}/goals/{goal_id}/ratings", response_model=GoalRead)
def rate_goal(
    body: RatingIn,
    goal_id: int = Path(ge=1, le=2**31 - 1),
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """The level the goal reached at a follow-up wave (a second rating of the wave amends it; audited)."""
    out = service.rate_goal(session, study, goal_id, body, actor)
    session.commit()
    return out


# ---- programme theory --------------------------------------------------------------------------


@router.get("/studies/{study_id}/logic-model", response_model=LogicModelRead)
def get_logic_model(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """The study's logic model: inputs → activities → mechanisms → outcomes, with their measures."""
    out = service.get_logic_model(session, study)
    end_read(session)
    return out


@router.put("/studies/{study_id}/logic-model", response_model=LogicModelRead)
def put_logic_model(
    body: LogicModelIn,
    actor: Actor = Depends(authorize(*ADMIN)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Replace the logic model (a new version; the previous one stays in the audit trail)."""
    lm = service.put_logic_model(session, study, body, actor)
    session.commit()
    return lm


@router.get("/studies/{study_id}/cmos", response_model=list[CmoRead])
def list_cmos(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """The study's context–mechanism–outcome configurations."""
    out = service.list_cmos(session, study)
    end_read(session)
    return out


@router.post("/studies/{study_id}/cmos", response_model=CmoRead, status_code=201)
def add_cmo(
    body: CmoIn,
    actor: Actor = Depends(authorize(*ADMIN)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Record a CMO configuration (pre-specified ones belong in the analysis plan)."""
    c = service.add_cmo(session, study, body, actor)
    session.commit()
    return c


@router.get("/studies/{study_id}/cmos/{cmo_id}", response_model=CmoRead)
def get_cmo(
    cmo_id: int = Path(ge=1, le=2**31 - 1),
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    out = service.get_cmo(session, study, cmo_id)
    end_read(session)
    return out


@router.patch("/studies/{study_id}/cmos/{cmo_id}", response_model=CmoRead)
def patch_cmo(
    body: CmoPatch,
    cmo_id: int = Path(ge=1, le=2**31 - 1),
    actor: Actor = Depends(authorize(*ADMIN)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Change a CMO configuration: its status after the analyses, the evidence links; audited."""
    c = service.update_cmo(session, study, cmo_id, body, actor)
    session.commit()
    return c


@router.get("/studies/{study_id}/realist-table", response_model=None)
def get_realist_table(
    request: Request,
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    format: Literal["json", "csv"] = Query("json"),
    arm: str | None = Query(None, max_length=40, description="intervention arm (default: the first)"),
    reference: str | None = Query(None, max_length=40, description="comparison arm (default: the control arm)"),
    fdr: float = Query(0.05, gt=0, lt=0.5, description="false-discovery rate of the Benjamini–Hochberg step"),
    min_per_cell: int = Query(5, ge=2, le=1000, description="fewest participants per arm in and out of a context"),
    longitudinal: bool = Query(
        False, description="add the arm × time × context estimate over every wave (mixed model; slope_* columns)"
    ),
):
    """Every CMO configuration with its moderation estimate (t interval, BH across the table,
    shrunken subgroup effects) and its qualitative evidence, as JSON or CSV; with ``longitudinal``
    also the arm × time × context estimate (difference in slopes, points per year)."""
    table = realist.study_realist_table(
        session, study, actor, request.app.state.settings.secret_key, arm, reference, fdr, min_per_cell, longitudinal
    )
    end_read(session)
    if format == "csv":
        return PlainResponse(
            realist.table_csv(table),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="realist_{study.id}.csv"'},
        )
    return {"study_id": study.id, "columns": list(table.columns), "rows": records(table)}
