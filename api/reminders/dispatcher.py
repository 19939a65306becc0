"""The dispatcher: claim due reminders, send them outside any transaction, record the outcome.

A worker loops over three short steps:

1. **claim** (one transaction): mark up to ``batch`` due rows ``sending`` with this worker's id and
   the claim time. PostgreSQL picks them with ``SELECT … FOR UPDATE SKIP LOCKED``, so workers never
   wait for or take each other's rows; SQLite runs the same conditional ``UPDATE`` under its
   database lock (one worker is the supported setup there). Rows left ``sending`` longer than the
   lease by a crashed worker are claimed again. In the same transaction the rows are checked once
   more (completed, withdrawn, opted out, no address → ``cancelled``) and the messages rendered.
2. **send** each message (SMTP or SMS webhook), holding no transaction or lock.
3. **record** the outcomes in short transactions (a second thread does this while the next message
   goes out): ``sent`` (with an audit event), or a retry after exponential backoff, or ``failed``
   once the attempts are used up.

The ``Message-ID`` is derived from the row id when the row is first claimed and stored, so if a
worker dies between sending and recording, the second send is recognisably the same message.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, text
from sqlmodel import Session, select

from api.audit.service import record
from api.auth.service import Actor
from api.db import UTCDateTime
from api.links.service import live_links
from api.participants.models import Participant, ParticipantContact
from api.reminders import staff, templates, tokens
from api.reminders.channels import EmailChannel, Outgoing, SendError, SmsWebhookChannel, scrub
from api.reminders.clock import Clock, SystemClock
from api.reminders.models import Reminder, ReminderConfig, ReminderPlan
from api.reminders.planner import cancel_ineligible, plan_all
from api.reminders.timing import backoff_delay
from api.safety.escalation import sweep as safety_sweep
from api.studies.models import Study, Wave

log = logging.getLogger("peerlens.reminders")


def new_worker_id() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def message_domain(base_url: str) -> str:
    from urllib.parse import urlparse

    return (urlparse(base_url).hostname or "peerlens.local").lower()


def deployment_tag(secret_key: str) -> str:
    """A short tag in every Message-ID, so ids of two deployments never collide."""
    return hashlib.sha256(b"message-id:" + secret_key.encode()).hexdigest()[:10]


RECORD_QUEUE = 8  # sent-but-unrecorded messages a crash can leave behind, at most (plus one in flight)


@dataclass
class Result:
    out: Outgoing
    ref: str | None = None
    error: str | None = None
    permanent: bool = False


class _Recorder:
    """Background thread writing send outcomes in small groups (whatever has queued up)."""

    def __init__(self, dispatcher: Dispatcher, stats: DispatchStats):
        self.dispatcher, self.stats = dispatcher, stats
        self.queue: queue.Queue = queue.Queue(maxsize=RECORD_QUEUE)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="reminder-recorder", daemon=True)
        self.thread.start()

    def put(self, result: Result) -> None:
        if self.error is not None:
            raise RuntimeError("recording send outcomes failed") from self.error
        self.queue.put(result)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            group = [] if item is None else [item]
            stop = item is None
            while not stop:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                else:
                    group.append(nxt)
            if group and self.error is None:
                try:
                    self.dispatcher.record_results(group, self.stats)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the sending thread
                    self.error = exc
                    log.error("recording send outcomes failed (%s)", type(exc).__name__)
            if stop:
                return

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise RuntimeError("recording send outcomes failed") from self.error


@dataclass
class DispatchStats:
    claimed: int = 0
    sent: int = 0
    cancelled: int = 0
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    # staff notifications (safety alerts, escalations, serious events)
    staff_claimed: int = 0
    staff_sent: int = 0
    staff_retried: int = 0
    staff_failed: int = 0


class _Unsendable(Exception):
    """A claimed row whose message cannot be built; its text names the rule, never a value."""


class Dispatcher:
    """Claims and sends due reminders.

    Parameters
    ----------
    engine : Engine
    settings : api.config.Settings
        SMTP, base URL, secret key, lease and retry settings.
    clock : Clock, optional
        Source of "now" for due times, leases and backoff (tests pass a FixedClock).
    worker_id : str, optional
    email, sms : channel objects, optional
        Default: :class:`EmailChannel` from the settings and :class:`SmsWebhookChannel`.
    study_ids : list of int, optional
        Serve only these studies (default: all).

    Examples
    --------
    >>> d = Dispatcher(engine, settings, clock=SystemClock())  # doctest: +SKIP
    >>> d.run_once().sent  # doctest: +SKIP
    12
    """

    def __init__(
        self,
        engine,
        settings,
        *,
        clock: Clock | None = None,
        worker_id: str | None = None,
        email=None,
        sms=None,
        batch: int = 50,
        study_ids: list[int] | None = None,
    ):
        self.engine, self.settings = engine, settings
        self.clock = clock or SystemClock()
        self.worker_id = (worker_id or new_worker_id())[:64]
        self.email = email or EmailChannel.from_settings(settings)
        self.sms = sms or SmsWebhookChannel(allowed_networks=settings.webhook_allowed_networks)
        self.batch = batch
        self.study_ids = list(study_ids) if study_ids else None
        self.actor = Actor.system(request_id=self.worker_id)
        self.domain = message_domain(settings.base_url)
        self.tag = deployment_tag(settings.secret_key)
        self.lease = timedelta(seconds=settings.reminder_lease_seconds)
        self.max_attempts = settings.reminder_max_attempts
        self.sqlite = engine.dialect.name == "sqlite"

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # -- 1. claim ------------------------------------------------------------------------------
    def claim(self, session: Session) -> list[int]:
        """Mark up to ``batch`` due rows as ``sending`` for this worker; return their ids."""
        now = self.clock.now()
        lock = "" if self.sqlite else "FOR UPDATE SKIP LOCKED"
        only = "AND r.study_id IN :studies" if self.study_ids else ""
        stmt = text(f"""
