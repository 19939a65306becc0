"""What the console's study dashboard shows, read through the same site scoping as the REST API.

Every count is limited to the sites the actor sees (:func:`api.auth.policy.site_scoped`): a
coordinator of one site never counts another site's participants, reminders or alerts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, select

from api.auth import policy
from api.auth.service import Actor
from api.db import utcnow
from api.participants.models import Participant
from api.participants.service import local_date, window
from api.reminders.models import Reminder
from api.responses.models import Response
from api.safety.models import SafetyAlert
from api.studies.models import Arm, Site, Study, Wave

UPCOMING_DAYS = 14
PEOPLE_SHOWN = 200
REMINDER_STATES = ("pending", "sent", "failed", "paused", "cancelled", "skipped")


@dataclass
class WaveProgress:
    wave: str
    due: int  # participants whose window has opened (active ones, or who answered)
    completed: int
    overdue: int  # window closed, not complete
    open_now: int
    upcoming: int  # window opens within UPCOMING_DAYS

    @property
    def percent(self) -> int:
        return round(100 * self.completed / self.due) if self.due else 0


@dataclass
class Dashboard:
    study: Study
    sites: list[Site]
    arms: list[Arm]
    target: int | None
    enrolled: int
    by_site_arm: dict[tuple[int, int | None], int]
    by_site: dict[int, int]
    by_arm: dict[int | None, int]
    expected_by_arm: dict[int, float]
    status_counts: dict[str, int]
    waves: list[WaveProgress]
    reminders: dict[str, int]
    open_alerts: int
    recent: list[dict] = field(default_factory=list)
    people: list[dict] = field(default_factory=list)  # the latest enrolled first (at most PEOPLE_SHOWN)


def _scoped(stmt, column, actor: Actor):
    if policy.site_scoped(actor):
        return stmt.where(column.in_(actor.site_ids or [-1]))
    return stmt


def visible_sites(session: Session, study: Study, actor: Actor) -> list[Site]:
    stmt = _scoped(select(Site).where(Site.study_id == study.id), Site.id, actor)
    return list(session.exec(stmt.order_by(Site.code)).all())


def _wave_progress(session: Session, study: Study, people: list[Participant], today: date) -> list[WaveProgress]:
    waves = session.exec(select(Wave).where(Wave.study_id == study.id).order_by(Wave.offset_days, Wave.id)).all()
    ids = [p.id for p in people]
    complete: dict[tuple[int, int], int] = {}
    if ids:
        rows = session.exec(
            select(Response.participant_id, Response.wave_id, func.count())
            .where(Response.participant_id.in_(ids), Response.status == "complete")
            .group_by(Response.participant_id, Response.wave_id)
        ).all()
        complete = {(pid, wid): n for pid, wid, n in rows}
    out = []
    for w in waves:
        due = done = overdue = open_now = upcoming = 0
        for p in people:
            _, opens, closes, _, _ = window(study, p, w)
            finished = complete.get((p.id, w.id), 0) >= len(w.instruments) > 0
            if opens > today:
                if p.status == "active" and opens <= today + timedelta(days=UPCOMING_DAYS):
                    upcoming += 1
                continue
            if p.status != "active" and not finished:
                continue  # withdrawn or lost before answering: no longer due
            due += 1
            if finished:
                done += 1
            elif today > closes:
                overdue += 1
            else:
                open_now += 1
        out.append(WaveProgress(w.code, due, done, overdue, open_now, upcoming))
    return out


def dashboard(session: Session, study: Study, actor: Actor, today: date | None = None) -> Dashboard:
    """Enrolment against target by site and arm, balance, wave completion among those due, the
    reminder queue, open safety alerts and the latest responses, for the sites ``actor`` sees."""
    today = today or local_date(study, utcnow())
    sites = visible_sites(session, study, actor)
    arms = list(session.exec(select(Arm).where(Arm.study_id == study.id).order_by(Arm.id)).all())
    people = list(
        session.exec(_scoped(select(Participant).where(Participant.study_id == study.id), Participant.site_id, actor))
    )
    by_site_arm: dict[tuple[int, int | None], int] = {}
    by_site: dict[int, int] = {}
    by_arm: dict[int | None, int] = {}
    status_counts: dict[str, int] = {}
    for p in people:
        by_site_arm[(p.site_id, p.arm_id)] = by_site_arm.get((p.site_id, p.arm_id), 0) + 1
        by_site[p.site_id] = by_site.get(p.site_id, 0) + 1
        by_arm[p.arm_id] = by_arm.get(p.arm_id, 0) + 1
        status_counts[p.status] = status_counts.get(p.status, 0) + 1
    randomised = sum(n for arm_id, n in by_arm.items() if arm_id is not None)
    total_ratio = sum(a.allocation_ratio for a in arms) or 1
    expected = {a.id: randomised * a.allocation_ratio / total_ratio for a in arms if a.id is not None}
    reminders = dict(
        session.exec(
            _scoped(
                select(Reminder.status, func.count()).where(Reminder.study_id == study.id), Reminder.site_id, actor
            ).group_by(Reminder.status)
        ).all()
    )
    open_alerts = session.exec(
        _scoped(
            select(func.count()).where(SafetyAlert.study_id == study.id, SafetyAlert.status != "resolved"),
            SafetyAlert.site_id,
            actor,
        )
    ).one()
    recent_rows = session.exec(
        _scoped(
            select(Participant.id, Participant.study_code, Wave.code, Response.instrument)
            .add_columns(Response.mode)
            .join(Participant, Participant.id == Response.participant_id)
            .join(Wave, Wave.id == Response.wave_id)
            .where(Response.study_id == study.id),
            Response.site_id,
            actor,
        )
        .order_by(Response.updated_at.desc(), Response.id.desc())
        .limit(8)
    ).all()
    recent = [
        {"participant_id": pid, "study_code": code, "wave": wave, "instrument": inst, "mode": mode}
        for pid, code, wave, inst, mode in recent_rows
    ]
    return Dashboard(
        study=study,
        sites=sites,
        arms=arms,
        target=study.planned_sample_size,
        enrolled=len(people),
        by_site_arm=by_site_arm,
        by_site=by_site,
        by_arm=by_arm,
        expected_by_arm=expected,
        status_counts=status_counts,
        waves=_wave_progress(session, study, people, today),
        reminders=reminders,
        open_alerts=int(open_alerts),
        recent=recent,
        people=[
            {"id": p.id, "study_code": p.study_code, "site_id": p.site_id, "arm_id": p.arm_id, "status": p.status}
            for p in sorted(people, key=lambda p: p.id or 0, reverse=True)[:PEOPLE_SHOWN]
        ],
    )


def as_of(moment: datetime | None, study: Study) -> str:
    """A timestamp as the study's local date and time, for tables."""
    if moment is None:
        return ""
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo(study.time_zone)).strftime("%Y-%m-%d %H:%M")
