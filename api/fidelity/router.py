"""Fidelity routes (checklists, ratings, summaries, agreement) and the FRAME adaptation log."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Path, Query
from sqlmodel import Session

from api.auth.dependencies import authenticated, authorize
from api.auth.policy import ADMIN, PROCESS_READERS, PROCESS_WRITERS, RATERS
from api.auth.service import Actor
from api.db import end_read, get_session
from api.fidelity import adaptations, frames, service
from api.fidelity import tidier as _tidier  # noqa: F401  (fills TIDieR items 10 and 12)
from api.fidelity.models import Adaptation, FidelityRating
from api.fidelity.schemas import (
    AdaptationIn,
    AdaptationPatch,
    AdaptationRead,
    AgreementRead,
    ChecklistIn,
    ChecklistRead,
    Consistency,
    RatingIn,
    RatingPatch,
    RatingRead,
    SummaryRow,
)
from api.studies.dependencies import valid_study
from api.studies.models import Study

router = APIRouter(tags=["fidelity"])
_ID = Query(None, ge=1, le=2**31 - 1)
_CODE = Query(None, max_length=60)
_SITE = Query(None, max_length=40, description="site code")
Part = Literal["total", "core", "form", "core_full"]
Grouping = Literal["session", "supporter", "group", "site", "arm"]


def valid_rating(
    rating_id: int = Path(ge=1, le=2**31 - 1),
    actor: Actor = Depends(authenticated),
    session: Session = Depends(get_session),
) -> FidelityRating:
    """The rating of the path; 404 when unknown or at a site the user does not cover."""
    row = service.get_rating(session, rating_id, actor)
    end_read(session)
    return row


def valid_adaptation(
    adaptation_id: int = Path(ge=1, le=2**31 - 1),
    actor: Actor = Depends(authenticated),
    session: Session = Depends(get_session),
) -> Adaptation:
    """The adaptation of the path; 404 when unknown or at a site the user does not cover."""
    row = adaptations.get_adaptation(session, adaptation_id, actor)
    end_read(session)
    return row


# ---- checklists ----------------------------------------------------------------------------------


@router.get("/fidelity/templates", response_model=list[dict])
def get_templates(actor: Actor = Depends(authorize(*PROCESS_READERS))):
    """The checklists shipped with Peerlens, as definitions a study can adopt
    (``{"template": code}``) or copy and change."""
    return service.templates()


@router.post("/studies/{study_id}/fidelity/checklists", response_model=ChecklistRead, status_code=201)
def post_checklist(
    body: ChecklistIn,
    actor: Actor = Depends(authorize(*ADMIN)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Add a fidelity checklist version: a full definition (items with their component, core or
    form, and options) or ``{"template": "peer_group_session"}``. A new version of a code is a new
    row; ratings keep the version they used."""
    row = service.create_checklist(session, study, body, actor)
    session.commit()
    return row


