"""Business rules of reminders: plans, pause/resume, the outbox as coordinators see it, opt-out.

Services flush and leave the commit to the caller (one request = one transaction with its audit
events). Planning and sending live in :mod:`api.reminders.planner` and
:mod:`api.reminders.dispatcher`.
"""

from __future__ import annotations

from sqlmodel import Session, select

from api.audit.service import record
from api.auth import policy
from api.auth.service import Actor
from api.db import utcnow
from api.errors import NotFound, Unprocessable
from api.netguard import blocked
from api.participants.models import Participant, ParticipantContact
from api.reminders import tokens
from api.reminders.models import Reminder, ReminderConfig, ReminderPlan
from api.reminders.planner import cancel_ineligible
from api.reminders.schemas import PlanRead, PlansIn, PlansRead, QuietHours, ReminderRead, Step
from api.reminders.timing import format_hhmm, parse_hhmm
from api.studies.models import Site, Study, Wave


def _config(session: Session, study: Study) -> ReminderConfig:
    cfg = session.get(ReminderConfig, study.id)
    return cfg if cfg is not None else ReminderConfig(study_id=study.id)


def read_plans(session: Session, study: Study) -> PlansRead:
    """The reminder configuration of a study (defaults when none was saved)."""
    cfg = _config(session, study)
    rows = session.exec(
        select(ReminderPlan, Wave.code)
        .join(Wave, Wave.id == ReminderPlan.wave_id)
        .where(ReminderPlan.study_id == study.id)
        .order_by(Wave.offset_days, Wave.id)
    ).all()
    quiet = None
    if cfg.quiet_start_minute is not None and cfg.quiet_end_minute is not None:
        quiet = QuietHours(start=format_hhmm(cfg.quiet_start_minute), end=format_hhmm(cfg.quiet_end_minute))
    return PlansRead(
        study_id=study.id,
        paused=cfg.paused,
        quiet_hours=quiet,
        sms_webhook_url=cfg.sms_webhook_url,
        links_service=True,
        plans=[
            PlanRead(
                wave=code,
                channel=p.channel,
                steps=[Step(**s) for s in p.steps],
                subject=p.subject,
                body=p.body,
                sms_body=p.sms_body,
                form_url=p.form_url,
                updated_at=p.updated_at,
            )
            for p, code in rows
        ],
    )


def _plan_snapshot(p: ReminderPlan) -> dict:
    return {
        "wave_id": p.wave_id,
        "channel": p.channel,
        "steps": p.steps,
        "subject": p.subject,
        "body": p.body,
        "sms_body": p.sms_body,
        "form_url": p.form_url,
    }


