"""/studies/{id}/reminder-plans, /studies/{id}/reminders, /participants/{id}/reminders and the
public unsubscribe route /u/{token}."""

from __future__ import annotations

from html import escape
from typing import Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from api.auth.dependencies import authorize
from api.auth.policy import STAFF
from api.auth.service import Actor
from api.db import get_session
from api.participants.dependencies import valid_participant
from api.participants.models import Participant
from api.reminders import service, tasks
from api.reminders.schemas import PauseRead, PlansIn, PlansRead, ReminderRead, ReminderStatus, TaskRead
from api.studies.dependencies import valid_study
from api.studies.models import Study

router = APIRouter(tags=["reminders"])
Token = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")


@router.get("/studies/{study_id}/reminder-plans", response_model=PlansRead)
def get_plans(
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    return service.read_plans(session, study)


@router.put("/studies/{study_id}/reminder-plans", response_model=PlansRead)
def put_plans(
    request: Request,
    body: PlansIn,
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Replace the study's reminder configuration (quiet hours, SMS webhook, one plan per wave)."""
    allowed = request.app.state.settings.webhook_allowed_networks
    out = service.replace_plans(session, study, body, actor, webhook_allowed_networks=allowed)
    session.commit()
    return out


@router.post("/studies/{study_id}/reminders/pause", response_model=PauseRead)
def pause(
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    cfg = service.set_paused(session, study, True, actor)
    session.commit()
    return PauseRead(study_id=study.id, paused=cfg.paused)


@router.post("/studies/{study_id}/reminders/resume", response_model=PauseRead)
def resume(
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    cfg = service.set_paused(session, study, False, actor)
    session.commit()
    return PauseRead(study_id=study.id, paused=cfg.paused)


@router.get("/studies/{study_id}/reminders", response_model=list[ReminderRead])
def study_reminders(
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    status: ReminderStatus | None = None,
    wave: str | None = Query(None, max_length=40, description="wave code"),
    site: str | None = Query(None, max_length=40, description="site code"),
    limit: int = Query(100, ge=1, le=1000),
    after: int | None = Query(None, ge=0, le=2**31 - 1, description="last id of the previous page"),
):
    return service.list_reminders(
        session, actor, study=study, status=status, wave=wave, site=site, limit=limit, after=after
    )


@router.get("/studies/{study_id}/tasks", response_model=list[TaskRead])
def coordinator_tasks(
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    state: Literal["open", "closed"] = Query("open", description="open windows, or closed ones never collected"),
    site: str | None = Query(None, max_length=40, description="site code"),
    limit: int = Query(500, ge=1, le=5000),
):
    """Instruments staff must collect (the participant form cannot show them), for the actor's sites."""
    return tasks.coordinator_tasks(session, study, actor, state=state, site=site, limit=limit)


@router.get("/participants/{participant_id}/reminders", response_model=list[ReminderRead])
def participant_reminders(
    actor: Actor = Depends(authorize(*STAFF)),
    participant: Participant = Depends(valid_participant),
    session: Session = Depends(get_session),
    status: ReminderStatus | None = None,
    limit: int = Query(100, ge=1, le=1000),
    after: int | None = Query(None, ge=0, le=2**31 - 1),
):
    return service.list_reminders(session, actor, participant=participant, status=status, limit=limit, after=after)


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 36rem; margin: 3rem auto; line-height: 1.5">{body}</body></html>"""


def _page_headers() -> dict[str, str]:
    # The same protections as the form pages: the token is in the URL (no Referer, no cache, no
    # framing), and the inline style is the only thing the page needs besides itself.
    from api.web.router import SECURITY_HEADERS

    return {
        **SECURITY_HEADERS,
        "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'",
    }


@router.get("/u/{token}", response_class=HTMLResponse, include_in_schema=True)
def unsubscribe_page(request: Request, token: str = Token, session: Session = Depends(get_session)):
    """Confirmation page of the unsubscribe link (a GET changes nothing: mail scanners follow links)."""
    service.participant_for_token(session, request.app.state.settings.secret_key, token)
    body = (
        f"<h1>Stop reminders</h1><p>You will get no more reminder messages for this study. "
        f'Your answers so far are kept.</p><form method="post" action="/u/{escape(token)}">'
        '<button type="submit">Stop reminders</button></form>'
    )
    return HTMLResponse(_PAGE.format(title="Stop reminders", body=body), headers=_page_headers())


@router.post("/u/{token}", response_class=HTMLResponse)
def unsubscribe(request: Request, token: str = Token, session: Session = Depends(get_session)):
    """Opt out (the page's button, or one-click ``List-Unsubscribe-Post`` from the mail client)."""
    participant = service.participant_for_token(session, request.app.state.settings.secret_key, token)
    rid = getattr(request.state, "request_id", None)
    service.unsubscribe(session, participant, Actor.system(source="web", request_id=rid))
    session.commit()
    return HTMLResponse(
        _PAGE.format(
            title="Reminders stopped", body="<h1>Reminders stopped</h1><p>You will get no more reminders.</p>"
        ),
        headers=_page_headers(),
    )