@router.get("/studies/{study_id}/fidelity/checklists", response_model=list[ChecklistRead])
def get_checklists(
    actor: Actor = Depends(authorize(*PROCESS_READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """The study's checklists, every version."""
    out = service.list_checklists(session, study)
    end_read(session)
    return out


# ---- ratings -------------------------------------------------------------------------------------


@router.post("/studies/{study_id}/fidelity/ratings", response_model=RatingRead, status_code=201)
def post_rating(
    body: RatingIn,
    actor: Actor = Depends(authorize(*RATERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Rate a delivered session with a checklist (independent evaluators; admins). Every answer must
    be one of its item's option codes; the scores are computed, never typed."""
    row = service.create_rating(session, study, body, actor)
    session.commit()
    return service.to_read(session, [row], actor)[0]


@router.get("/studies/{study_id}/fidelity/ratings", response_model=list[RatingRead])
def get_ratings(
    actor: Actor = Depends(authorize(*PROCESS_READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    session_id: int | None = _ID,
    supporter_id: int | None = _ID,
    site: str | None = _SITE,
    checklist: str | None = _CODE,
    limit: int = Query(500, ge=1, le=5000),
    after: int | None = Query(None, ge=1, le=2**31 - 1, description="the last id of the previous page"),
):
    """Ratings of your sites, oldest first (filter by session, supporter, site, checklist)."""
    rows = service.list_ratings(
        session,
        study,
        actor,
        session_id=session_id,
        supporter_id=supporter_id,
        site=site,
        checklist=checklist,
        limit=limit,
        after=after,
    )
    out = service.to_read(session, rows, actor)
    end_read(session)
    return out


@router.get("/fidelity/ratings/{rating_id}", response_model=RatingRead)
def get_rating(
    actor: Actor = Depends(authorize(*PROCESS_READERS)),
    row: FidelityRating = Depends(valid_rating),
    session: Session = Depends(get_session),
):
    out = service.to_read(session, [row], actor)[0]
    end_read(session)
    return out


@router.patch("/fidelity/ratings/{rating_id}", response_model=RatingRead)
def patch_rating(
    body: RatingPatch,
    actor: Actor = Depends(authorize(*RATERS)),
    row: FidelityRating = Depends(valid_rating),
    session: Session = Depends(get_session),
):
    """Correct a rating (its rater or an admin), with a reason; the scores are recomputed."""
    row = service.update_rating(session, row, body, actor)
    session.commit()
    return service.to_read(session, [row], actor)[0]


@router.get("/studies/{study_id}/fidelity/summary", response_model=list[SummaryRow])
def get_summary(
    actor: Actor = Depends(authorize(*PROCESS_READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    by: list[Grouping] = Query(["supporter"], max_length=3),
    period: Literal["week", "month", "quarter", "year", "none"] = "month",
    part: Part = "total",
    checklist: str | None = _CODE,
    version: str | None = Query(None, max_length=20),
):
    """Mean fidelity (percent of maximum) per session, supporter, group, site or arm and period;
    double-rated sessions count once (mean of their raters)."""
    out = frames.summary(
        session,
        study,
        actor,
        by=list(dict.fromkeys(by)),
        period=None if period == "none" else period,
        part=part,
        checklist=checklist,
        version=version,
    )
    end_read(session)
    return out


@router.get("/studies/{study_id}/fidelity/agreement", response_model=AgreementRead)
def get_agreement(
    actor: Actor = Depends(authorize(*PROCESS_READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    checklist: str = Query(max_length=60),
    version: str | None = Query(None, max_length=20),
    part: Part = "total",
    weights: Literal["quadratic", "linear", "none"] = "quadratic",
):
    """Inter-rater agreement on double-rated sessions: Cohen's kappa (weighted) per item, per
    component and pooled; ICC(1,1) and ICC(2,1) of the session scores."""
    out = frames.agreement(
        session,
        study,
        actor,
        checklist=checklist,
        version=version,
        part=part,
        weights=None if weights == "none" else weights,
    )
    end_read(session)
    return out


# ---- adaptations ---------------------------------------------------------------------------------


@router.post("/studies/{study_id}/adaptations", response_model=AdaptationRead, status_code=201)
def post_adaptation(
    body: AdaptationIn,
    actor: Actor = Depends(authorize(*PROCESS_WRITERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Log an adaptation with FRAME's fields (when, what, level, nature, who decided, planned or
    not, reasons, goal, fidelity-consistent)."""
    row = adaptations.create_adaptation(session, study, body, actor)
    session.commit()
    return adaptations.to_read(session, [row], actor)[0]


@router.get("/studies/{study_id}/adaptations", response_model=list[AdaptationRead])
def get_adaptations(
    actor: Actor = Depends(authorize(*PROCESS_READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    arm: str | None = Query(None, max_length=40, description="arm code"),
    site: str | None = _SITE,
    fidelity: Consistency | None = None,
    planned: bool | None = None,
):
    """The adaptation log (your sites and programme-wide entries), in date order."""
    rows = adaptations.list_adaptations(session, study, actor, arm=arm, site=site, fidelity=fidelity, planned=planned)
    out = adaptations.to_read(session, rows, actor)
    end_read(session)
    return out


@router.get("/adaptations/{adaptation_id}", response_model=AdaptationRead)
def get_adaptation(
    actor: Actor = Depends(authorize(*PROCESS_READERS)),
    row: Adaptation = Depends(valid_adaptation),
    session: Session = Depends(get_session),
):
    out = adaptations.to_read(session, [row], actor)[0]
    end_read(session)
    return out


@router.patch("/adaptations/{adaptation_id}", response_model=AdaptationRead)
def patch_adaptation(
    body: AdaptationPatch,
    actor: Actor = Depends(authorize(*PROCESS_WRITERS)),
    row: Adaptation = Depends(valid_adaptation),
    session: Session = Depends(get_session),
):
    """Correct an adaptation record, with a reason (audited)."""
    row = adaptations.update_adaptation(session, row, body, actor)
    session.commit()
    return adaptations.to_read(session, [row], actor)[0]
