"""The planner: reminder plans → outbox rows, set-based and idempotent.

For each plan (one wave of one study) a single ``INSERT … SELECT … ON CONFLICT`` creates the
rows of every eligible participant and step, and moves the due time of rows still pending when
the window or the plan changed. A single ``UPDATE … RETURNING`` per study then cancels pending
rows that should no longer go (participant not active, opted out, no address for the channel,
wave completed, plan or step removed, window closed). Nothing loops over participants in Python.

Due times are computed in SQL exactly as :func:`api.reminders.timing.step_due` does: local
midnight of the opening day plus the step, moved out of quiet hours, read in the study's time
zone (``AT TIME ZONE`` on PostgreSQL, the ``pl_local_to_utc`` function on SQLite).

Examples
--------
>>> from api.reminders.clock import SystemClock
>>> stats = plan_all(session, SystemClock())  # doctest: +SKIP
>>> session.commit()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlmodel import Session, select

from api.audit.service import record
from api.auth.service import Actor
from api.db import UTCDateTime
from api.licensed.service import refresh as refresh_licensed
from api.reminders.clock import Clock
from api.reminders.models import ReminderConfig, ReminderPlan
from api.reminders.timing import sqlite_local_to_utc, step_minutes
from api.studies.models import Study, Wave

log = logging.getLogger("peerlens.reminders")

_LOCK_KEY = 0x706C72  # "plr": advisory lock namespace of the planner on PostgreSQL


@dataclass
class PlanStats:
    planned: int = 0  # rows inserted or rescheduled
    cancelled: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    skipped_studies: int = 0  # planned concurrently by another worker


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def ensure_sqlite_functions(session: Session) -> None:
    """Register ``pl_local_to_utc`` on the session's SQLite connection (no-op elsewhere)."""
    if not _is_sqlite(session):
        return
    raw = session.connection().connection.driver_connection
    raw.create_function("pl_local_to_utc", 2, sqlite_local_to_utc, deterministic=True)


def _quiet_case(local: str, day: str, minute: str, add_min, quiet: tuple[int, int] | None) -> str:
    """SQL for "move ``local`` out of quiet hours", with ``add_min(day_expr, days, minutes)``."""
    if quiet is None or quiet[0] == quiet[1]:
        return local
    start, end = int(quiet[0]), int(quiet[1])
    if start < end:
        return f"CASE WHEN {minute} >= {start} AND {minute} < {end} THEN {add_min(day, 0, end)} ELSE {local} END"
    return (
        f"CASE WHEN {minute} >= {start} THEN {add_min(day, 1, end)} "
        f"WHEN {minute} < {end} THEN {add_min(day, 0, end)} ELSE {local} END"
    )


