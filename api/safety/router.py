"""Safety routes: settings and status, alerts, adverse events, the DMC line listing and summary."""

from __future__ import annotations

import csv
import io
from typing import Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response as PlainResponse
from sqlmodel import Session

from api.auth.dependencies import authenticated, authorize
from api.auth.policy import ADMIN, STAFF
from api.auth.service import Actor
from api.db import end_read, get_session, utcnow
from api.participants.dependencies import valid_participant
from api.participants.models import Participant
from api.safety import configuration, events, reports, service
from api.safety.models import AdverseEvent, SafetyAlert
from api.safety.schemas import (
    AckIn,
    AdverseEventIn,
    AdverseEventPatch,
    AdverseEventRead,
    AlertRead,
    AlertStatusFilter,
    AssignIn,
    FollowUpIn,
    NotificationRead,
    ResolveIn,
    SettingsIn,
    SettingsRead,
    StatusRead,
)
from api.studies.dependencies import valid_study
from api.studies.models import Study

router = APIRouter(tags=["safety"])
_LIMIT = Query(100, ge=1, le=1000)
_AFTER = Query(None, ge=1, le=2**31 - 1, description="the last id of the previous page (lists are newest first)")
_SITE = Query(None, max_length=40, description="site code")


def valid_alert(
    alert_id: int = Path(ge=1, le=2**31 - 1),
    actor: Actor = Depends(authenticated),
    session: Session = Depends(get_session),
) -> SafetyAlert:
    """The alert of the path; 404 when unknown or at a site the user does not cover."""
    alert = service.get_alert(session, alert_id, actor)
    end_read(session)
    return alert


def valid_event(
    event_id: int = Path(ge=1, le=2**31 - 1),
    actor: Actor = Depends(authenticated),
    session: Session = Depends(get_session),
) -> AdverseEvent:
    """The adverse event of the path; 404 when unknown or at a site the user does not cover."""
    event = events.get_event(session, event_id, actor)
    end_read(session)
    return event


# ---- settings, status, DMC views ---------------------------------------------------------------


