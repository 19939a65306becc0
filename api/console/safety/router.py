"""/console/studies/{id}/alerts: the safety alerts not yet resolved at the sites one sees, each
acknowledged from the list through :func:`api.safety.service.acknowledge` (the REST rule: the
acknowledging user becomes the owner and the pending messages about the alert stop)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from api.auth.policy import STAFF
from api.auth.service import Actor
from api.console.dependencies import console_user, csrf_ok, page, redirect
from api.console.forms import expired
from api.console.service import as_of
from api.db import end_read, get_session
from api.errors import ApiError
from api.safety import service as safety
from api.studies.service import require_study

router = APIRouter(tags=["console"], include_in_schema=False)


def _alerts_page(request, session, actor, study_id, *, notice=None, error=None, status_code=200) -> HTMLResponse:
    study = require_study(session, study_id, actor)
    rows = safety.to_read(session, safety.list_alerts(session, actor, study=study, status="unresolved", limit=200))
    end_read(session)
    return page(
        request,
        "alerts.html",
        {
            "title": f"Safety alerts · {study.title}",
            "study": study,
            "alerts": rows,
            "notice": notice,
            "error": error,
            "as_of": lambda m: as_of(m, study),
        },
        status_code=status_code,
    )


@router.get("/console/studies/{study_id}/alerts", response_class=HTMLResponse)
def alerts(
    request: Request,
    study_id: int,
    actor: Actor = Depends(console_user(*STAFF)),
    session: Session = Depends(get_session),
):
    """Open and acknowledged alerts, oldest deadline first as the REST list gives them."""
    return _alerts_page(request, session, actor, study_id)


@router.post("/console/studies/{study_id}/alerts/acknowledge", response_class=HTMLResponse)
def acknowledge(
    request: Request,
    study_id: int,
    csrf: str = Form("", max_length=200),
    alert_id: int = Form(0, ge=0),
    actor: Actor = Depends(console_user(*STAFF)),
    session: Session = Depends(get_session),
):
    if not csrf_ok(request, csrf):
        return expired(request)
    require_study(session, study_id, actor)
    try:
        alert = safety.get_alert(session, alert_id, actor)
        if alert.study_id != study_id:
            raise ApiError(["body", "alert_id"], "alert not found", "not_found", status_code=404)
        safety.acknowledge(session, alert, actor)
    except ApiError as exc:
        session.rollback()
        return _alerts_page(request, session, actor, study_id, error=exc.errors[0]["msg"], status_code=exc.status_code)
    session.commit()
    return redirect(request, f"/console/studies/{study_id}/alerts?acknowledged={alert_id}")