def _insert_sql(sqlite: bool, *, open_off: int, close_off: int, steps: list[int], quiet, form_only: str = "") -> str:
    """The upsert of one plan; ``:sid :wid :tz :now :channel :n_instr`` are bound.

    ``form_only`` restricts the responses counted to the instruments the participant form offers
    (an SQL condition on ``r``, see :func:`form_scope`)."""
    values = ", ".join(f"({i}, {int(m)})" for i, m in enumerate(steps))
    if sqlite:
        opens_local = f"datetime(p.enrolled_on, '{open_off:+d} days')"
        closes_local = f"datetime(p.enrolled_on, '{close_off:+d} days')"
        local = f"datetime(p.enrolled_on, '{open_off:+d} days', '+' || s.add_min || ' minutes')"
        to_utc = "pl_local_to_utc({}, :tz)".format
        day, minute = (
            "date(x0.local_ts)",
            ("(CAST(strftime('%H', x0.local_ts) AS INTEGER) * 60 + CAST(strftime('%M', x0.local_ts) AS INTEGER))"),
        )

        def add_min(d, days, mins):
            return f"datetime({d}, '+{days} days', '+{mins} minutes')"
    else:
        opens_local = f"(p.enrolled_on + {open_off})::timestamp"
        closes_local = f"(p.enrolled_on + {close_off})::timestamp"
        local = f"(p.enrolled_on + {open_off})::timestamp + s.add_min * interval '1 minute'"
        to_utc = "(({}) AT TIME ZONE CAST(:tz AS text))".format
        day = "date_trunc('day', x0.local_ts)"
        minute = "(extract(hour from x0.local_ts) * 60 + extract(minute from x0.local_ts))::int"

        def add_min(d, days, mins):
            return f"({d} + interval '{days} days' + interval '{mins} minutes')"

    steps_cte = f"steps(step, add_min) AS (VALUES {values})"
    shifted = _quiet_case("x0.local_ts", day, minute, add_min, quiet)
    return f"""
WITH {steps_cte}
INSERT INTO reminder (study_id, site_id, participant_id, wave_id, step, channel, due_at, window_opens_at,
                      window_closes_at, status, attempts, created_at, updated_at)
SELECT :sid, x.site_id, x.participant_id, :wid, x.step, x.channel, x.due_at, x.opens_at, x.closes_at,
       'pending', 0, :now, :now
FROM (
  SELECT x0.participant_id, x0.site_id, x0.step, x0.channel, x0.opens_at, x0.closes_at,
         {to_utc(shifted)} AS due_at
  FROM (
    SELECT p.id AS participant_id, p.site_id, s.step,
           CASE WHEN :channel = 'preferred' THEN c.preferred_channel ELSE :channel END AS channel,
           {local} AS local_ts,
           {to_utc(opens_local)} AS opens_at,
           {to_utc(closes_local)} AS closes_at
    FROM participant p
    JOIN participant_contact c ON c.participant_id = p.id
    CROSS JOIN steps s
    WHERE p.study_id = :sid AND p.status = 'active' AND NOT c.opt_out
      AND p.voided_at IS NULL AND p.follow_up_stopped_on IS NULL AND p.consent_withdrawn_on IS NULL
      AND (CASE WHEN :channel = 'preferred' THEN c.preferred_channel ELSE :channel END = 'email'
             AND c.email IS NOT NULL AND c.email <> ''
           OR CASE WHEN :channel = 'preferred' THEN c.preferred_channel ELSE :channel END = 'sms'
             AND c.phone IS NOT NULL AND c.phone <> '')
      AND (SELECT count(DISTINCT r.instrument) FROM response r
           WHERE r.participant_id = p.id AND r.wave_id = :wid AND r.status = 'complete'{form_only}) < :n_instr
  ) x0
) x
WHERE x.closes_at > :now
  AND (x.due_at < x.closes_at
       OR EXISTS (SELECT 1 FROM reminder e
                  WHERE e.participant_id = x.participant_id AND e.wave_id = :wid AND e.step = x.step))
ON CONFLICT (participant_id, wave_id, step) DO UPDATE SET
  due_at = excluded.due_at, window_opens_at = excluded.window_opens_at,
  window_closes_at = excluded.window_closes_at, channel = excluded.channel, site_id = excluded.site_id,
  updated_at = excluded.updated_at
WHERE reminder.status = 'pending'
  AND (reminder.due_at <> excluded.due_at OR reminder.channel <> excluded.channel
       OR reminder.window_closes_at <> excluded.window_closes_at)
"""


# The first reason that applies is recorded; NULL means the row may still go.
_CANCEL_REASON_SQL = """COALESCE(
  (SELECT CASE WHEN p.voided_at IS NOT NULL THEN 'participant_voided'
               WHEN p.consent_withdrawn_on IS NOT NULL THEN 'consent_withdrawn'
               WHEN p.follow_up_stopped_on IS NOT NULL THEN 'follow_up_stopped'
               WHEN p.status <> 'active' THEN 'participant_' || p.status END
     FROM participant p WHERE p.id = reminder.participant_id),
  CASE WHEN EXISTS (SELECT 1 FROM participant_contact c
                    WHERE c.participant_id = reminder.participant_id AND c.opt_out) THEN 'opted_out' END,
  CASE WHEN NOT EXISTS (
         SELECT 1 FROM participant_contact c
         WHERE c.participant_id = reminder.participant_id
           AND (reminder.channel = 'email' AND c.email IS NOT NULL AND c.email <> ''
                OR reminder.channel = 'sms' AND c.phone IS NOT NULL AND c.phone <> '')
           AND NOT (c.preferred_channel NOT IN ('email', 'sms') AND EXISTS (
                 SELECT 1 FROM reminder_plan pc WHERE pc.study_id = reminder.study_id
                   AND pc.wave_id = reminder.wave_id AND pc.channel = 'preferred')))
       THEN 'no_contact' END,
  CASE WHEN EXISTS (
         SELECT 1 FROM wave w WHERE w.id = reminder.wave_id AND json_array_length(w.instruments) > 0
           AND {n_form} <= (
             SELECT count(DISTINCT r.instrument) FROM response r
             WHERE r.participant_id = reminder.participant_id AND r.wave_id = reminder.wave_id
               AND r.status = 'complete'{form_only}))
       THEN 'completed' END,
  CASE WHEN NOT EXISTS (
         SELECT 1 FROM reminder_plan pl WHERE pl.study_id = reminder.study_id AND pl.wave_id = reminder.wave_id
           AND json_array_length(pl.steps) > reminder.step) THEN 'plan_removed' END,
  CASE WHEN reminder.window_closes_at <= :now OR reminder.due_at >= reminder.window_closes_at
       THEN 'window_closed' END
)"""