UPDATE reminder SET status = 'sending', claimed_at = :now, claimed_by = :worker, attempts = attempts + 1,
       updated_at = :now,
       message_id = COALESCE(message_id,
                             '<reminder.' || CAST(id AS VARCHAR(20)) || '.' || :tag || '@' || :domain || '>')
WHERE id IN (
  SELECT r.id FROM reminder r
  WHERE ((r.status = 'pending' AND r.due_at <= :now AND (r.retry_at IS NULL OR r.retry_at <= :now))
         OR (r.status = 'sending' AND r.claimed_at <= :cutoff))
    AND NOT EXISTS (SELECT 1 FROM reminder_config rc WHERE rc.study_id = r.study_id AND rc.paused) {only}
  ORDER BY r.due_at, r.id
  LIMIT :n {lock})
RETURNING id""").bindparams(bindparam("now", type_=UTCDateTime()), bindparam("cutoff", type_=UTCDateTime()))
        params = {
            "now": now,
            "cutoff": now - self.lease,
            "worker": self.worker_id,
            "tag": self.tag,
            "domain": self.domain,
            "n": self.batch,
        }
        if self.study_ids:
            stmt = stmt.bindparams(bindparam("studies", expanding=True))
            params["studies"] = self.study_ids
        rows = session.connection().execute(stmt, params)
        return [r.id for r in rows]

    def _load(self, session: Session, ids: list[int], stats: DispatchStats | None = None) -> list[Outgoing]:
        """Render the messages of claimed rows still ours; attempts beyond the limit fail here."""
        q = (
            select(Reminder, ParticipantContact, Participant, Wave, Study, ReminderPlan, ReminderConfig)
            .join(ParticipantContact, ParticipantContact.participant_id == Reminder.participant_id)
            .join(Participant, Participant.id == Reminder.participant_id)
            .join(Wave, Wave.id == Reminder.wave_id)
            .join(Study, Study.id == Reminder.study_id)
            .join(
                ReminderPlan, (ReminderPlan.study_id == Reminder.study_id) & (ReminderPlan.wave_id == Reminder.wave_id)
            )
            .outerjoin(ReminderConfig, ReminderConfig.study_id == Reminder.study_id)
            .where(Reminder.id.in_(ids), Reminder.status == "sending", Reminder.claimed_by == self.worker_id)
            .order_by(Reminder.due_at, Reminder.id)
        )
        rows = session.exec(q).all()
        wants_link = [
            (participant, wave)
            for rem, contact, participant, wave, study, plan, cfg in rows
            if rem.attempts <= self.max_attempts and "link" in templates.fields(plan.body + (plan.sms_body or ""))
        ]
        links, refused = {}, {}
        if wants_link:
            # One round of queries for the whole batch rather than several per message. Refusals
            # (window past, nothing to offer) leave no write behind: those messages fall back to the
            # coordinator's URL. Anything else aborts the claim; the rows stay due.
            links, refused = live_links(session, wants_link, self.actor, self.settings, now=self.clock.now())
        out = []
        for rem, contact, participant, wave, study, plan, cfg in rows:
            if rem.attempts > self.max_attempts:  # reclaimed after crashes too often
                self._finish_failure(session, rem, "lease expired after the last attempt", permanent=True)
                continue
            try:
                out.append(self._render(rem, contact, participant, wave, study, plan, cfg, links, refused))
            except Exception as exc:  # noqa: BLE001 - one bad row must not hold the others back
                # e.g. a line break in a value that ends up in the subject (stored before such
                # values were refused): this message fails for good, the rest of the batch goes.
                reason = (
                    str(exc) if isinstance(exc, _Unsendable) else f"message could not be built ({type(exc).__name__})"
                )
                self._finish_failure(session, rem, reason, permanent=True)
                if stats is not None:
                    stats.failed += 1
        return out

    def _render(self, rem, contact, participant, wave, study, plan, cfg, links, refused) -> Outgoing:
        """The message of one claimed row (raises when it cannot be built)."""
        tz = ZoneInfo(study.time_zone)
        token = tokens.sign(self.settings.secret_key, participant.id)
        unsubscribe = f"{self.settings.base_url.rstrip('/')}/u/{token}"
        link = plan.form_url or ""
        key = (participant.id, wave.id)
        if key in links:
            link = links[key][1]
        elif key in refused:
            log.info("no personal link for reminder %s (%s); using form_url", rem.id, refused[key].errors[0]["type"])
        closes_on = (rem.window_closes_at.astimezone(tz) - timedelta(days=1)).date().isoformat()
        values = {
            "name": contact.name or "",
            "link": link,
            "wave": wave.code,
            "study": study.public_title
            or study.title,  # participants never see the internal title when a public one is set
            "closes_on": closes_on,
            "unsubscribe": unsubscribe,
        }
        if rem.channel == "sms":
            body = templates.render(plan.sms_body or plan.body, values)
            return Outgoing(
                rem.id,
                rem.message_id,
                "sms",
                contact.phone or "",
                "",
                body,
                unsubscribe,
                webhook_url=cfg.sms_webhook_url if cfg else None,
            )
        body = templates.render(plan.body, values)
        if "{unsubscribe}" not in plan.body:
            body += f"\n\n--\nTo stop these reminders: {unsubscribe}\n"
        subject = templates.render(plan.subject, values)
        if "\r" in subject or "\n" in subject:
            raise _Unsendable("the subject would contain a line break (study title, name or subject template)")
        return Outgoing(rem.id, rem.message_id, "email", contact.email or "", subject, body, unsubscribe)

    def claim_batch(self, stats: DispatchStats) -> list[Outgoing]:
        """Claim, re-check eligibility and render, in one short transaction."""
        with self.session() as session:
            ids = self.claim(session)
            if not ids:
                session.commit()
                return []
            stats.claimed += len(ids)
            cancelled = cancel_ineligible(
                session,
                self.clock.now(),
                scope="reminder.id IN :ids AND reminder.status = 'sending' AND reminder.claimed_by = :worker",
                params={"ids": ids, "worker": self.worker_id},
                actor=self.actor,
                expanding=("ids",),
            )
            stats.cancelled += len(cancelled)
            out = self._load(session, ids, stats)
            session.commit()
            return out

    # -- 2. send, 3. record -----------------------------------------------------------------------
    def send(self, out: Outgoing) -> Result:
        """Send one message (no database work); the outcome is recorded by :meth:`record_results`
        (reminders) or :func:`api.reminders.staff.record_result` (staff messages)."""
        channel = self.sms if out.channel == "sms" else self.email
        try:
            return Result(out, ref=channel.send(out))
        except SendError as exc:
            return Result(out, error=scrub(str(exc), out.to), permanent=exc.permanent)
        except Exception as exc:  # noqa: BLE001 - a message that cannot be built fails alone, for good
            return Result(out, error=f"message could not be built ({type(exc).__name__})", permanent=True)

    def send_one(self, out: Outgoing, stats: DispatchStats) -> None:
        """Send one message and record the outcome before returning."""
        self.record_results([self.send(out)], stats)

    def record_results(self, results: list[Result], stats: DispatchStats) -> None:
        """Record outcomes in one short transaction: ``sent`` with an audit event each, or a retry
        after backoff, or ``failed``. Rows no longer claimed by this worker are left alone."""
        now = self.clock.now()
        with self.session() as session:
            conn = session.connection()
            done = [r for r in results if r.error is None]
            sent_rows = []
            plain = [r.out.reminder_id for r in done if r.ref is None]
            upd = (
                "UPDATE reminder SET status = 'sent', sent_at = :now, updated_at = :now, provider_ref = {ref}, "
                "last_error = NULL, retry_at = NULL WHERE id {cond} AND status = 'sending' "
                "AND claimed_by = :worker RETURNING id, study_id, site_id, wave_id, step, attempts"
            )
            if plain:
                stmt = text(upd.format(ref="NULL", cond="IN :ids")).bindparams(
                    bindparam("now", type_=UTCDateTime()), bindparam("ids", expanding=True)
                )
                sent_rows += conn.execute(stmt, {"now": now, "ids": plain, "worker": self.worker_id}).all()
            for r in done:
                if r.ref is not None:
                    stmt = text(upd.format(ref=":ref", cond="= :id")).bindparams(bindparam("now", type_=UTCDateTime()))
                    sent_rows += conn.execute(
                        stmt, {"now": now, "ref": r.ref, "id": r.out.reminder_id, "worker": self.worker_id}
                    ).all()
            by_id = {r.out.reminder_id: r.out for r in done}
            for row in sent_rows:
                out = by_id[row.id]
                record(
                    session,
                    self.actor,
                    "send",
                    "reminder",
                    row.id,
                    study_id=row.study_id,
                    site_id=row.site_id,
                    after={
                        "status": "sent",
                        "channel": out.channel,
                        "wave_id": row.wave_id,
                        "step": row.step,
                        "attempt": row.attempts,
                        "message_id": out.message_id,
                    },
                )
            stats.sent += len(sent_rows)
            for r in results:
                if r.error is None:
                    continue
                rem = session.get(Reminder, r.out.reminder_id)
                if rem is not None and rem.status == "sending" and rem.claimed_by == self.worker_id:
                    failed = self._finish_failure(session, rem, r.error, permanent=r.permanent)
                    stats.failed += failed
                    stats.retried += not failed
            session.commit()

    def _finish_failure(self, session: Session, rem: Reminder, error: str, *, permanent: bool) -> bool:
        """Schedule a retry with backoff, or mark failed; returns True when failed."""
        now = self.clock.now()
        failed = permanent or rem.attempts >= self.max_attempts
        rem.last_error = error[:500]
        rem.claimed_by = None
        rem.updated_at = now
        if failed:
            rem.status = "failed"
            rem.retry_at = None
        else:
            rem.status = "pending"
            rem.retry_at = now + backoff_delay(rem.attempts, base_seconds=self.settings.reminder_backoff_seconds)
        session.add(rem)
        record(
            session,
            self.actor,
            "fail" if failed else "send_failed",
            "reminder",
            rem.id,
            study_id=rem.study_id,
            site_id=rem.site_id,
            after={
                "status": rem.status,
                "channel": rem.channel,
                "attempt": rem.attempts,
                "error": rem.last_error,
                "retry_at": rem.retry_at.isoformat() if rem.retry_at else None,
            },
        )
        return failed

    def run_once(self, *, max_batches: int | None = None) -> DispatchStats:
        """Send everything due now (batch after batch until nothing is left to claim).

        Outcomes are recorded by a second thread while the next message is being sent, so the
        database round trips overlap the SMTP ones. The hand-over queue is short
        (``RECORD_QUEUE``): it bounds how many sent messages a crash can leave unrecorded, and
        so how many may be sent a second time (with the same Message-ID).
        """
        stats = DispatchStats()
        # Staff messages first (safety alerts must not queue behind a wave of reminders), and
        # whatever a study's reminder pause says.
        staff.run(self, stats, max_batches=max_batches)
        recorder = _Recorder(self, stats)
        n = 0
        try:
            while max_batches is None or n < max_batches:
                batch = self.claim_batch(stats)
                if not batch:
                    break
                n += 1
                for out in batch:
                    recorder.put(self.send(out))
        finally:
            recorder.close()
        return stats

    def close(self) -> None:
        self.email.close()
        self.sms.close()


def _safety_sweep(session_factory, clock: Clock, settings, study_ids: list[int] | None):
    """Escalate unacknowledged safety alerts and remind about overdue serious adverse events (the
    safety domain's sweep), before this round's messages go."""
    return safety_sweep(session_factory, clock, settings, study_ids=study_ids)


def _seal_audit(engine) -> None:
    """Seal the round's audit rows into the chain (api/audit/chain.py); a failure waits for the next round."""
    from api.audit.chain import seal

    try:
        seal(engine)
    except Exception as exc:  # noqa: BLE001 - sealing is retried every round
        log.error("audit sealing failed (%s)", type(exc).__name__)


def run_worker(
    engine,
    settings,
    *,
    clock: Clock | None = None,
    interval: float = 60.0,
    once: bool = False,
    plan: bool = True,
    batch: int = 50,
    worker_id: str | None = None,
    study_ids: list[int] | None = None,
    echo: Callable[[str], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> DispatchStats:
    """Plan and dispatch every ``interval`` seconds (or once).

    Returns the totals of the last round (``--once``: of the only round).
    """
    clock = clock or SystemClock()
    disp = Dispatcher(engine, settings, clock=clock, worker_id=worker_id, batch=batch, study_ids=study_ids)
    factory = lambda: Session(engine, expire_on_commit=False)  # noqa: E731
    try:
        while True:
            started = time.monotonic()
            try:
                planned = plan_all(factory, clock) if plan else None
                swept = _safety_sweep(factory, clock, settings, study_ids)
                stats = disp.run_once()
                _seal_audit(engine)
            except Exception as exc:  # noqa: BLE001 - a long-running worker survives a bad round
                if once:
                    raise
                log.error("reminder round failed (%s); retrying in %.0f s", type(exc).__name__, interval)
                time.sleep(interval)
                continue
            if echo is not None:
                p = f"planned {planned.planned}, cancelled {planned.cancelled}; " if planned else ""
                safety = f"; safety: {swept.summary()}"
                echo(
                    f"{p}claimed {stats.claimed}, sent {stats.sent}, cancelled {stats.cancelled}, "
                    f"retry {stats.retried}, failed {stats.failed}; staff messages sent {stats.staff_sent}, "
                    f"retry {stats.staff_retried}, failed {stats.staff_failed}{safety}"
                )
            if once or (stop is not None and stop()):
                return stats
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    finally:
        disp.close()
