"""The staff side of the outbox: emails to study staff (safety alerts, escalations, serious events).

Other domains enqueue with :func:`enqueue` in their own transaction (the message goes only if that
transaction commits) and cancel what is no longer needed with :func:`cancel`. The dispatcher
(:class:`api.reminders.dispatcher.Dispatcher`) sends these rows before participant reminders, with
the same SMTP channel, lease, Message-ID and retry policy, and never holds them for a study's
reminder pause or quiet hours: a safety message is not a reminder.

Examples
--------
>>> ids = enqueue(session, study_id=1, site_id=2, user_ids=[5, 9], kind="alert_raised",
...               topic="alert:17:raised", ref=("safety_alert", 17), subject="Peerlens: safety alert #17",
...               body="...", now=now)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import bindparam, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from api.audit.service import record
from api.auth.models import User
from api.db import UTCDateTime
from api.reminders.channels import Outgoing
from api.reminders.models import StaffNotification

log = logging.getLogger("peerlens.reminders")


def enqueue(
    session: Session,
    *,
    study_id: int,
    site_id: int | None,
    user_ids: Iterable[int],
    kind: str,
    topic: str,
    ref: tuple[str, int],
    subject: str,
    body: str,
    now: datetime,
) -> list[int]:
    """Add one message per recipient; a (topic, recipient) already in the outbox is left alone.

    Returns the ids of the rows written now (rows that existed are not returned).
    """
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    ids = []
    for uid in dict.fromkeys(user_ids):  # ordered, without repeats
        stmt = (
            module.insert(StaffNotification)
            .values(
                study_id=study_id,
                site_id=site_id,
                user_id=uid,
                kind=kind,
                topic=topic,
                ref_entity=ref[0],
                ref_id=ref[1],
                subject=subject,
                body=body,
                due_at=now,
                status="pending",
                attempts=0,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing()
            .returning(StaffNotification.id)
        )
        new = session.execute(stmt).scalar_one_or_none()
        if new is not None:
            ids.append(new)
    return ids


def cancel(session: Session, ref: tuple[str, int], reason: str, now: datetime, *, kinds: Iterable[str] = ()) -> int:
    """Cancel the messages about ``ref`` that have not gone yet (optionally of some kinds only)."""
    stmt = (
        update(StaffNotification)
        .where(
            StaffNotification.ref_entity == ref[0],
            StaffNotification.ref_id == ref[1],
            StaffNotification.status == "pending",
        )
        .values(status="cancelled", cancel_reason=reason[:40], updated_at=now, retry_at=None)
    )
    kinds = list(kinds)
    if kinds:
        stmt = stmt.where(StaffNotification.kind.in_(kinds))
    # On the session's connection: a plain UPDATE whose row count says how many were cancelled.
    return session.connection().execute(stmt).rowcount or 0


def claim(dispatcher, session: Session) -> list[int]:
    """Mark up to ``dispatcher.batch`` due staff messages ``sending`` for this worker."""
    now = dispatcher.clock.now()
    lock = "" if dispatcher.sqlite else "FOR UPDATE SKIP LOCKED"
    only = "AND n.study_id IN :studies" if dispatcher.study_ids else ""
    stmt = text(f"""
UPDATE staff_notification SET status = 'sending', claimed_at = :now, claimed_by = :worker,
       attempts = attempts + 1, updated_at = :now,
       message_id = COALESCE(message_id, '<staff.' || CAST(id AS VARCHAR(20)) || '.' || :tag || '@' || :domain || '>')
WHERE id IN (
  SELECT n.id FROM staff_notification n
  WHERE ((n.status = 'pending' AND n.due_at <= :now AND (n.retry_at IS NULL OR n.retry_at <= :now))
         OR (n.status = 'sending' AND n.claimed_at <= :cutoff)) {only}
  ORDER BY n.due_at, n.id
  LIMIT :n {lock})
