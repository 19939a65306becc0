"""The safety sweep, run by every ``peerlens worker`` round before messages are sent.

* An alert still **open** (nobody acknowledged it) ``escalate_after_hours`` after it was raised is
  escalated to the principal investigator (every admin when the study names none); each further
  interval escalates it again, to the PI and every admin, until someone acknowledges it. A worker
  that was stopped for several intervals sends one message at the level reached, not one per
  missed interval.
* A **serious adverse event** whose follow-up is overdue sends one reminder to the PI and the
  site's contacts per missed due date.

Time comes from the worker's clock (:mod:`api.reminders.clock`), so tests move it by hand. The
sweep is safe to run from several workers at once: an escalation is claimed with a conditional
``UPDATE`` on the alert's level, and messages are unique per topic and recipient.

Examples
--------
>>> from api.reminders.clock import SystemClock
>>> stats = sweep(session_factory, SystemClock())  # doctest: +SKIP
>>> stats.summary()  # doctest: +SKIP
'escalated 0, overdue follow-up notices 0'
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, select

from api.audit.service import record
from api.auth.service import Actor
from api.reminders.clock import Clock
from api.safety import notify
from api.safety.events import follow_up_due
from api.safety.models import FINAL_OUTCOMES, AdverseEvent, SafetyAlert, SafetySettings
from api.studies.models import Study

log = logging.getLogger("peerlens.safety")


@dataclass
class SweepStats:
    escalated: int = 0
    overdue_notices: int = 0

    def summary(self) -> str:
        return f"escalated {self.escalated}, overdue follow-up notices {self.overdue_notices}"


def sweep(
    session_factory, clock: Clock, settings=None, *, study_ids: list[int] | None = None, actor: Actor | None = None
) -> SweepStats:
    """One round: escalate due alerts, remind about overdue serious events (``study_ids``: only
    these studies); commits."""
    actor = actor or Actor.system(source="system")
    now = clock.now()
    with session_factory() as session:
        stats = SweepStats(escalated=escalate_due(session, now, actor, study_ids))
        stats.overdue_notices = remind_overdue(session, now, actor, study_ids)
        session.commit()
    return stats


def escalation_level(raised_at: datetime, now: datetime, hours: float) -> int:
    """Escalations an alert raised at ``raised_at`` has earned by ``now`` (whole intervals).

    >>> from datetime import datetime, UTC
    >>> escalation_level(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, 1, tzinfo=UTC), 24)
    1
    """
    return max(0, math.floor((now - raised_at) / timedelta(hours=hours)))


def escalate_due(session: Session, now: datetime, actor: Actor, study_ids: list[int] | None = None) -> int:
    """Escalate every open alert whose next interval has passed; returns how many."""
    stmt = (
        select(SafetyAlert, SafetySettings, Study)
        .join(Study, Study.id == SafetyAlert.study_id)
        .outerjoin(SafetySettings, SafetySettings.study_id == SafetyAlert.study_id)
        .where(SafetyAlert.status == "open")
    )
    if study_ids:
        stmt = stmt.where(SafetyAlert.study_id.in_(study_ids))
    rows = session.exec(stmt.order_by(SafetyAlert.id)).all()
    done = 0
    for alert, cfg, study in rows:
        level = escalation_level(alert.raised_at, now, cfg.escalate_after_hours if cfg else 24.0)
        if level <= alert.escalation_level:
            continue
        # Claim this escalation: only one worker's UPDATE matches the level it read.
        claimed = (
            session.connection()
            .execute(
                update(SafetyAlert)
                .where(
                    SafetyAlert.id == alert.id,
                    SafetyAlert.status == "open",
                    SafetyAlert.escalation_level == alert.escalation_level,
                )
                .values(escalation_level=level, escalated_at=now, updated_at=now)
            )
            .rowcount
        )
        if claimed != 1:
            continue
        before = alert.escalation_level
        alert.escalation_level, alert.escalated_at = level, now
        recipients = notify.escalation_recipients(session, cfg, level)
        if recipients:
            notify.alert_escalated(session, alert, study, recipients, level, now)
        else:
            log.error("safety alert %s: cannot escalate, no PI or active admin", alert.id)
        record(
            session,
            actor,
            "escalate",
            "safety_alert",
            alert.id,
            study_id=alert.study_id,
            site_id=alert.site_id,
            before={"escalation_level": before},
            after={"escalation_level": level, "notified_user_ids": recipients},
        )
        done += 1
    return done


def remind_overdue(session: Session, now: datetime, actor: Actor, study_ids: list[int] | None = None) -> int:
    """One message per overdue serious event and missed due date; returns how many events."""
    stmt = (
        select(AdverseEvent, SafetySettings, Study)
        .join(Study, Study.id == AdverseEvent.study_id)
        .outerjoin(SafetySettings, SafetySettings.study_id == AdverseEvent.study_id)
        .where(AdverseEvent.serious, AdverseEvent.outcome.not_in(FINAL_OUTCOMES))
    )
    if study_ids:
        stmt = stmt.where(AdverseEvent.study_id.in_(study_ids))
    rows = session.exec(stmt.order_by(AdverseEvent.id)).all()
    n = 0
    for event, cfg, study in rows:
        due = follow_up_due(event, cfg)
        if due is None or now < due:
            continue
        recipients = notify.serious_event_recipients(session, cfg, event.site_id)
        if not recipients:
            continue
        if notify.follow_up_overdue(session, event, study, recipients, due, now):
            record(
                session,
                actor,
                "overdue",
                "adverse_event",
                event.id,
                study_id=event.study_id,
                site_id=event.site_id,
                after={"follow_up_due_at": due.isoformat(), "notified_user_ids": recipients},
            )
            n += 1
    return n
