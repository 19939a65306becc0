"""Dose and adherence per participant, derived from the delivery records (never typed).

:func:`participant_dose` is the one entry point other parts use (complier-average analyses, the
CONSORT "received allocated intervention" box, exports). It returns one dict per participant
(``by_wave=False``) or per participant and wave interval (``by_wave=True``) with these keys:

``participant_id, study_code, site, arm``
    who (``arm`` None before randomisation).
``wave, interval_start_day, interval_end_day``
    ``None, None, None`` for the whole follow-up; otherwise the interval after the previous wave's
    offset (exclusive) up to this wave's offset (inclusive), in days since enrolment. The first
    wave's interval starts at enrolment (day 0 included); records after the last wave are in no
    interval row (only in the whole-follow-up row).
``sessions_offered``
    delivered sessions of the participant's group while they were a member (membership dates
    inclusive). Cancelled sessions are never offered; a participant who joined late was not offered
    the sessions before they joined; a participant who switched group is offered each group's
    sessions during their own membership of it.
``sessions_attended, session_minutes``
    attendance ``attended``, ``late`` or ``left_early`` at delivered sessions; minutes are those
    recorded for a late arrival or early leaver, otherwise the session's duration.
``contacts, contact_minutes``
    one-to-one contacts (calls, messages, home visits, video) and their minutes.
``minutes_total``
    ``session_minutes + contact_minutes``.
``forum_posts, forum_replies, forum_logins``
    imported forum activity of the weeks starting in the interval.
``proportion_planned``
    ``sessions_attended / planned_sessions`` of the arm's plan (None without a plan).
``first_exposure_day, last_exposure_day, first_exposure, last_exposure``
    first and last attended session or contact, as days since enrolment and as dates (dates are
    None for de-identified readers).
``adherent``
    the arm's adherence definition applied to everything received up to the end of the row's
    interval (the whole follow-up for the overall row); None when the arm has no plan.

Services flush nothing here: this module only reads.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from typing import Any

from sqlalchemy import and_, func, select
from sqlmodel import Session, col
from sqlmodel import select as model_select

from api.auth.policy import deidentified, sees_site
from api.auth.service import Actor
from api.delivery.models import (
    ATTENDED,
    DeliveryPlan,
    DeliverySession,
    ForumActivity,
    GroupMembership,
    PeerContact,
    PeerGroup,
    SessionAttendance,
)
from api.participants.models import Participant
from api.studies.models import Arm, Site, Wave

COUNTS = (
    "sessions_offered",
    "sessions_attended",
    "session_minutes",
    "contacts",
    "contact_minutes",
    "forum_posts",
    "forum_replies",
    "forum_logins",
)
COLUMNS = (
    "participant_id",
    "study_code",
    "site",
    "arm",
    "wave",
    "interval_start_day",
    "interval_end_day",
    *COUNTS[:5],
    "minutes_total",
    *COUNTS[5:],
    "proportion_planned",
    "first_exposure_day",
    "last_exposure_day",
    "first_exposure",
    "last_exposure",
    "adherent",
)


def plans(session: Session, study_id: int) -> dict[int, DeliveryPlan]:
    """The delivery plan of each arm of a study that has one, by arm id."""
    return {p.arm_id: p for p in session.exec(model_select(DeliveryPlan).where(DeliveryPlan.study_id == study_id))}


def is_adherent(plan: DeliveryPlan | None, sessions: int, minutes: int) -> bool | None:
    """Whether ``sessions`` attended and ``minutes`` of contact meet the plan's adherence definition.

    Examples
    --------
    >>> plan = DeliveryPlan(arm_id=1, study_id=1, planned_sessions=10, session_minutes=90,
    ...                     adherence_kind="sessions", adherence_threshold=6)
    >>> is_adherent(plan, 6, 0), is_adherent(plan, 5, 900), is_adherent(None, 9, 0)
    (True, False, None)
    """
    if plan is None:
        return None
    if plan.adherence_kind == "sessions":
        return sessions >= plan.adherence_threshold
    if plan.adherence_kind == "proportion":
        return sessions / plan.planned_sessions >= plan.adherence_threshold
    return minutes >= plan.adherence_threshold


def _participants(session: Session, study_id: int, actor: Actor | None) -> list[tuple[int, str, str, str | None, date]]:
    rows = session.execute(
        select(Participant.id, Participant.study_code, Site.code, Arm.code, Participant.enrolled_on, Site.id)
        .join(Site, col(Site.id) == Participant.site_id)
        .join(Arm, col(Arm.id) == Participant.arm_id, isouter=True)
        .where(Participant.study_id == study_id)
        .order_by(col(Participant.id))
    ).all()
    return [
        (pid, code, site, arm, enrolled)
        for pid, code, site, arm, enrolled, site_id in rows
        if actor is None or sees_site(actor, site_id)
    ]


def _attended_filter(study_id: int):
    return and_(
        DeliverySession.study_id == study_id,
        DeliverySession.status == "delivered",
        col(SessionAttendance.status).in_(ATTENDED),
    )


def _minutes():
    return func.coalesce(SessionAttendance.minutes, DeliverySession.duration_minutes, 0)


def _offered_spans(session: Session, study_id: int) -> Iterable[tuple[int, list[date], int, int]]:
    """(participant id, the group's delivered dates, first, end) per membership: the sessions
    ``dates[first:end]`` were offered to the participant. Computed from the two short lists (sessions
    by group, and memberships) by bisection rather than as a join of every session with every member."""
    by_group: dict[int, list[date]] = defaultdict(list)
    for gid, day in session.execute(
        select(DeliverySession.group_id, DeliverySession.delivered_on).where(
            DeliverySession.study_id == study_id, DeliverySession.status == "delivered"
        )
    ):
        by_group[gid].append(_as_date(day))  # type: ignore[arg-type]
    for days in by_group.values():
        days.sort()
    memberships = session.execute(
        select(
            GroupMembership.participant_id, GroupMembership.group_id, GroupMembership.joined_on, GroupMembership.left_on
        ).where(col(GroupMembership.group_id).in_(select(PeerGroup.id).where(PeerGroup.study_id == study_id)))
    )
    for pid, gid, joined, left in memberships:
        group_days = by_group.get(gid)
        if not group_days:
            continue
        lo = bisect_left(group_days, _as_date(joined))  # type: ignore[type-var]
        hi = len(group_days) if left is None else bisect_right(group_days, _as_date(left))  # type: ignore[type-var]
        yield pid, group_days, lo, hi


def offered_sessions(session: Session, study_id: int) -> Iterable[tuple[int, date]]:
    """(participant id, delivered date) of every session offered: delivered sessions of a group on a
    day the participant was a member (membership dates inclusive)."""
    for pid, days, lo, hi in _offered_spans(session, study_id):
        for day in days[lo:hi]:
            yield pid, day


def _totals(session: Session, study_id: int) -> dict[int, dict[str, Any]]:
    """Whole-follow-up sums per participant, each an SQL aggregate (offered sessions by bisection)."""
    out: dict[int, dict[str, Any]] = defaultdict(dict)
    offered: dict[int, int] = defaultdict(int)
    for pid, _days, lo, hi in _offered_spans(session, study_id):
        offered[pid] += hi - lo
    for pid, n in offered.items():
        out[pid]["sessions_offered"] = n
    att = session.execute(
        select(
            SessionAttendance.participant_id,
            func.count(),
            func.sum(_minutes()),
            func.min(DeliverySession.delivered_on),
            func.max(DeliverySession.delivered_on),
        )
        .join(DeliverySession, col(DeliverySession.id) == SessionAttendance.session_id)
        .where(_attended_filter(study_id))
        .group_by(col(SessionAttendance.participant_id))
    )
    for pid, n, minutes, first, last in att:
        out[pid].update(sessions_attended=n, session_minutes=int(minutes or 0), _first=[first], _last=[last])
    contacts = session.execute(
        select(
            PeerContact.participant_id,
            func.count(),
            func.sum(PeerContact.duration_minutes),
            func.min(PeerContact.on_date),
            func.max(PeerContact.on_date),
        )
        .where(PeerContact.study_id == study_id)
        .group_by(col(PeerContact.participant_id))
    )
    for pid, n, minutes, first, last in contacts:
        d = out[pid]
        d.update(contacts=n, contact_minutes=int(minutes or 0))
        d["_first"] = d.get("_first", []) + [first]
        d["_last"] = d.get("_last", []) + [last]
    forum = session.execute(
        select(
            ForumActivity.participant_id,
            func.sum(ForumActivity.posts),
            func.sum(ForumActivity.replies),
            func.sum(ForumActivity.logins),
        )
        .where(ForumActivity.study_id == study_id)
        .group_by(col(ForumActivity.participant_id))
    )
    for pid, posts, replies, logins in forum:
        out[pid].update(forum_posts=int(posts or 0), forum_replies=int(replies or 0), forum_logins=int(logins or 0))
    return out


def _as_date(value: Any) -> date | None:
    # SQLite returns MIN/MAX of a date column as text.
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _row(
    pid: int,
    code: str,
    site: str,
    arm: str | None,
    enrolled: date,
    sums: dict[str, Any],
    plan: DeliveryPlan | None,
    hide_dates: bool,
    wave: tuple[str, int | None, int] | None = None,
    cumulative: tuple[int, int] | None = None,
) -> dict[str, Any]:
    firsts = [d for d in map(_as_date, sums.get("_first", ())) if d is not None]
    lasts = [d for d in map(_as_date, sums.get("_last", ())) if d is not None]
    first, last = (min(firsts) if firsts else None), (max(lasts) if lasts else None)
    get = sums.get
    attended, session_minutes, contact_minutes = (
        int(get("sessions_attended", 0)),
        int(get("session_minutes", 0)),
        int(get("contact_minutes", 0)),
    )
    total = session_minutes + contact_minutes
    sessions, minutes = cumulative if cumulative is not None else (attended, total)
    # built in the order of COLUMNS
    return {
        "participant_id": pid,
        "study_code": code,
        "site": site,
        "arm": arm,
        "wave": wave[0] if wave else None,
        "interval_start_day": wave[1] if wave else None,
        "interval_end_day": wave[2] if wave else None,
        "sessions_offered": int(get("sessions_offered", 0)),
        "sessions_attended": attended,
        "session_minutes": session_minutes,
        "contacts": int(get("contacts", 0)),
        "contact_minutes": contact_minutes,
        "minutes_total": total,
        "forum_posts": int(get("forum_posts", 0)),
        "forum_replies": int(get("forum_replies", 0)),
        "forum_logins": int(get("forum_logins", 0)),
        "proportion_planned": round(attended / plan.planned_sessions, 4) if plan is not None else None,
        "first_exposure_day": (first - enrolled).days if first else None,
        "last_exposure_day": (last - enrolled).days if last else None,
        "first_exposure": None if hide_dates else first,
        "last_exposure": None if hide_dates else last,
        "adherent": is_adherent(plan, sessions, minutes),
    }


def participant_dose(
    session: Session, study_id: int, actor: Actor | None = None, *, by_wave: bool = False
) -> list[dict[str, Any]]:
    """Dose and adherence of every participant of a study (the actor's sites), see the module doc.

    ``actor`` None reads every site with calendar dates (the system); a de-identified actor gets no
    calendar dates (day offsets only).
    """
    people = _participants(session, study_id, actor)
    arm_plans = plans(session, study_id)
    arm_ids = {code: aid for aid, code in session.execute(select(Arm.id, Arm.code).where(Arm.study_id == study_id))}
    hide = actor is not None and deidentified(actor)
    if not by_wave:
        totals = _totals(session, study_id)
        rows = [
            _row(pid, code, site, arm, enrolled, totals.get(pid, {}), arm_plans.get(arm_ids.get(arm, -1)), hide)
            for pid, code, site, arm, enrolled in people
        ]
        return _blind(session, study_id, actor, rows, arm_ids)
    waves = session.execute(
        select(Wave.code, Wave.offset_days).where(Wave.study_id == study_id).order_by(col(Wave.offset_days))
    ).all()
    rows = list(_by_wave(session, study_id, people, waves, arm_plans, arm_ids, hide))
    return _blind(session, study_id, actor, rows, arm_ids)


def _blind(session: Session, study_id: int, actor: Actor | None, rows: list[dict[str, Any]], arm_ids) -> list:
    # A reader blind to the arms (analysts until the study is unblinded, api.sap.blinding) reads
    # neutral labels in ``arm``.
    from api.sap.blinding import arm_labels, blinded

    if not blinded(session, study_id, actor):
        return rows
    labels = arm_labels(session, study_id, actor)
    for r in rows:
        if r["arm"] is not None:
            r["arm"] = labels.get(arm_ids.get(r["arm"], -1))
    return rows


def _by_wave(session, study_id, people, waves, arm_plans, arm_ids, hide) -> Iterable[dict[str, Any]]:
    # Row-level records binned by days since enrolment; one pass per kind of record.
    enrolled_on = {pid: enrolled for pid, _c, _s, _a, enrolled in people}
    bins: dict[int, list[dict[str, Any]]] = {pid: [defaultdict(int) for _ in waves] for pid in enrolled_on}
    bounds = [(None if i == 0 else waves[i - 1][1], off) for i, (_code, off) in enumerate(waves)]

    def slot(pid: int, when: Any) -> dict[str, Any] | None:
        if pid not in bins or when is None:
            return None
        day = (_as_date(when) - enrolled_on[pid]).days
        for i, (lo, hi) in enumerate(bounds):
            if (lo is None or day > lo) and day <= hi:
                return bins[pid][i]
        return None

    for pid, when in offered_sessions(session, study_id):
        if (b := slot(pid, when)) is not None:
            b["sessions_offered"] += 1
    att = session.execute(
        select(SessionAttendance.participant_id, DeliverySession.delivered_on, _minutes())
        .join(DeliverySession, col(DeliverySession.id) == SessionAttendance.session_id)
        .where(_attended_filter(study_id))
    )
    for pid, when, minutes in att:
        if (b := slot(pid, when)) is not None:
            b["sessions_attended"] += 1
            b["session_minutes"] += int(minutes)
            b.setdefault("_first", []).append(when)
            b.setdefault("_last", []).append(when)
    contacts = session.execute(
        select(PeerContact.participant_id, PeerContact.on_date, PeerContact.duration_minutes).where(
            PeerContact.study_id == study_id
        )
    )
    for pid, when, minutes in contacts:
        if (b := slot(pid, when)) is not None:
            b["contacts"] += 1
            b["contact_minutes"] += int(minutes)
            b.setdefault("_first", []).append(when)
            b.setdefault("_last", []).append(when)
    forum = session.execute(
        select(
            ForumActivity.participant_id,
            ForumActivity.week_start,
            ForumActivity.posts,
            ForumActivity.replies,
            ForumActivity.logins,
        ).where(ForumActivity.study_id == study_id)
    )
    for pid, when, posts, replies, logins in forum:
        if (b := slot(pid, when)) is not None:
            b["forum_posts"] += posts
            b["forum_replies"] += replies
            b["forum_logins"] += logins
    for pid, code, site, arm, enrolled in people:
        plan = arm_plans.get(arm_ids.get(arm, -1))
        sessions = minutes = 0
        for (wave_code, _off), (lo, hi), sums in zip(waves, bounds, bins[pid], strict=True):
            sessions += sums.get("sessions_attended", 0)
            minutes += sums.get("session_minutes", 0) + sums.get("contact_minutes", 0)
            yield _row(pid, code, site, arm, enrolled, sums, plan, hide, (wave_code, lo, hi), (sessions, minutes))
