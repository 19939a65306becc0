"""Routes of the joint-display matrices (trajectory group × theme, case matrix; reads only) and of
the meta-inferences stored per joint-display row."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlmodel import Session

from api.auth.dependencies import authorize
from api.auth.policy import READERS, STAFF
from api.auth.service import Actor
from api.db import end_read, get_session
from api.studies.dependencies import valid_study
from api.studies.models import Study
from api.transcripts import joint, meta, service
from api.transcripts.schemas import MetaInferenceWrite

router = APIRouter(tags=["transcripts"])


def _settings(request: Request):
    return request.app.state.settings


def _matrix_params(
    theme, scale, mcid, higher_is_better, baseline, followup, quotes, reliability=None
) -> joint.MatrixParams:
    return joint.MatrixParams(
        themes=theme,
        scale=scale,
        mcid=mcid,
        reliability=reliability,
        higher_is_better=higher_is_better,
        baseline=baseline,
        followup=followup,
        quotes=quotes,
    )


@router.get("/studies/{study_id}/qualitative/trajectory-matrix")
def trajectory_matrix(
    request: Request,
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    theme: list[str] = Query(..., min_length=1, max_length=50, description="code key or id"),
    scale: str = Query(..., max_length=60, description="outcome scale, e.g. pam13"),
    mcid: float | None = Query(None, gt=0, le=10_000, description="minimal clinically important difference"),
    reliability: float | None = Query(
        None, ge=0, lt=1, description="instead of mcid: the scale's reliability, for the reliable change index"
    ),
    higher_is_better: bool = True,
    baseline: str | None = Query(None, max_length=40),
    followup: str | None = Query(None, max_length=40),
    quotes: int = Query(2, ge=0, le=5),
    format: Literal["json", "html"] = "json",
):
    """Trajectory group (improved / no change / worsened by the MCID) × theme, per arm: group size,
    how many expressed the theme, prevalence and different quotes per cell. ``format=html`` gives an
    HTML table fragment. Nothing is written."""
    p = _matrix_params(theme, scale, mcid, higher_is_better, baseline, followup, quotes, reliability)
    if format == "html":
        out = joint.trajectory_matrix_html(session, study, actor, p, _settings(request))
        end_read(session)
        return Response(out, media_type="text/html; charset=utf-8")
    rows = joint.as_rows(joint.trajectory_matrix(session, study, actor, p, _settings(request)))
    end_read(session)
    return {"scale": scale, "mcid": mcid, "higher_is_better": higher_is_better, "rows": rows}


@router.get("/studies/{study_id}/qualitative/case-matrix")
def case_matrix(
    request: Request,
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    theme: list[str] = Query(..., min_length=1, max_length=50, description="code key or id"),
    scale: str = Query(..., max_length=60),
    mcid: float | None = Query(None, gt=0, le=10_000),
    reliability: float | None = Query(None, ge=0, lt=1),
    higher_is_better: bool = True,
    baseline: str | None = Query(None, max_length=40),
    followup: str | None = Query(None, max_length=40),
    sort: str | None = Query(None, max_length=500, description="columns to sort by, comma-separated"),
    format: Literal["json", "html"] = "json",
):
    """One row per interviewed participant: arm, trajectory, change, case variables (dose ...) and a
    0/1 column per theme, sorted by any columns. Nothing is written."""
    p = _matrix_params(theme, scale, mcid, higher_is_better, baseline, followup, 0, reliability)
    order = service.parse_list(sort, ("query", "sort")) or []
    if format == "html":
        out = joint.case_matrix_html(session, study, actor, p, _settings(request), order)
        end_read(session)
        return Response(out, media_type="text/html; charset=utf-8")
    rows = joint.as_rows(joint.case_matrix(session, study, actor, p, _settings(request), order))
    end_read(session)
    return {"scale": scale, "mcid": mcid, "rows": rows}


@router.put("/studies/{study_id}/qualitative/meta-inferences")
def put_meta_inference(
    body: MetaInferenceWrite,
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Record what the strands say together for one theme × scale (replaces an earlier one; audited)."""
    row = meta.set_inference(session, study, actor, body)
    out = meta.as_dict(row)
    session.commit()
    return out


@router.get("/studies/{study_id}/qualitative/meta-inferences")
def list_meta_inferences(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    format: Literal["json", "csv"] = "json",
):
    """Every meta-inference of the study, as JSON or CSV (UTF-8 with BOM)."""
    rows = meta.inferences(session, study.id)
    end_read(session)
    if format == "csv":
        return Response(
            meta.to_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="study-{study.id}-meta-inferences.csv"'},
        )
    return [meta.as_dict(m) for m in rows]
