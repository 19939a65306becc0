"""Safety settings and alerts: rules applied to every submission, the alert life cycle and reads.

:func:`raise_alerts` is called by :func:`api.responses.service.submit_response` for every entry
path (REST, participant form, REDCap import, the demo loader), inside the transaction that stores
the response: the alert, its audit event and its notifications commit with the answers or not at
all. A replayed submission returns before scoring and raises nothing; one alert per response and
rule makes an amendment meeting the same rule raise nothing new either.

Services flush; routers and commands commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

import instruments
from api.audit.service import record
from api.auth.models import User, UserSite
from api.auth.policy import ensure_can_write, ensure_site_access
from api.auth.service import Actor
from api.db import utcnow
from api.errors import Conflict, NotFound, Unprocessable
from api.participants.models import Participant
from api.reminders import staff
from api.reminders.models import StaffNotification
from api.safety import notify
from api.safety.configuration import get_settings, study_rules
from api.safety.models import SafetyAlert, SafetySettings
from api.safety.schemas import (
    AlertRead,
    NotificationCounts,
    UserRef,
)
from api.studies.models import Site, Study, Wave

log = logging.getLogger("peerlens.safety")


# ---- raising alerts ------------------------------------------------------------------------------


def raise_alerts(
    session: Session,
    *,
    participant: Participant,
    response_id: int,
    wave_id: int,
    instrument,
    answers,
    scores,
    completed_at: datetime,
    mode: str,
    actor: Actor,
    now: datetime | None = None,
) -> list[SafetyAlert]:
    """Evaluate the alert rules on one stored response and raise an alert for each rule met.

    Called inside the submission's transaction. Rules already raised for this response (a retry
    that got this far, an amendment meeting the same rule) raise nothing. Each new alert is
    audited (``create safety_alert``) and its notifications are put in the staff outbox.
    """
    cfg = get_settings(session, participant.study_id)
    hits = instruments.evaluate_alerts(instrument, answers, scores, extra=study_rules(cfg))
    if not hits:
        return []
    now = now or utcnow()
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    recipients, routing = notify.first_recipients(session, cfg, participant.site_id)
    study = session.get(Study, participant.study_id)
    if study is None:  # the participant's study, by foreign key
        raise LookupError(f"study {participant.study_id} is missing")
    deadline = now + timedelta(hours=cfg.escalate_after_hours if cfg else 24.0)
    raised = []
    for hit in hits:
        values = dict(
            study_id=participant.study_id,
            site_id=participant.site_id,
            participant_id=participant.id,
            response_id=response_id,
            wave_id=wave_id,
            instrument=instrument.code,
            rule_code=hit.rule.code,
            rule_label=hit.rule.label[:300],
            rule_kind=hit.rule.kind,
            rule_op=hit.rule.op,
            rule_value=float(hit.rule.value),
            observed=hit.observed,
            response_mode=mode,
            answered_at=completed_at,
            status="open",
            routing=routing,
            raised_at=now,
            escalation_level=0,
            updated_at=now,
        )
        # ON CONFLICT DO NOTHING: the rule was already raised for this response.
        new_id = session.execute(
            module.insert(SafetyAlert).values(**values).on_conflict_do_nothing().returning(SafetyAlert.id)
        ).scalar_one_or_none()
        if new_id is None:
            continue
        alert = SafetyAlert(id=new_id, **values)  # what was just written, without reading it back
        raised.append(alert)
        record(
            session,
            actor,
            "create",
            "safety_alert",
            alert.id,
            study_id=alert.study_id,
            site_id=alert.site_id,
            after={
                "participant_id": participant.id,
                "response_id": response_id,
                "rule": hit.rule.code,
                "observed": hit.observed,
                "mode": mode,
                "routing": routing,
                "notified_user_ids": recipients,
            },
        )
        if recipients:
            notify.alert_raised(session, alert, study, recipients, deadline)
        if routing != "site_contacts":
            log.warning(
                "safety alert %s: site %s has no safety contact; told %s instead",
                alert.id,
                participant.site_id,
                {"pi": "the principal investigator", "admins": "every administrator"}.get(routing, "nobody"),
            )
        if not recipients:
            log.error("safety alert %s: there is nobody to tell (no contact, PI or active admin)", alert.id)
    return raised


# ---- the alert life cycle ---------------------------------------------------------------------


def get_alert(session: Session, alert_id: int, actor: Actor) -> SafetyAlert:
    alert = session.get(SafetyAlert, alert_id)
    if alert is None:
        raise NotFound(["path", "alert_id"], "alert not found", "not_found")
    ensure_site_access(actor, alert.site_id, loc=("path", "alert_id"), what="alert")
    return alert


def _locked(session: Session, alert: SafetyAlert) -> SafetyAlert:
    """The alert read again inside this write transaction, locked on PostgreSQL (SQLite's write
    transaction already holds the database lock), so two people acting at once cannot both win."""
    locked = session.get(SafetyAlert, alert.id, with_for_update=True, populate_existing=True)
    if locked is None:
        raise NotFound(["path", "alert_id"], "alert not found", "not_found")
    return locked


def _stop_messages(session: Session, alert: SafetyAlert, now: datetime) -> int:
    # Nobody needs to be chased about an alert someone has taken on.
    return staff.cancel(session, ("safety_alert", alert.id), "acknowledged", now)


def _state(alert: SafetyAlert) -> dict:
    return {
        "status": alert.status,
        "owner_id": alert.owner_id,
        "action": alert.action,
        "resolution_note": alert.resolution_note,
        "escalation_level": alert.escalation_level,
    }


def acknowledge(session: Session, alert: SafetyAlert, actor: Actor, note: str | None = None) -> SafetyAlert:
    """Take on an open alert: the caller becomes its owner and pending messages about it stop."""
    ensure_can_write(actor)
    alert = _locked(session, alert)
    if alert.status != "open":
        raise Conflict(["path", "alert_id"], f"the alert is already {alert.status}", f"already_{alert.status}")
    before, now = _state(alert), utcnow()
    alert.status = "acknowledged"
    alert.acknowledged_at, alert.acknowledged_by = now, actor.user_id
    alert.owner_id = alert.owner_id or actor.user_id
    alert.updated_at = now
    session.add(alert)
    cancelled = _stop_messages(session, alert, now)
    record(
        session,
        actor,
        "acknowledge",
        "safety_alert",
        alert.id,
        study_id=alert.study_id,
        site_id=alert.site_id,
        before=before,
        after={**_state(alert), "messages_cancelled": cancelled},
        reason=note,
    )
    session.flush()
    return alert


def resolve(session: Session, alert: SafetyAlert, actor: Actor, action: str, note: str | None) -> SafetyAlert:
    """Close an alert with the action taken (``no_action`` needs the reason in ``note``)."""
    ensure_can_write(actor)
    alert = _locked(session, alert)
    if alert.status == "resolved":
        raise Conflict(["path", "alert_id"], "the alert is already resolved", "already_resolved")
    if action == "no_action" and not (note and note.strip()):
        raise Unprocessable(["body", "note"], "say why no action was taken", "reason_required")
    before, now = _state(alert), utcnow()
    if alert.acknowledged_at is None:
        alert.acknowledged_at, alert.acknowledged_by = now, actor.user_id
    alert.owner_id = alert.owner_id or actor.user_id
    alert.status, alert.action = "resolved", action
    alert.resolution_note = note.strip() if note else None
    alert.resolved_at, alert.resolved_by, alert.updated_at = now, actor.user_id, now
    session.add(alert)
    _stop_messages(session, alert, now)
    record(
        session,
        actor,
        "resolve",
        "safety_alert",
        alert.id,
        study_id=alert.study_id,
        site_id=alert.site_id,
        before=before,
        after=_state(alert),
    )
    session.flush()
    return alert


def assign(session: Session, alert: SafetyAlert, actor: Actor, owner_id: int) -> SafetyAlert:
    """Give an alert to another member of staff who may see its site."""
    ensure_can_write(actor)
    alert = _locked(session, alert)
    if alert.status == "resolved":
        raise Conflict(["path", "alert_id"], "the alert is already resolved", "already_resolved")
    user = session.get(User, owner_id)
    sees = (
        user is not None
        and user.active
        and (
            user.role == "admin"
            or (
                user.role == "coordinator"
                and session.exec(
                    select(UserSite).where(UserSite.user_id == user.id, UserSite.site_id == alert.site_id)
                ).first()
                is not None
            )
        )
    )
    if not sees:
        raise Unprocessable(
            ["body", "owner_id"],
            "the owner must be an active admin or a coordinator of the alert's site",
            "owner_not_allowed",
        )
    before = _state(alert)
    alert.owner_id, alert.updated_at = owner_id, utcnow()
    session.add(alert)
    record(
        session,
        actor,
        "assign",
        "safety_alert",
        alert.id,
        study_id=alert.study_id,
        site_id=alert.site_id,
        before=before,
        after=_state(alert),
    )
    session.flush()
    return alert


# ---- reading -------------------------------------------------------------------------------------


def list_alerts(
    session: Session,
    actor: Actor,
    *,
    study: Study | None = None,
    participant: Participant | None = None,
    status: str | None = None,
    site: str | None = None,
    limit: int = 100,
    after: int | None = None,
) -> list[SafetyAlert]:
    """Alerts the actor may see, newest first (``after``: the last id of the previous page)."""
    stmt = select(SafetyAlert)
    if study is not None:
        stmt = stmt.where(SafetyAlert.study_id == study.id)
    if participant is not None:
        stmt = stmt.where(SafetyAlert.participant_id == participant.id)
    if actor.role == "coordinator":
        stmt = stmt.where(SafetyAlert.site_id.in_(actor.site_ids or {-1}))
    if status == "unresolved":
        stmt = stmt.where(SafetyAlert.status.in_(("open", "acknowledged")))
    elif status is not None:
        stmt = stmt.where(SafetyAlert.status == status)
    if site is not None and study is not None:
        site_id = session.exec(select(Site.id).where(Site.study_id == study.id, Site.code == site)).first()
        if site_id is None:
            raise Unprocessable(["query", "site"], "no site with this code in the study", "unknown_site")
        stmt = stmt.where(SafetyAlert.site_id == site_id)
    if after is not None:
        stmt = stmt.where(SafetyAlert.id < after)
    return list(session.exec(stmt.order_by(SafetyAlert.id.desc()).limit(limit)).all())


def to_read(session: Session, alerts: Iterable[SafetyAlert], now: datetime | None = None) -> list[AlertRead]:
    alerts = list(alerts)
    if not alerts:
        return []
    now = now or utcnow()
    ids = [a.id for a in alerts]
    people = dict(
        session.exec(
            select(Participant.id, Participant.study_code).where(Participant.id.in_({a.participant_id for a in alerts}))
        ).all()
    )
    sites = dict(session.exec(select(Site.id, Site.code).where(Site.id.in_({a.site_id for a in alerts}))).all())
    waves = dict(session.exec(select(Wave.id, Wave.code).where(Wave.id.in_({a.wave_id for a in alerts}))).all())
    owners = {
        u.id: u for u in session.exec(select(User).where(User.id.in_({a.owner_id for a in alerts if a.owner_id})))
    }
    hours = {
        sid: h
        for sid, h in session.exec(
            select(SafetySettings.study_id, SafetySettings.escalate_after_hours).where(
                SafetySettings.study_id.in_({a.study_id for a in alerts})
            )
        ).all()
    }
    counts: dict[int, NotificationCounts] = {i: NotificationCounts() for i in ids}
    for ref_id, status, n in session.exec(
        select(StaffNotification.ref_id, StaffNotification.status, func.count())
        .where(StaffNotification.ref_entity == "safety_alert", StaffNotification.ref_id.in_(ids))
        .group_by(StaffNotification.ref_id, StaffNotification.status)
    ).all():
        key = "pending" if status == "sending" else status
        setattr(counts[ref_id], key, getattr(counts[ref_id], key) + n)
    out = []
    for a in alerts:
        deadline = a.raised_at + timedelta(hours=hours.get(a.study_id, 24.0))
        owner = owners.get(a.owner_id) if a.owner_id is not None else None
        out.append(
            AlertRead(
                id=a.id,
                study_id=a.study_id,
                participant_id=a.participant_id,
                study_code=people.get(a.participant_id, "?"),
                site=sites.get(a.site_id, "?"),
                wave=waves.get(a.wave_id, "?"),
                instrument=a.instrument,
                rule=a.rule_code,
                rule_label=a.rule_label,
                observed=a.observed,
                response_id=a.response_id,
                response_mode=a.response_mode,
                answered_at=a.answered_at,
                raised_at=a.raised_at,
                status=a.status,
                routing=a.routing,
                owner=UserRef(id=owner.id, email=owner.email) if owner else None,
                acknowledge_by=deadline,
                past_deadline=a.status == "open" and now >= deadline,
                acknowledged_at=a.acknowledged_at,
                acknowledged_by=a.acknowledged_by,
                resolved_at=a.resolved_at,
                resolved_by=a.resolved_by,
                action=a.action,
                resolution_note=a.resolution_note,
                escalation_level=a.escalation_level,
                escalated_at=a.escalated_at,
                notifications=counts[a.id],
            )
        )
    return out


def alerts_for_response(session: Session, response_id: int) -> list[SafetyAlert]:
    return list(session.exec(select(SafetyAlert).where(SafetyAlert.response_id == response_id)).all())
