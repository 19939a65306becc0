"""/console/studies/{id}/delivery and /console/sessions/{id}: the process-evaluation record in the console.

A coordinator sees the peer groups and sessions of their sites, schedules a session, and after it
records the delivery (date, duration) and the register (who attended, came late, left early, was
excused or absent) in one step. Every write goes through the same services and schemas as the REST
routes (:mod:`api.delivery.sessions`), so the checks, site scoping and audit are theirs; a refused
form is shown again with each problem next to its field and nothing saved.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from sqlmodel import Session

from api.auth.policy import STAFF
from api.auth.service import Actor
from api.console.dependencies import console_user, csrf_ok, page, redirect
from api.console.forms import errors_by_field, expired, posted_form, validation_errors
from api.db import end_read, get_session
from api.delivery import sessions as delivery
from api.delivery.models import ATTENDANCE, MODES, PeerGroup
from api.delivery.schemas import AttendanceIn, SessionIn, SessionPatch
from api.errors import ApiError
from api.studies.service import require_study

router = APIRouter(tags=["console"], include_in_schema=False)

_LABELS = {"attended": "Attended", "late": "Came late", "left_early": "Left early", "excused": "Excused"}
#: The register's choices, in the order the service lists the statuses.
ATTENDANCE_LABELS = {s: _LABELS.get(s, s.replace("_", " ").capitalize()) for s in ATTENDANCE}


def _delivery_page(request, session, actor, study_id, *, values=None, errors=None, status_code=200) -> HTMLResponse:
    study = require_study(session, study_id, actor)
    groups = delivery.list_groups(session, study, actor)
    rows = delivery.list_sessions(session, study, actor)
    end_read(session)
    by_group = {g.id: g for g in groups}
    return page(
        request,
        "delivery.html",
        {
            "title": f"Delivery · {study.title}",
            "study": study,
            "groups": groups,
            "sessions": sorted(rows, key=lambda s: (s.planned_date, s.id), reverse=True),
            "by_group": by_group,
            "field_name": _field_namer({}),
            "modes": MODES,
            "today": delivery.study_today(study).isoformat(),
            "v": values or {},
            "errors": errors or {},
        },
        status_code=status_code,
    )


@router.get("/console/studies/{study_id}/delivery", response_class=HTMLResponse)
def delivery_page(
    request: Request,
    study_id: int,
    actor: Actor = Depends(console_user(*STAFF)),
    session: Session = Depends(get_session),
):
    """Peer groups and sessions at the sites one sees, newest first, and a form to schedule a session."""
    return _delivery_page(request, session, actor, study_id)


@router.post("/console/studies/{study_id}/delivery/sessions", response_class=HTMLResponse)
def schedule_session(
    request: Request,
    study_id: int,
    values: dict[str, str] = Depends(posted_form),
    actor: Actor = Depends(console_user(*STAFF)),
    session: Session = Depends(get_session),
):
    if not csrf_ok(request, values.pop("csrf", "")):
        return expired(request)
    study = require_study(session, study_id, actor)
    body = {
        "group_id": values.get("group_id") or None,
        "planned_date": values.get("planned_date") or None,
        "number": values.get("number") or None,
        "topic": values.get("topic") or None,
        "mode": values.get("mode") or None,
    }
    try:
        s = delivery.create_session(session, study, SessionIn.model_validate(body), actor)
    except ValidationError as exc:
        session.rollback()
        return _delivery_page(
            request, session, actor, study_id, values=values, errors=validation_errors(exc), status_code=422
        )
    except ApiError as exc:
        session.rollback()
        errors = errors_by_field(exc.errors)
        return _delivery_page(
            request, session, actor, study_id, values=values, errors=errors, status_code=exc.status_code
        )
    session.commit()
    return redirect(request, f"/console/sessions/{s.id}?scheduled=1")


_FIELDS = {
    "delivered_on": "Date it took place",
    "duration_minutes": "Duration",
    "group_id": "Group",
    "planned_date": "Planned date",
    "number": "Session number",
    "topic": "Topic",
    "mode": "Mode",
    "cancel_reason": "Reason",
}


def _field_namer(codes: dict[int, str]):
    """The name of a form field for the error summary (``minutes_12`` -> ``Minutes of P-ABC``)."""

    def name(key: str) -> str:
        kind, _, pid = key.rpartition("_")
        if kind in ("status", "minutes") and pid.isdigit():
            return f"{'Attendance' if kind == 'status' else 'Minutes'} of {codes.get(int(pid), pid)}"
        return _FIELDS.get(key, key.replace("_", " "))

    return name


def _members_on(group, day: date) -> list:
    """The members of ``group`` (a GroupRead) on ``day``: the people the register lists."""
    return [m for m in group.members if m.joined_on <= day and (m.left_on is None or m.left_on >= day)]


def _session_page(request, session, actor, session_id, *, values=None, errors=None, status_code=200) -> HTMLResponse:
    row = delivery.get_session_row(session, session_id, actor)
    study = require_study(session, row.study_id, actor)
    g = session.get(PeerGroup, row.group_id)
    group = delivery.group_read(session, g) if g is not None else None
    read = delivery.session_reads(session, [row])[0]
    register = {a.participant_id: a for a in delivery.list_attendance(session, row)}
    end_read(session)
    day = read.delivered_on or read.planned_date
    if values and values.get("delivered_on"):
        try:
            day = date.fromisoformat(values["delivered_on"])
        except ValueError:
            pass
    return page(
        request,
        "session.html",
        {
            "title": f"Session · {study.title}",
            "study": study,
            "s": read,
            "group": group,
            "members": _members_on(group, day) if group is not None else [],
            "register": register,
            "statuses": ATTENDANCE_LABELS,
            "field_name": _field_namer({m.participant_id: m.study_code for m in group.members} if group else {}),
            "today": delivery.study_today(study).isoformat(),
            "v": values or {},
            "errors": errors or {},
        },
        status_code=status_code,
    )


@router.get("/console/sessions/{session_id}", response_class=HTMLResponse)
def session_page(
    request: Request,
    session_id: int,
    actor: Actor = Depends(console_user(*STAFF)),
    session: Session = Depends(get_session),
):
    """One session: its details, and the form that records its delivery and register."""
    return _session_page(request, session, actor, session_id)


def _register(values: dict[str, str], member_ids: list[int]) -> list[dict[str, Any]]:
    """The register's entries from the form (``status_<participant id>``, ``minutes_<participant id>``)."""
    out = []
    for pid in member_ids:
        status = values.get(f"status_{pid}", "")
        if not status:
            continue
        minutes = values.get(f"minutes_{pid}", "").strip()
        out.append({"participant_id": pid, "status": status, "minutes": minutes or None})
    return out


