"""/studies/{id}/analyses: run the analysis library on the study's current export.

Routes are synchronous and bounded: a run reads the cohort, fits, renders its plots and answers
in the same request. A random-slope trajectory on 10,000 participants × 6 waves takes about
25 s; above ``PEERLENS_ANALYSIS_MAX_PARTICIPANTS`` the route answers 422 and points to
``peerlens analyze``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import FileResponse
from sqlmodel import Session

from api.analyses import service
from api.analyses.schemas import (
    AnalysisRun,
    AttritionRequest,
    EffectSizesRequest,
    GEERequest,
    MissingDataRequest,
    ModerationRequest,
    PowerRequest,
    ReliabilityRequest,
    RespondersRequest,
    RetentionRequest,
    TrajectoryRequest,
    TrialRequest,
)
from api.auth.dependencies import authorize
from api.auth.service import Actor
from api.db import end_read, get_session
from api.studies.dependencies import valid_study
from api.studies.models import Study

router = APIRouter(tags=["analyses"])

#: Who may run analyses and fetch their plots (coordinators on their own sites' participants).
ANALYSIS_ROLES = ("admin", "coordinator", "analyst")
_who = authorize(*ANALYSIS_ROLES)


def _run(kind: str, body, request: Request, actor: Actor, study: Study, session: Session) -> AnalysisRun:
    return service.execute(session, study, actor, kind, body, request.app.state.settings)


_DOC = {
    422: {
        "description": "a field names something the study does not have, or the data cannot "
        "support the model (the message says which and why)"
    }
}


@router.post("/studies/{study_id}/analyses/trajectory", response_model=AnalysisRun, responses=_DOC)
def trajectory(
    body: TrajectoryRequest,
    request: Request,
    actor: Actor = Depends(_who),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Mixed model of an outcome over time by arm: fixed effects, variance components, predicted
    means, yearly slopes and their difference from the control arm, with a trajectory plot."""
    return _run("trajectory", body, request, actor, study, session)


@router.post("/studies/{study_id}/analyses/moderation", response_model=AnalysisRun, responses=_DOC)
def moderation(
    body: ModerationRequest,
    request: Request,
    actor: Actor = Depends(_who),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """What works for whom: subgroup slopes and effects by a context answer or a qualitative code."""
    return _run("moderation", body, request, actor, study, session)


@router.post("/studies/{study_id}/analyses/reliability", response_model=AnalysisRun, responses=_DOC)
def reliability(
    body: ReliabilityRequest,
    request: Request,
    actor: Actor = Depends(_who),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Cronbach's alpha (CI) and McDonald's omega per instrument and wave, and item–rest correlations."""
    return _run("reliability", body, request, actor, study, session)


@router.post("/studies/{study_id}/analyses/effect-sizes", response_model=AnalysisRun, responses=_DOC)
def effect_sizes(
    body: EffectSizesRequest,
    request: Request,
    actor: Actor = Depends(_who),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Pre–post effect sizes within arms (Cohen's d_av) and between arms (Hedges' g on change)."""
    return _run("effect-sizes", body, request, actor, study, session)


@router.post("/studies/{study_id}/analyses/responders", response_model=AnalysisRun, responses=_DOC)
def responders(
    body: RespondersRequest,
    request: Request,
    actor: Actor = Depends(_who),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Share improving by at least the MCID per arm, with the risk difference vs the control arm."""
    return _run("responders", body, request, actor, study, session)


@router.post("/studies/{study_id}/analyses/retention", response_model=AnalysisRun, responses=_DOC)
def retention(
    body: RetentionRequest,
    request: Request,
    actor: Actor = Depends(_who),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Time to dropout: Kaplan–Meier table and plot, log-rank test and a Cox model; optionally the
    time to first reaching a threshold (PHQ-9 < 10, PAM level 3+)."""
    return _run("retention", body, request, actor, study, session)


@router.post("/studies/{study_id}/analyses/attrition", response_model=AnalysisRun, responses=_DOC)
def attrition(
    body: AttritionRequest,
    request: Request,
    actor: Actor = Depends(_who),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Completion per wave and group, and baseline differences between dropouts and the retained."""
    return _run("attrition", body, request, actor, study, session)


@router.post("/studies/{study_id}/analyses/power", response_model=AnalysisRun, responses=_DOC)
def power(
    body: PowerRequest,
    request: Request,
    actor: Actor = Depends(_who),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Participants per arm and a power curve from the request's assumptions, compared with the
    study's planned sample size (no study data are read)."""
    return _run("power", body, request, actor, study, session)


@router.get(
    "/studies/{study_id}/analyses/runs/{run_id}/{filename}",
    responses={200: {"content": {"image/png": {}, "image/svg+xml": {}}}},
)
def plot_file(
    request: Request,
    run_id: str = Path(max_length=64),
    filename: str = Path(max_length=200),
    actor: Actor = Depends(_who),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """A plot of an analysis run (PNG or SVG), for the roles that may run analyses."""
    path = service.artefact(session, request.app.state.settings.analysis_artifact_dir, study, actor, run_id, filename)
    end_read(session)
    return FileResponse(
        path, media_type=service.MEDIA_TYPES[path.suffix.lstrip(".")], headers={"Cache-Control": "private, no-store"}
    )


@router.post("/studies/{study_id}/analyses/trial", response_model=AnalysisRun, responses=_DOC)
def trial(
    body: TrialRequest,
    request: Request,
    actor: Actor = Depends(_who),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """The primary analysis at a named follow-up wave: baseline-adjusted ANCOVA (optionally with
    cluster-robust SEs) and cLDA over all waves (common baseline, unstructured covariance,
    Satterthwaite df)."""
    return _run("trial", body, request, actor, study, session)


@router.post("/studies/{study_id}/analyses/gee", response_model=AnalysisRun, responses=_DOC)
def gee(
    body: GEERequest,
    request: Request,
    actor: Actor = Depends(_who),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """GEE with robust SEs: continuous outcomes (sensitivity to the mixed model), binary (a threshold
    on the score, odds ratios) and counts (rate ratios) over waves by arm."""
    return _run("gee", body, request, actor, study, session)


@router.post("/studies/{study_id}/analyses/missing-data", response_model=AnalysisRun, responses=_DOC)
def missing_data(
    body: MissingDataRequest,
    request: Request,
    actor: Actor = Depends(_who),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Multiple imputation by chained equations of the missing follow-up (Rubin's rules) and a
    delta-adjusted tipping-point analysis for missing-not-at-random dropout."""
    return _run("missing-data", body, request, actor, study, session)