@router.get("/studies/{study_id}/safety/settings", response_model=SettingsRead)
def get_settings(
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """The study's safety set-up: PI, contacts per site, escalation delay, SAE follow-up interval,
    support message and crisis numbers, and every alert rule in force (instrument and study)."""
    out = configuration.read_settings(session, study)
    end_read(session)
    return out


@router.put("/studies/{study_id}/safety/settings", response_model=SettingsRead)
def put_settings(
    body: SettingsIn,
    actor: Actor = Depends(authorize(*ADMIN)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Change the safety set-up; fields left out keep their value (audited)."""
    configuration.update_settings(session, study, body, actor)
    session.commit()
    return configuration.read_settings(session, study)


@router.get("/studies/{study_id}/safety/status", response_model=StatusRead)
def get_status(
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Open and overdue alerts, overdue serious events, undelivered messages (your sites), and
    warnings for every gap in the safety set-up."""
    out = reports.status(session, study, actor, utcnow())
    end_read(session)
    return out


@router.get("/studies/{study_id}/safety/notifications", response_model=list[NotificationRead])
def get_notifications(
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    status: Literal["pending", "sending", "sent", "failed", "cancelled"] | None = None,
    limit: int = _LIMIT,
    after: int | None = _AFTER,
):
    """Safety messages to staff (coordinators: their own sites), newest first: who, what about,
    delivered or not, and why not."""
    out = reports.notifications(session, study, actor, status=status, limit=limit, after=after)
    end_read(session)
    return out


@router.get("/studies/{study_id}/safety/summary")
def get_summary(
    request: Request,
    actor: Actor = Depends(authorize("admin", "analyst")),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Harms by arm for a data monitoring committee: participants with at least one adverse event
    out of N (exact 95% CI), events, serious events by criterion, severity, relatedness, and
    participants with safety alerts. Arm labels are masked for those who may not see allocation."""
    out = reports.summary(session, study, actor, request.app.state.settings.secret_key)
    end_read(session)
    return out


def _cell(v):
    if isinstance(v, bool):
        return "true" if v else "false"  # as in every export
    if isinstance(v, str) and v and v[0] in "=+-@\t\r":
        return "'" + v  # a spreadsheet must not run a description as a formula
    return v


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow({k: _cell(v) for k, v in row.items()})
    return buf.getvalue()


@router.get("/studies/{study_id}/safety/line-listing")
def get_line_listing(
    request: Request,
    actor: Actor = Depends(authorize(*ADMIN)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    format: str = Query("json", pattern="^(json|csv)$"),
):
    """Every adverse event of the study, one row each (data monitoring committee line listing)."""
    rows = reports.line_listing(session, study, actor, request.app.state.settings.secret_key, utcnow())
    end_read(session)
    if format == "csv":
        return PlainResponse(
            _csv(rows, reports.LISTING_COLUMNS),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="study-{study.id}-ae-line-listing.csv"'},
        )
    return rows


# ---- alerts --------------------------------------------------------------------------------------


@router.get("/studies/{study_id}/alerts", response_model=list[AlertRead])
def study_alerts(
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    status: AlertStatusFilter | None = None,
    site: str | None = _SITE,
    limit: int = _LIMIT,
    after: int | None = _AFTER,
):
    """Safety alerts of the study (coordinators: their own sites), newest first."""
    found = service.list_alerts(session, actor, study=study, status=status, site=site, limit=limit, after=after)
    out = service.to_read(session, found)
    end_read(session)
    return out


@router.get("/participants/{participant_id}/alerts", response_model=list[AlertRead])
def participant_alerts(
    actor: Actor = Depends(authorize(*STAFF)),
    participant: Participant = Depends(valid_participant),
    session: Session = Depends(get_session),
    status: AlertStatusFilter | None = None,
):
    out = service.to_read(session, service.list_alerts(session, actor, participant=participant, status=status))
    end_read(session)
    return out


@router.get("/alerts/{alert_id}", response_model=AlertRead)
def read_alert(
    actor: Actor = Depends(authorize(*STAFF)),
    alert: SafetyAlert = Depends(valid_alert),
    session: Session = Depends(get_session),
):
    out = service.to_read(session, [alert])[0]
    end_read(session)
    return out


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertRead)
def acknowledge_alert(
    body: AckIn | None = None,
    actor: Actor = Depends(authorize(*STAFF)),
    alert: SafetyAlert = Depends(valid_alert),
    session: Session = Depends(get_session),
):
    """Take on an open alert: you become its owner; messages about it not yet sent are cancelled."""
    service.acknowledge(session, alert, actor, note=body.note if body else None)
    session.commit()
    return service.to_read(session, [alert])[0]


@router.post("/alerts/{alert_id}/resolve", response_model=AlertRead)
def resolve_alert(
    body: ResolveIn,
    actor: Actor = Depends(authorize(*STAFF)),
    alert: SafetyAlert = Depends(valid_alert),
    session: Session = Depends(get_session),
):
    """Close an alert with the action taken (``no_action`` needs the reason in ``note``)."""
    service.resolve(session, alert, actor, body.action, body.note)
    session.commit()
    return service.to_read(session, [alert])[0]


@router.patch("/alerts/{alert_id}", response_model=AlertRead)
def assign_alert(
    body: AssignIn,
    actor: Actor = Depends(authorize(*STAFF)),
    alert: SafetyAlert = Depends(valid_alert),
    session: Session = Depends(get_session),
):
    """Give the alert to another admin or coordinator of its site."""
    service.assign(session, alert, actor, body.owner_id)
    session.commit()
    return service.to_read(session, [alert])[0]


# ---- adverse events ------------------------------------------------------------------------------


@router.get("/studies/{study_id}/adverse-events", response_model=list[AdverseEventRead])
def study_events(
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    serious: bool | None = None,
    overdue: bool | None = Query(None, description="serious events whose follow-up is overdue"),
    site: str | None = _SITE,
    limit: int = _LIMIT,
    after: int | None = _AFTER,
):
    """Adverse events of the study (coordinators: their own sites), newest first."""
    now = utcnow()
    found = events.list_events(
        session, actor, study=study, serious=serious, overdue=overdue, site=site, now=now, limit=limit, after=after
    )
    out = events.to_read(session, found, now)
    end_read(session)
    return out


@router.get("/participants/{participant_id}/adverse-events", response_model=list[AdverseEventRead])
def participant_events(
    actor: Actor = Depends(authorize(*STAFF)),
    participant: Participant = Depends(valid_participant),
    session: Session = Depends(get_session),
):
    out = events.to_read(session, events.list_events(session, actor, participant=participant))
    end_read(session)
    return out


@router.post("/participants/{participant_id}/adverse-events", status_code=201, response_model=AdverseEventRead)
def create_event(
    body: AdverseEventIn,
    actor: Actor = Depends(authorize(*STAFF)),
    participant: Participant = Depends(valid_participant),
    session: Session = Depends(get_session),
):
    """Record an adverse event; a serious one notifies the PI and the site's safety contacts at once."""
    event = events.create_event(session, participant, body, actor)
    session.commit()
    return events.to_read(session, [event])[0]


@router.get("/adverse-events/{event_id}", response_model=AdverseEventRead)
def read_event(
    actor: Actor = Depends(authorize(*STAFF)),
    event: AdverseEvent = Depends(valid_event),
    session: Session = Depends(get_session),
):
    out = events.to_read(session, [event])[0]
    end_read(session)
    return out


@router.patch("/adverse-events/{event_id}", response_model=AdverseEventRead)
def update_event(
    body: AdverseEventPatch,
    actor: Actor = Depends(authorize(*STAFF)),
    event: AdverseEvent = Depends(valid_event),
    session: Session = Depends(get_session),
):
    """Correct an adverse event, with a ``reason`` (the previous values stay in the audit trail)."""
    events.update_event(session, event, body, actor)
    session.commit()
    return events.to_read(session, [event])[0]


@router.post("/adverse-events/{event_id}/follow-ups", status_code=201, response_model=AdverseEventRead)
def follow_up_event(
    body: FollowUpIn,
    actor: Actor = Depends(authorize(*STAFF)),
    event: AdverseEvent = Depends(valid_event),
    session: Session = Depends(get_session),
):
    """Record a follow-up (a new outcome or resolution date updates the event)."""
    events.add_follow_up(session, event, body, actor)
    session.commit()
    return events.to_read(session, [event])[0]