@router.post("/console/sessions/{session_id}", response_class=HTMLResponse)
def record_delivery(
    request: Request,
    session_id: int,
    values: dict[str, str] = Depends(posted_form),
    actor: Actor = Depends(console_user(*STAFF)),
    session: Session = Depends(get_session),
):
    """Record delivery (date, duration) and the register in one transaction: all of it, or nothing."""
    if not csrf_ok(request, values.pop("csrf", "")):
        return expired(request)
    row = delivery.get_session_row(session, session_id, actor)
    g = session.get(PeerGroup, row.group_id)
    member_ids = [m.participant_id for m in delivery.group_read(session, g).members] if g is not None else []
    entries = _register(values, member_ids)
    ids = [e["participant_id"] for e in entries]  # row i of the register's errors is ids[i]
    errors: dict[str, str] = {}
    if not values.get("delivered_on"):
        errors["delivered_on"] = "give the date the session took place"
    if not entries:
        errors["register"] = "mark at least one member (attended, late, left early, excused or absent)"
    try:
        if errors:
            raise _FormProblem()
        patch = SessionPatch.model_validate(
            {"delivered_on": values["delivered_on"], "duration_minutes": values.get("duration_minutes") or None}
        )
        register = AttendanceIn.model_validate({"records": entries})
        if row.delivered_on != patch.delivered_on or row.duration_minutes != patch.duration_minutes:
            delivery.update_session(session, row, patch, actor)
        delivery.record_attendance(session, row, register, actor)
    except _FormProblem:
        session.rollback()
        return _session_page(request, session, actor, session_id, values=values, errors=errors, status_code=422)
    except ValidationError as exc:
        session.rollback()
        errors = {_row_field(list(e["loc"]), ids): str(e["msg"]) for e in exc.errors()}
        return _session_page(request, session, actor, session_id, values=values, errors=errors, status_code=422)
    except ApiError as exc:
        session.rollback()
        errors = {_row_field(list(e.get("loc", ())), ids): str(e.get("msg", "not valid")) for e in exc.errors}
        return _session_page(
            request, session, actor, session_id, values=values, errors=errors, status_code=exc.status_code
        )
    session.commit()
    return redirect(request, f"/console/sessions/{session_id}?recorded=1")


@router.post("/console/sessions/{session_id}/cancel", response_class=HTMLResponse)
def cancel_session(
    request: Request,
    session_id: int,
    values: dict[str, str] = Depends(posted_form),
    actor: Actor = Depends(console_user(*STAFF)),
    session: Session = Depends(get_session),
):
    """Cancel a planned session with its reason (a delivered one, or one with a register, cannot be)."""
    if not csrf_ok(request, values.pop("csrf", "")):
        return expired(request)
    row = delivery.get_session_row(session, session_id, actor)
    if not values.get("cancel_reason", "").strip():
        errors = {"cancel_reason": "give the reason the session is cancelled"}
        return _session_page(request, session, actor, session_id, values=values, errors=errors, status_code=422)
    try:
        delivery.update_session(
            session, row, SessionPatch.model_validate({"cancel_reason": values["cancel_reason"].strip()}), actor
        )
    except ValidationError as exc:
        session.rollback()
        errors = validation_errors(exc) or {"cancel_reason": "give the reason"}
        return _session_page(request, session, actor, session_id, values=values, errors=errors, status_code=422)
    except ApiError as exc:
        session.rollback()
        errors = errors_by_field(exc.errors)
        return _session_page(
            request, session, actor, session_id, values=values, errors=errors, status_code=exc.status_code
        )
    session.commit()
    return redirect(request, f"/console/sessions/{session_id}?cancelled=1")


class _FormProblem(Exception):
    """The form is incomplete: shown again with the problems, nothing saved."""


def _row_field(loc: list, ids: list[int]) -> str:
    """``records.2.minutes`` -> ``minutes_<participant id>``: a register problem next to its row."""
    parts = [x for x in loc if x not in ("body", "path")]
    if len(parts) >= 2 and parts[0] == "records" and isinstance(parts[1], int) and parts[1] < len(ids):
        return f"{parts[2] if len(parts) > 2 else 'status'}_{ids[parts[1]]}"
    if parts and parts[0] == "session_id":
        return "form"
    return ".".join(str(p) for p in parts if not isinstance(p, int)) or "form"