def replace_plans(
    session: Session, study: Study, body: PlansIn, actor: Actor, *, webhook_allowed_networks: str = ""
) -> PlansRead:
    """Replace a study's reminder configuration; pending reminders of removed plans or steps are
    cancelled in the same transaction (new and moved ones are planned by the next worker round).

    Raises
    ------
    Unprocessable
        An unknown wave code, an ``sms`` plan without ``sms_webhook_url``, a webhook on a non-public
        address (link-local, private, loopback) outside ``webhook_allowed_networks``.
    """
    policy.ensure_can_write(actor)
    waves = {w.code: w for w in session.exec(select(Wave).where(Wave.study_id == study.id)).all()}
    errors = []
    for i, plan in enumerate(body.plans):
        if plan.wave not in waves:
            errors.append(
                {
                    "loc": ["body", "plans", i, "wave"],
                    "msg": "no wave with this code in the study",
                    "type": "unknown_wave",
                }
            )
        if plan.channel == "sms" and not body.sms_webhook_url:
            errors.append(
                {
                    "loc": ["body", "sms_webhook_url"],
                    "msg": "an sms plan needs sms_webhook_url",
                    "type": "missing_webhook",
                }
            )
    if body.sms_webhook_url:
        reason = blocked(body.sms_webhook_url, webhook_allowed_networks, unresolvable_ok=True)
        if reason:
            errors.append(
                {
                    "loc": ["body", "sms_webhook_url"],
                    "msg": f"{reason}; webhooks go to public addresses unless PEERLENS_WEBHOOK_ALLOWED_NETWORKS "
                    "allows the network",
                    "type": "webhook_not_public",
                }
            )
    if errors:
        raise Unprocessable(errors=errors)

    cfg = _config(session, study)
    before_cfg = {
        "quiet_start_minute": cfg.quiet_start_minute,
        "quiet_end_minute": cfg.quiet_end_minute,
        "sms_webhook_url": cfg.sms_webhook_url,
    }
    cfg.quiet_start_minute = parse_hhmm(body.quiet_hours.start) if body.quiet_hours else None
    cfg.quiet_end_minute = parse_hhmm(body.quiet_hours.end) if body.quiet_hours else None
    cfg.sms_webhook_url = body.sms_webhook_url
    cfg.updated_at = utcnow()
    session.add(cfg)
    after_cfg = {
        "quiet_start_minute": cfg.quiet_start_minute,
        "quiet_end_minute": cfg.quiet_end_minute,
        "sms_webhook_url": cfg.sms_webhook_url,
    }
    if before_cfg != after_cfg:
        record(
            session, actor, "update", "reminder_config", study.id, study_id=study.id, before=before_cfg, after=after_cfg
        )

    existing = {p.wave_id: p for p in session.exec(select(ReminderPlan).where(ReminderPlan.study_id == study.id))}
    wanted = {}
    for plan in body.plans:
        wave = waves[plan.wave]
        values = {
            "channel": plan.channel,
            "steps": [s.model_dump() for s in plan.steps],
            "subject": plan.subject,
            "body": plan.body,
            "sms_body": plan.sms_body,
            "form_url": plan.form_url,
        }
        row = existing.get(wave.id)
        if row is None:
            row = ReminderPlan(study_id=study.id, wave_id=wave.id, **values)
            session.add(row)
            session.flush()
            record(session, actor, "create", "reminder_plan", row.id, study_id=study.id, after=_plan_snapshot(row))
        else:
            before = _plan_snapshot(row)
            for k, v in values.items():
                setattr(row, k, v)
            if _plan_snapshot(row) != before:
                row.updated_at = utcnow()
                session.add(row)
                record(
                    session,
                    actor,
                    "update",
                    "reminder_plan",
                    row.id,
                    study_id=study.id,
                    before=before,
                    after=_plan_snapshot(row),
                )
        wanted[wave.id] = row
    for wave_id, row in existing.items():
        if wave_id not in wanted:
            record(session, actor, "delete", "reminder_plan", row.id, study_id=study.id, before=_plan_snapshot(row))
            session.delete(row)
    session.flush()
    # Only rows whose plan or step is gone: time-based reasons are the planner's, on its clock.
    cancel_ineligible(
        session,
        utcnow(),
        scope=(
            "reminder.study_id = :sid AND reminder.status = 'pending' AND NOT EXISTS ("
            "SELECT 1 FROM reminder_plan k WHERE k.study_id = reminder.study_id AND k.wave_id = reminder.wave_id "
            "AND json_array_length(k.steps) > reminder.step)"
        ),
        params={"sid": study.id},
        actor=actor,
    )
    session.flush()
    return read_plans(session, study)


def set_paused(session: Session, study: Study, paused: bool, actor: Actor) -> ReminderConfig:
    """Pause or resume sending for a study (pending rows wait; nothing is cancelled)."""
    policy.ensure_can_write(actor)
    cfg = _config(session, study)
    if cfg.paused != paused:
        cfg.paused = paused
        cfg.updated_at = utcnow()
        session.add(cfg)
        record(
            session,
            actor,
            "pause" if paused else "resume",
            "reminder_config",
            study.id,
            study_id=study.id,
            before={"paused": not paused},
            after={"paused": paused},
        )
    else:
        session.add(cfg)
    session.flush()
    return cfg


