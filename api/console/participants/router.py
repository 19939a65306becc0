"""/console participant pages: enrolment, the participant page, staff-entered instruments, personal
links and status changes (withdrawal).

Each form posts to a route that checks its CSRF token, then calls the service the REST route
calls (``enrol``, ``submit_response``, ``issue_link``, ``revoke_link``, ``change_status``) with
the signed-in user as the actor. A rule the service refuses comes back as the form with the
message next to the field it names.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from sqlmodel import Session

import instruments
from api.auth.policy import STAFF
from api.auth.service import Actor
from api.console.dependencies import console_user, csrf_ok, page, redirect
from api.console.forms import errors_by_field, expired, validation_errors
from api.console.service import as_of, visible_sites
from api.db import end_read, get_session
from api.errors import ApiError
from api.links.service import issue_link, link_status, revoke_link
from api.participants import corrections
from api.participants import service as participants
from api.participants.models import WITHDRAWAL_KINDS
from api.participants.schemas import ParticipantCreate, ParticipantPatch, ReasonIn, WithdrawalIn
from api.responses import reading
from api.responses import service as responses
from api.studies.service import get_wave, require_study
from api.web.forms import field_name, parse_answers

router = APIRouter(tags=["console"], include_in_schema=False)
WITHDRAWALS = {
    "intervention": "Stopped the intervention (follow-up continues)",
    "follow_up": "No further data collection (data so far are used)",
    "consent": "Consent withdrawn for use of the data collected",
}
STATUSES = {
    "lost_to_follow_up": "Lost to follow-up (cannot be reached)",
    "completed": "Completed the study",
    "active": "Active (reinstate)",
}


# --- enrolment ------------------------------------------------------------------------------------


def _enrol_page(request, session, study, actor, values, errors, status_code=200) -> HTMLResponse:
    sites = visible_sites(session, study, actor)
    end_read(session)
    return page(
        request,
        "enrol.html",
        {
            "title": f"Enrol · {study.title}",
            "study": study,
            "sites": sites,
            "v": values,
            "errors": errors,
            "today": date.today().isoformat(),
        },
        status_code=status_code,
    )


@router.get("/console/studies/{study_id}/enrol", response_class=HTMLResponse)
def enrol_form(
    request: Request,
    study_id: int,
    actor: Actor = Depends(console_user(*STAFF)),
    session: Session = Depends(get_session),
):
    study = require_study(session, study_id, actor)
    return _enrol_page(request, session, study, actor, {}, {})


@router.post("/console/studies/{study_id}/enrol", response_class=HTMLResponse)
def enrol(
    request: Request,
    study_id: int,
    csrf: str = Form("", max_length=200),
    site: str = Form("", max_length=40),
    study_code: str = Form("", max_length=40),
    enrolled_on: str = Form("", max_length=20),
    consent_date: str = Form("", max_length=20),
    consent_version: str = Form("", max_length=40),
    name: str = Form("", max_length=200),
    email: str = Form("", max_length=320),
    phone: str = Form("", max_length=40),
    date_of_birth: str = Form("", max_length=20),
    preferred_channel: str = Form("none", max_length=10),
    actor: Actor = Depends(console_user(*STAFF)),
    session: Session = Depends(get_session),
):
    """Enrol and randomise (the service draws the arm from the study's allocation sequence)."""
    if not csrf_ok(request, csrf):
        return expired(request)
    study = require_study(session, study_id, actor)
    values = {k: v for k, v in locals().items() if isinstance(v, str) and k != "csrf"}
    contact = {k: (values[k] or None) for k in ("name", "email", "phone", "date_of_birth")}
    body: dict[str, Any] = {
        "site": site,
        "enrolled_on": enrolled_on or None,
        "consent": {"date": consent_date or None, "version": consent_version},
        "study_code": study_code or None,
    }
    if any(contact.values()) or preferred_channel != "none":
        body["contact"] = {**{k: v for k, v in contact.items() if v}, "preferred_channel": preferred_channel}
    try:
        data = ParticipantCreate.model_validate(body)
        p = participants.enrol(
            session,
            study=study,
            site_code=data.site,
            enrolled_on=data.enrolled_on,
            consent_date=data.consent.date,
            consent_version=data.consent.version,
            actor=actor,
            arm_code=None,
            study_code=data.study_code,
            contact=data.contact,
        )
    except ValidationError as exc:
        session.rollback()
        return _enrol_page(request, session, study, actor, values, validation_errors(exc), 422)
    except ApiError as exc:
        session.rollback()
        return _enrol_page(request, session, study, actor, values, errors_by_field(exc.errors), exc.status_code)
    session.commit()
    return redirect(request, f"/console/participants/{p.id}?enrolled=1")


# --- the participant page -------------------------------------------------------------------------


def _participant_page(
    request, session, actor, participant_id, *, notice=None, issued=None, errors=None, status_code=200
) -> HTMLResponse:
    p = participants.get_participant(session, participant_id, actor)
    study = require_study(session, p.study_id, actor)
    read = participants.to_read(session, [p], actor)[0]
    timeline = participants.schedule(session, p)
    rows = reading.to_read(session, reading.list_responses(session, p), actor=actor)
    links = {s.wave: s for s in link_status(session, p, request.app.state.settings)}
    end_read(session)
    return page(
        request,
        "participant.html",
        {
            "title": f"Participant {p.study_code}",
            "study": study,
            "p": read,
            "timeline": timeline,
            "responses": rows,
            "links": links,
            "statuses": STATUSES,
            "withdrawal_kinds": WITHDRAWALS,
            "notice": notice,
            "issued": issued,
            "errors": errors or {},
            "as_of": lambda m: as_of(m, study),
            "labels": {c: instruments.get(c).name for w in timeline for c in (i.instrument for i in w.instruments)},
            "today": date.today().isoformat(),
        },
        status_code=status_code,
    )


@router.get("/console/participants/{participant_id}", response_class=HTMLResponse)
def participant_page(
    request: Request,
    participant_id: int,
    enrolled: int = Query(0, ge=0, le=1),
    saved: str | None = Query(None, max_length=40),
    actor: Actor = Depends(console_user(*STAFF)),
    session: Session = Depends(get_session),
):
    """Timeline of waves with windows and state, responses with scores, links, contact and status."""
    notice = "Enrolled and randomised." if enrolled else (f"Saved {saved}." if saved else None)
    return _participant_page(request, session, actor, participant_id, notice=notice)


@router.post("/console/participants/{participant_id}/links", response_class=HTMLResponse)
def send_link(
    request: Request,
    participant_id: int,
    csrf: str = Form("", max_length=200),
    wave: str = Form("", max_length=40),
    actor: Actor = Depends(console_user(*STAFF)),
    session: Session = Depends(get_session),
):
    """Issue (or re-issue, revoking the previous one) the personal link of a wave and show it once."""
    if not csrf_ok(request, csrf):
        return expired(request)
    p = participants.get_participant(session, participant_id, actor)
    try:
        w = get_wave(session, p.study_id, wave)
        _, url = issue_link(session, p, w, actor, request.app.state.settings)
    except ApiError as exc:
        session.rollback()
        return _participant_page(
            request, session, actor, participant_id, errors={"link": exc.errors[0]["msg"]}, status_code=exc.status_code
        )
    session.commit()
    return _participant_page(
        request,
        session,
        actor,
        participant_id,
        issued={"wave": wave, "url": url},
        notice=f"New link for {wave}: the previous one no longer works.",
    )


@router.post("/console/participants/{participant_id}/links/revoke", response_class=HTMLResponse)
def revoke(
    request: Request,
    participant_id: int,
    csrf: str = Form("", max_length=200),
    wave: str = Form("", max_length=40),
    actor: Actor = Depends(console_user(*STAFF)),
    session: Session = Depends(get_session),
):
    if not csrf_ok(request, csrf):
        return expired(request)
    p = participants.get_participant(session, participant_id, actor)
    try:
        revoke_link(session, p, get_wave(session, p.study_id, wave), actor)
    except ApiError as exc:
        session.rollback()
        return _participant_page(
            request, session, actor, participant_id, errors={"link": exc.errors[0]["msg"]}, status_code=exc.status_code
        )
    session.commit()
    return redirect(request, f"/console/participants/{participant_id}?saved=link-revoked")


@router.post("/console/participants/{participant_id}/status", response_class=HTMLResponse)
def change_status(
    request: Request,
    participant_id: int,
    csrf: str = Form("", max_length=200),
    status: str = Form("", max_length=30),
    status_date: str = Form("", max_length=20),
    reason: str = Form("", max_length=2000),
    actor: Actor = Depends(console_user(*STAFF)),
    session: Session = Depends(get_session),
):
    """Withdrawal, loss to follow-up, completion or reinstatement, with its date and reason (audited)."""
    if not csrf_ok(request, csrf):
        return expired(request)
    p = participants.get_participant(session, participant_id, actor)
    try:
        body = ParticipantPatch.model_validate(
            {"status": status or None, "status_date": status_date or None, "reason": reason or None}
        )
        if body.status is None:
            raise ApiError(["body", "status"], "choose a status", "missing", status_code=422)
        if body.status != "active" and not body.reason:
            raise ApiError(
                ["body", "reason"], "give the reason (it goes to the audit trail)", "missing", status_code=422
            )
        participants.change_status(
            session, p, status=body.status, status_date=body.status_date, reason=body.reason, actor=actor
        )
    except ValidationError as exc:
        session.rollback()
        return _participant_page(
            request, session, actor, participant_id, errors=validation_errors(exc), status_code=422
        )
    except ApiError as exc:
        session.rollback()
        return _participant_page(
            request, session, actor, participant_id, errors=errors_by_field(exc.errors), status_code=exc.status_code
        )
    session.commit()
    return redirect(request, f"/console/participants/{participant_id}?saved=status")


@router.post("/console/participants/{participant_id}/withdrawals", response_class=HTMLResponse)
def withdraw(
    request: Request,
    participant_id: int,
    csrf: str = Form("", max_length=200),
    kind: str = Form("", max_length=20),
    date_: str = Form("", alias="date", max_length=20),
    reason: str = Form("", max_length=2000),
    actor: Actor = Depends(console_user(*STAFF)),
    session: Session = Depends(get_session),
):
    """A withdrawal of one kind with its date and reason, as ``POST /participants/{id}/withdrawals``."""
    if not csrf_ok(request, csrf):
        return expired(request)
    p = participants.get_participant(session, participant_id, actor)
    try:
        body = WithdrawalIn.model_validate({"kind": kind or None, "date": date_ or None, "reason": reason})
        corrections.withdraw(session, p, body.kind, body.date, body.reason, actor)
    except ValidationError as exc:
        session.rollback()
        return _participant_page(
            request, session, actor, participant_id, errors=validation_errors(exc), status_code=422
        )
    except ApiError as exc:
        session.rollback()
        return _participant_page(
            request, session, actor, participant_id, errors=errors_by_field(exc.errors), status_code=exc.status_code
        )
    session.commit()
    return redirect(request, f"/console/participants/{participant_id}?saved=withdrawal")


@router.post("/console/participants/{participant_id}/withdrawals/retract", response_class=HTMLResponse)
def retract_withdrawal(
    request: Request,
    participant_id: int,
    csrf: str = Form("", max_length=200),
    kind: str = Form("", max_length=20),
    reason: str = Form("", max_length=2000),
    actor: Actor = Depends(console_user(*STAFF)),
    session: Session = Depends(get_session),
):
    """Take back a withdrawal recorded in error, as ``POST /participants/{id}/withdrawals/{kind}/retract``."""
    if not csrf_ok(request, csrf):
        return expired(request)
    p = participants.get_participant(session, participant_id, actor)
    try:
        body = ReasonIn.model_validate({"reason": reason})
        if kind not in WITHDRAWAL_KINDS:
            raise ApiError(["body", "kind"], "choose the withdrawal to take back", "invalid_kind", status_code=422)
        corrections.retract_withdrawal(session, p, kind, body.reason, actor)
    except ValidationError as exc:
        session.rollback()
        errors = {f"retract-{kind}" if k == "reason" else k: m for k, m in validation_errors(exc).items()}
        return _participant_page(request, session, actor, participant_id, errors=errors, status_code=422)
    except ApiError as exc:
        session.rollback()
        return _participant_page(
            request, session, actor, participant_id, errors=errors_by_field(exc.errors), status_code=exc.status_code
        )
    session.commit()
    return redirect(request, f"/console/participants/{participant_id}?saved=retraction")


# --- staff-entered instruments (paper, interview) and amendments -----------------------------------


def _entry_page(request, session, actor, participant_id, wave, code, answers=None, errors=None, status_code=200):
    p = participants.get_participant(session, participant_id, actor)
    w = get_wave(session, p.study_id, wave, loc=("query", "wave"))
    if code not in w.instruments:
        raise ApiError(
            ["query", "instrument"],
            f"{code} is not an instrument of wave {wave}",
            "unknown_instrument",
            status_code=422,
        )
    existing = reading.list_responses(session, p, wave=wave, instrument=code)
    current = existing[0].answers if existing and answers is None else (answers or {})
    inst = instruments.get(code)
    items = [
        {
            "code": it.code,
            "field": field_name(it),
            "number": n,
            "text": it.text or f"Item {n} ({inst.name}: wording licensed, see the paper form)",
            "kind": it.kind,
            "options": [{"value": str(o.code), "label": o.label} for o in it.options],
            "value": "" if current.get(it.code) is None else str(current.get(it.code)),
        }
        for n, it in enumerate(inst.items, start=1)
    ]
    end_read(session)
    return page(
        request,
        "enter.html",
        {
            "title": f"Enter {inst.name}",
            "participant_id": participant_id,
            "study_code": p.study_code,
            "wave": wave,
            "instrument": inst,
            "items": items,
            "amend": bool(existing),
            "errors": errors or {},
        },
        status_code=status_code,
    )


@router.get("/console/participants/{participant_id}/enter", response_class=HTMLResponse)
def enter_form(
    request: Request,
    participant_id: int,
    wave: str = Query(..., max_length=40),
    instrument: str = Query(..., max_length=40),
    actor: Actor = Depends(console_user(*STAFF)),
    session: Session = Depends(get_session),
):
    """An instrument entered by staff (a paper PAM-13, an interview); an existing response is amended."""
    return _entry_page(request, session, actor, participant_id, wave, instrument)


@router.post("/console/participants/{participant_id}/enter", response_class=HTMLResponse)
async def enter(request: Request, participant_id: int, actor: Actor = Depends(console_user(*STAFF))):
    form = await request.form()
    data: dict[str, Any] = {}
    for key in form.keys():
        values = [v for v in form.getlist(key) if isinstance(v, str)]
        data[key] = values if len(values) > 1 else (values[0] if values else None)
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_enter, request, participant_id, actor, data)