def not_on_form(wave: Wave) -> list[str]:
    """The wave's instruments the participant form does not show: licensed wording not loaded, or
    administered by staff (``wave.staff_instruments``). They are coordinator tasks, never reminded."""
    from api.links.service import offer_in

    return sorted({c for c in wave.instruments or [] if not offer_in(wave, c)[0]})


def _quoted(codes) -> str:
    # instrument codes are [a-z0-9_] (checked on the way in); quoted as literals all the same
    return ", ".join("'" + str(c).replace("'", "''") + "'" for c in codes)


def form_scope(wave: Wave) -> str:
    """An SQL condition on ``r.instrument`` leaving out the instruments of ``wave`` the form does not show.

    A reminder asks for what the participant can answer; a licensed instrument whose wording is
    not loaded, or one staff administer, is a coordinator task (:mod:`api.reminders.tasks`) and
    never keeps a wave open for reminders.
    """
    hidden = not_on_form(wave)
    return f" AND r.instrument NOT IN ({_quoted(hidden)})" if hidden else ""


def cancel_reason_sql(session: Session) -> str:
    """The cancel-reason expression, with the number of form instruments of each wave that has others."""
    waves = session.exec(select(Wave)).all()
    hidden = {w.id: not_on_form(w) for w in waves}
    hidden = {wid: codes for wid, codes in hidden.items() if codes}
    counts = {w.id: len(set(w.instruments or [])) - len(hidden[w.id]) for w in waves if w.id in hidden}
    if not hidden:
        return _CANCEL_REASON_SQL.format(n_form="json_array_length(w.instruments)", form_only="")
    branches = " ".join(f"WHEN {int(wid)} THEN {int(n)}" for wid, n in counts.items())
    n_form = f"(CASE w.id {branches} ELSE json_array_length(w.instruments) END)"
    per_wave = " OR ".join(f"(r.wave_id = {int(wid)} AND r.instrument IN ({_quoted(c)}))" for wid, c in hidden.items())
    return _CANCEL_REASON_SQL.format(n_form=n_form, form_only=f" AND NOT ({per_wave})")


def cancel_ineligible(
    session: Session,
    now: datetime,
    *,
    scope: str,
    params: dict[str, Any],
    actor: Actor,
    expanding: tuple[str, ...] = (),
) -> list[Any]:
    """Cancel the rows of ``scope`` (an SQL condition on ``reminder``) that should not go.

    One ``UPDATE … RETURNING``; one audit event per cancelled row (no identifiers: ids, wave,
    step, reason). Returns the cancelled rows ``(id, study_id, site_id, wave_id, step, reason)``.
    """
    # The reasons are computed once per row in a materialised CTE, then applied by id; the scope
    # is repeated on the target so that PostgreSQL re-checks it on rows another transaction
    # changed meanwhile (a row claimed by a worker is no longer 'pending').
    stmt = text(f"""
WITH c AS MATERIALIZED (
  SELECT rid, reason FROM (SELECT reminder.id AS rid, {cancel_reason_sql(session)} AS reason
                           FROM reminder WHERE {scope}) AS r0
  WHERE reason IS NOT NULL)
UPDATE reminder SET status = 'cancelled', cancel_reason = c.reason, updated_at = :now,
                    claimed_by = NULL, retry_at = NULL
FROM c
WHERE reminder.id = c.rid AND {scope}
RETURNING reminder.id, reminder.study_id, reminder.site_id, reminder.wave_id, reminder.step,
          reminder.cancel_reason""")
    binds = [bindparam("now", type_=UTCDateTime())] + [bindparam(n, expanding=True) for n in expanding]
    rows = session.connection().execute(stmt.bindparams(*binds), {"now": now, **params}).all()
    for r in rows:
        record(
            session,
            actor,
            "cancel",
            "reminder",
            r.id,
            study_id=r.study_id,
            site_id=r.site_id,
            after={"status": "cancelled", "reason": r.cancel_reason, "wave_id": r.wave_id, "step": r.step},
        )
    return rows