def list_reminders(
    session: Session,
    actor: Actor,
    *,
    study: Study | None = None,
    participant: Participant | None = None,
    status: str | None = None,
    wave: str | None = None,
    site: str | None = None,
    limit: int = 100,
    after: int | None = None,
) -> list[ReminderRead]:
    """Outbox rows in id order (keyset pagination with ``after``); coordinators see their sites."""
    stmt = (
        select(Reminder, Participant.study_code, Site.code, Wave.code)
        .join(Participant, Participant.id == Reminder.participant_id)
        .join(Site, Site.id == Reminder.site_id)
        .join(Wave, Wave.id == Reminder.wave_id)
    )
    if study is not None:
        stmt = stmt.where(Reminder.study_id == study.id)
        if (
            wave is not None
            and session.exec(select(Wave.id).where(Wave.study_id == study.id, Wave.code == wave)).first() is None
        ):
            raise Unprocessable(["query", "wave"], "no wave with this code in the study", "unknown_wave")
        if (
            site is not None
            and session.exec(select(Site.id).where(Site.study_id == study.id, Site.code == site)).first() is None
        ):
            raise Unprocessable(["query", "site"], "no site with this code in the study", "unknown_site")
    if participant is not None:
        stmt = stmt.where(Reminder.participant_id == participant.id)
    if policy.site_scoped(actor):
        stmt = stmt.where(Reminder.site_id.in_(actor.site_ids or [-1]))
    if status is not None:
        stmt = stmt.where(Reminder.status == status)
    if wave is not None:
        stmt = stmt.where(Wave.code == wave)
    if site is not None:
        stmt = stmt.where(Site.code == site)
    if after is not None:
        stmt = stmt.where(Reminder.id > after)
    rows = session.exec(stmt.order_by(Reminder.id).limit(limit)).all()
    return [
        ReminderRead(
            id=r.id,
            study_id=r.study_id,
            participant_id=r.participant_id,
            study_code=code,
            site=site_code,
            wave=wave_code,
            step=r.step,
            channel=r.channel,
            due_at=r.due_at,
            window_closes_at=r.window_closes_at,
            status=r.status,
            attempts=r.attempts,
            retry_at=r.retry_at,
            last_error=r.last_error,
            cancel_reason=r.cancel_reason,
            message_id=r.message_id,
            sent_at=r.sent_at,
            updated_at=r.updated_at,
        )
        for r, code, site_code, wave_code in rows
    ]


def participant_for_token(session: Session, secret_key: str, token: str) -> Participant:
    """The participant an unsubscribe token names, else 404 (the same for forged and unknown)."""
    pid = tokens.verify(secret_key, token) if len(token) <= 64 else None
    participant = session.get(Participant, pid) if pid is not None else None
    if participant is None:
        raise NotFound(["path", "token"], "this link is not valid", "invalid_token")
    return participant


def unsubscribe(session: Session, participant: Participant, actor: Actor) -> int:
    """Set the participant's opt-out and cancel their pending reminders; returns how many.

    Idempotent: a second use changes nothing and writes no audit event.
    """
    contact = session.get(ParticipantContact, participant.id)
    if contact is None:
        contact = ParticipantContact(participant_id=participant.id)
    if not contact.opt_out:
        contact.opt_out = True
        contact.updated_at = utcnow()
        session.add(contact)
        record(
            session,
            actor,
            "update",
            "participant_contact",
            participant.id,
            study_id=participant.study_id,
            site_id=participant.site_id,
            after={"fields": ["opt_out"]},
            reason="unsubscribe link",
        )
    session.flush()
    rows = cancel_ineligible(
        session,
        utcnow(),
        scope="reminder.participant_id = :pid AND reminder.status = 'pending'",
        params={"pid": participant.id},
        actor=actor,
    )
    return len(rows)