RETURNING id""").bindparams(bindparam("now", type_=UTCDateTime()), bindparam("cutoff", type_=UTCDateTime()))
    params = {
        "now": now,
        "cutoff": now - dispatcher.lease,
        "worker": dispatcher.worker_id,
        "tag": dispatcher.tag,
        "domain": dispatcher.domain,
        "n": dispatcher.batch,
    }
    if dispatcher.study_ids:
        stmt = stmt.bindparams(bindparam("studies", expanding=True))
        params["studies"] = dispatcher.study_ids
    return [r.id for r in session.connection().execute(stmt, params)]


def load(dispatcher, session: Session, ids: list[int]) -> list[Outgoing]:
    """The messages of claimed rows still ours; a recipient gone inactive or without an address, or a
    row reclaimed past its last attempt, fails here (and is logged: these are safety messages)."""
    rows = session.exec(
        select(StaffNotification, User)
        .join(User, User.id == StaffNotification.user_id)
        .where(
            StaffNotification.id.in_(ids),
            StaffNotification.status == "sending",
            StaffNotification.claimed_by == dispatcher.worker_id,
        )
        .order_by(StaffNotification.due_at, StaffNotification.id)
    ).all()
    out = []
    for note, user in rows:
        problem = None
        if note.attempts > dispatcher.max_attempts:
            problem = "lease expired after the last attempt"
        elif not user.active or not user.email:
            problem = "recipient inactive or without an address"
        if problem:
            finish_failure(dispatcher, session, note, problem, permanent=True)
            continue
        # Links are completed at send time, so a message always points at the current address.
        body = note.body.replace("{base_url}", dispatcher.settings.base_url.rstrip("/"))
        message_id = note.message_id or ""  # set by the claim
        out.append(Outgoing(note.id, message_id, "email", user.email, note.subject, body, None, staff=True))
    return out


def claim_batch(dispatcher) -> list[Outgoing]:
    with dispatcher.session() as session:
        ids = claim(dispatcher, session)
        out = load(dispatcher, session, ids) if ids else []
        session.commit()
        return out


def record_result(dispatcher, result, stats) -> None:
    """Record one send outcome: ``sent`` with an audit event, or a retry, or ``failed``."""
    now = dispatcher.clock.now()
    with dispatcher.session() as session:
        note = session.get(StaffNotification, result.out.reminder_id)
        if note is None or note.status != "sending" or note.claimed_by != dispatcher.worker_id:
            session.commit()
            return
        if result.error is None:
            note.status, note.sent_at, note.updated_at = "sent", now, now
            note.last_error, note.retry_at, note.claimed_by = None, None, None
            session.add(note)
            record(
                session,
                dispatcher.actor,
                "send",
                "staff_notification",
                note.id,
                study_id=note.study_id,
                site_id=note.site_id,
                after={
                    "status": "sent",
                    "kind": note.kind,
                    "ref": f"{note.ref_entity}:{note.ref_id}",
                    "recipient_user_id": note.user_id,
                    "attempt": note.attempts,
                    "message_id": note.message_id,
                },
            )
            stats.staff_sent += 1
        else:
            failed = finish_failure(dispatcher, session, note, result.error, permanent=result.permanent)
            stats.staff_failed += failed
            stats.staff_retried += not failed
        session.commit()


def finish_failure(dispatcher, session: Session, note: StaffNotification, error: str, *, permanent: bool) -> bool:
    """Schedule a retry with backoff, or mark failed (returns True when failed)."""
    from api.reminders.timing import backoff_delay

    now = dispatcher.clock.now()
    failed = permanent or note.attempts >= dispatcher.max_attempts
    note.last_error = error[:500]
    note.claimed_by = None
    note.updated_at = now
    if failed:
        note.status, note.retry_at = "failed", None
        # A safety message that cannot go must not fail quietly.
        log.error(
            "staff notification %s (%s about %s %s) failed: %s",
            note.id,
            note.kind,
            note.ref_entity,
            note.ref_id,
            note.last_error,
        )
    else:
        note.status = "pending"
        note.retry_at = now + backoff_delay(note.attempts, base_seconds=dispatcher.settings.reminder_backoff_seconds)
    session.add(note)
    record(
        session,
        dispatcher.actor,
        "fail" if failed else "send_failed",
        "staff_notification",
        note.id,
        study_id=note.study_id,
        site_id=note.site_id,
        after={
            "status": note.status,
            "kind": note.kind,
            "attempt": note.attempts,
            "error": note.last_error,
            "retry_at": note.retry_at.isoformat() if note.retry_at else None,
        },
    )
    return failed


def run(dispatcher, stats, *, max_batches: int | None = None) -> None:
    """Send every due staff message (batch after batch), recording each outcome as it happens."""
    n = 0
    while max_batches is None or n < max_batches:
        batch = claim_batch(dispatcher)
        if not batch:
            return
        n += 1
        stats.staff_claimed += len(batch)
        for out in batch:
            record_result(dispatcher, dispatcher.send(out), stats)