def restore_cancelled(
    session: Session, now: datetime, *, participant_id: int, reasons: tuple[str, ...], actor: Actor
) -> list[Any]:
    """Put back to ``pending`` one participant's reminders cancelled for one of ``reasons`` whose
    window is still open (a withdrawal or void taken back); audited per row, as cancelling is.
    The dispatcher re-checks eligibility before it sends any of them."""
    stmt = text("""
UPDATE reminder SET status = 'pending', cancel_reason = NULL, updated_at = :now
WHERE participant_id = :pid AND status = 'cancelled' AND cancel_reason IN :reasons AND window_closes_at > :now
RETURNING id, study_id, site_id, wave_id, step""").bindparams(
        bindparam("now", type_=UTCDateTime()), bindparam("reasons", expanding=True)
    )
    rows = session.connection().execute(stmt, {"now": now, "pid": participant_id, "reasons": list(reasons)}).all()
    for r in rows:
        record(
            session,
            actor,
            "restore",
            "reminder",
            r.id,
            study_id=r.study_id,
            site_id=r.site_id,
            after={"status": "pending", "wave_id": r.wave_id, "step": r.step},
        )
    return rows


def _try_lock(session: Session, study_id: int) -> bool:
    if _is_sqlite(session):
        return True  # BEGIN IMMEDIATE already serialises writers
    return bool(
        session.connection()
        .execute(text("SELECT pg_try_advisory_xact_lock(:k, :sid)"), {"k": _LOCK_KEY, "sid": study_id})
        .scalar()
    )


def plan_study(
    session: Session, study: Study, clock: Clock, *, actor: Actor | None = None, stats: PlanStats | None = None
) -> PlanStats:
    """Plan and cancel the reminders of one study (flushes; the caller commits).

    Returns
    -------
    PlanStats
        Rows planned (inserted or rescheduled) and cancelled, by reason.
    """
    stats = stats or PlanStats()
    actor = actor or Actor.system()
    now = clock.now()
    if not _try_lock(session, study.id):
        stats.skipped_studies += 1
        return stats
    ensure_sqlite_functions(session)
    refresh_licensed(session)  # wording uploaded since: those instruments count for reminders again
    cfg = session.get(ReminderConfig, study.id)
    quiet = None
    if cfg is not None and cfg.quiet_start_minute is not None and cfg.quiet_end_minute is not None:
        quiet = (cfg.quiet_start_minute, cfg.quiet_end_minute)
    sqlite = _is_sqlite(session)
    planned = 0
    plans = session.exec(
        select(ReminderPlan, Wave).join(Wave, Wave.id == ReminderPlan.wave_id).where(ReminderPlan.study_id == study.id)
    ).all()
    for plan, wave in plans:
        if not plan.steps:
            continue
        sql = _insert_sql(
            sqlite,
            open_off=wave.offset_days - wave.window_before_days,
            close_off=wave.offset_days + wave.window_after_days + 1,
            steps=[step_minutes(s) for s in plan.steps],
            quiet=quiet,
            form_only=form_scope(wave),
        )
        hidden = not_on_form(wave)
        on_form = [c for c in dict.fromkeys(wave.instruments or []) if c not in hidden]
        if wave.instruments and not on_form:
            continue  # nothing the participant can answer: coordinator tasks only
        n_instr = len(on_form) if wave.instruments else 1 << 30  # no instruments: never complete
        res = session.connection().execute(
            text(sql).bindparams(bindparam("now", type_=UTCDateTime())),
            {
                "sid": study.id,
                "wid": wave.id,
                "tz": study.time_zone,
                "now": now,
                "channel": plan.channel,
                "n_instr": n_instr,
            },
        )
        if sqlite:  # pysqlite reports no rowcount for a statement that starts with WITH
            planned += session.connection().execute(text("SELECT changes()")).scalar() or 0
        else:
            planned += max(res.rowcount or 0, 0)
    rows = cancel_ineligible(
        session,
        now,
        scope="reminder.study_id = :sid AND reminder.status = 'pending'",
        params={"sid": study.id},
        actor=actor,
    )
    if planned:
        record(
            session,
            actor,
            "plan",
            "reminder_plan",
            study.id,
            study_id=study.id,
            after={"planned_or_rescheduled": planned},
        )
    stats.planned += planned
    stats.cancelled += len(rows)
    for r in rows:
        stats.by_reason[r.cancel_reason] = stats.by_reason.get(r.cancel_reason, 0) + 1
    session.flush()
    return stats


def plan_all(session_factory, clock: Clock, *, actor: Actor | None = None) -> PlanStats:
    """Plan every study that has reminder plans, one short transaction per study.

    Parameters
    ----------
    session_factory : callable
        Returns a new :class:`~sqlmodel.Session` (e.g. ``lambda: Session(engine)``).
    """
    stats = PlanStats()
    with session_factory() as session:
        study_ids = session.exec(select(ReminderPlan.study_id).distinct()).all()
    for sid in study_ids:
        with session_factory() as session:
            study = session.get(Study, sid)
            if study is None:
                continue
            plan_study(session, study, clock, actor=actor, stats=stats)
            session.commit()
    return stats