def _enter(request: Request, participant_id: int, actor: Actor, data: dict[str, Any]):
    if not csrf_ok(request, data.get("csrf")):
        return expired(request)
    wave, code = str(data.get("wave") or ""), str(data.get("instrument") or "")
    reason = str(data.get("reason") or "").strip()
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        p = participants.get_participant(session, participant_id, actor)
        inst = instruments.get(code) if code in instruments.codes() else None
        if inst is None:
            raise ApiError(["body", "instrument"], "unknown instrument", "unknown_instrument", status_code=422)
        multi = {field_name(it) for it in inst.items if it.kind == "multi"}
        fields = {k: (v if k in multi or not isinstance(v, list) else v[0]) for k, v in data.items()}
        answers, errors = parse_answers(inst, fields)
        amend = bool(reading.list_responses(session, p, wave=wave, instrument=code))
        if amend and not reason:
            errors["reason"] = "Give the reason for the change (it goes to the audit trail)."
        if errors:
            return _entry_page(request, session, actor, participant_id, wave, code, answers, errors, 422)
        try:
            responses.submit_response(
                session,
                participant=p,
                wave_code=wave,
                instrument_code=code,
                answers=answers,
                mode="staff",
                actor=actor,
                amend=amend,
                reason=reason or None,
            )
        except ApiError as exc:
            session.rollback()
            return _entry_page(
                request,
                session,
                actor,
                participant_id,
                wave,
                code,
                answers,
                errors_by_field(exc.errors),
                exc.status_code,
            )
        session.commit()
    return redirect(request, f"/console/participants/{participant_id}?saved={code}")
