"""Peer groups and their members, sessions (planned, delivered, cancelled) and attendance, one-to-one
contacts and forum-activity imports. Services flush; routers and commands commit; every change is
audited and site-scoped."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert
from sqlmodel import Session, col, select

from api.audit.service import record, snapshot
from api.auth.policy import ensure_can_write, ensure_site_access, site_scoped
from api.auth.service import Actor
from api.db import utcnow
from api.delivery.models import (
    ATTENDED,
    DeliverySession,
    ForumActivity,
    GroupMembership,
    PeerContact,
    PeerGroup,
    SessionAttendance,
)
from api.delivery.schemas import (
    AttendanceIn,
    AttendanceRead,
    ContactIn,
    ContactRead,
    ForumImportRead,
    GroupIn,
    GroupRead,
    MemberIn,
    MemberPatch,
    MemberRead,
    SessionIn,
    SessionPatch,
    SessionRead,
)
from api.delivery.service import (
    arm_by_code,
    check_not_before_study,
    check_window,
    codes,
    site_by_code,
    supporter_in_study,
)
from api.errors import Conflict, NotFound, Unprocessable
from api.participants.models import Participant
from api.studies.models import Arm, Site, Study

FORUM_COLUMNS = ("study_code", "week_start", "posts", "replies", "logins")
MAX_FORUM_ROWS = 200_000


def study_today(study: Study) -> date:
    """Today in the study's time zone (a record dated after it is in the future)."""
    return datetime.now(ZoneInfo(study.time_zone)).date()


def _study(session: Session, study_id: int) -> Study:
    study = session.get(Study, study_id)
    if study is None:  # by foreign key
        raise LookupError(f"study {study_id} is missing")
    return study


# ---- groups and members -------------------------------------------------------------------------


def get_group(session: Session, group_id: int, actor: Actor, loc=("path", "group_id")) -> PeerGroup:
    g = session.get(PeerGroup, group_id)
    if g is None:
        raise NotFound(list(loc), "group not found", "not_found")
    ensure_site_access(actor, g.site_id, loc=loc, what="group")
    return g


def create_group(session: Session, study: Study, body: GroupIn, actor: Actor) -> PeerGroup:
    ensure_can_write(actor)
    site = site_by_code(session, study.id, body.site)
    ensure_site_access(actor, site.id, loc=("body", "site"), what="site")
    arm = arm_by_code(session, study.id, body.arm)
    for i, sid in enumerate(body.supporter_ids):
        s = supporter_in_study(session, study.id, sid, ["body", "supporter_ids", i])
        if s.site_id != site.id:
            raise Unprocessable(["body", "supporter_ids", i], "the supporter works at another site", "other_site")
    if session.exec(select(PeerGroup.id).where(PeerGroup.study_id == study.id, PeerGroup.code == body.code)).first():
        raise Conflict(["body", "code"], "a group with this code exists in the study", "duplicate")
    g = PeerGroup(
        study_id=study.id,
        site_id=site.id,
        arm_id=arm.id,
        code=body.code,
        name=body.name,
        mode=body.mode,
        supporter_ids=sorted(set(body.supporter_ids)),
    )
    session.add(g)
    session.flush()
    record(session, actor, "create", "peer_group", g.id, study_id=study.id, site_id=g.site_id, after=snapshot(g))
    return g


def add_member(session: Session, g: PeerGroup, body: MemberIn, actor: Actor) -> GroupMembership:
    """Add a participant of the group's site and arm; they may be in one group at a time."""
    ensure_can_write(actor)
    # locked on PostgreSQL: two memberships of one participant cannot be added at once
    p = session.get(Participant, body.participant_id, with_for_update=True)
    loc = ["body", "participant_id"]
    if p is None or p.study_id != g.study_id or p.site_id != g.site_id:
        raise Unprocessable(loc, "no participant with this id at the group's site", "unknown_participant")
    if p.arm_id != g.arm_id:
        raise Unprocessable(loc, "the participant is not allocated to the group's arm", "other_arm")
    if body.joined_on < p.enrolled_on:
        raise Unprocessable(
            ["body", "joined_on"], "joined_on is before the participant's enrolment", "before_enrolment"
        )
    others = session.exec(select(GroupMembership).where(GroupMembership.participant_id == p.id)).all()
    for m in others:
        if m.left_on is None or m.left_on >= body.joined_on:
            raise Conflict(
                ["body", "joined_on"],
                "the participant is in a group on this date: close that membership first (left_on)",
                "overlapping_membership",
            )
    m = GroupMembership(group_id=g.id, participant_id=p.id, joined_on=body.joined_on)
    session.add(m)
    session.flush()
    record(
        session, actor, "create", "group_membership", m.id, study_id=g.study_id, site_id=g.site_id, after=snapshot(m)
    )
    return m


def close_member(session: Session, g: PeerGroup, member_id: int, body: MemberPatch, actor: Actor) -> GroupMembership:
    ensure_can_write(actor)
    m = session.get(GroupMembership, member_id)
    if m is None or m.group_id != g.id:
        raise NotFound(["path", "member_id"], "membership not found", "not_found")
    if body.left_on < m.joined_on:
        raise Unprocessable(["body", "left_on"], "left_on is before joined_on", "before_joined")
    later = session.exec(
        select(func.count())
        .select_from(SessionAttendance)
        .join(DeliverySession, col(DeliverySession.id) == SessionAttendance.session_id)
        .where(
            SessionAttendance.participant_id == m.participant_id,
            DeliverySession.group_id == g.id,
            col(DeliverySession.delivered_on) > body.left_on,
        )
    ).one()
    if later:
        raise Conflict(["body", "left_on"], "attendance is recorded in this group after left_on", "attendance_after")
    before = snapshot(m)
    m.left_on = body.left_on
    session.add(m)
    session.flush()
    record(
        session,
        actor,
        "update",
        "group_membership",
        m.id,
        study_id=g.study_id,
        site_id=g.site_id,
        before=before,
        after=snapshot(m),
    )
    return m


def group_read(session: Session, g: PeerGroup) -> GroupRead:
    sites, arms = codes(session, Site, g.study_id), codes(session, Arm, g.study_id)
    rows = session.exec(
        select(GroupMembership, Participant.study_code)
        .join(Participant, col(Participant.id) == GroupMembership.participant_id)
        .where(GroupMembership.group_id == g.id)
        .order_by(col(GroupMembership.id))
    ).all()
    return GroupRead(
        id=g.id,
        code=g.code,
        site=sites[g.site_id],
        arm=arms[g.arm_id],
        name=g.name,
        mode=g.mode,
        supporter_ids=g.supporter_ids,
        members=[
            MemberRead(
                id=m.id, participant_id=m.participant_id, study_code=code, joined_on=m.joined_on, left_on=m.left_on
            )
            for m, code in rows
        ],
    )


def list_groups(session: Session, study: Study, actor: Actor) -> list[GroupRead]:
    q = select(PeerGroup).where(PeerGroup.study_id == study.id).order_by(col(PeerGroup.id))
    if site_scoped(actor):
        q = q.where(col(PeerGroup.site_id).in_(actor.site_ids or {-1}))
    return [group_read(session, g) for g in session.exec(q)]


def member_on(session: Session, group_id: int, participant_id: int, day: date) -> bool:
    """Whether the participant was a member of the group on ``day``."""
    return (
        session.exec(
            select(GroupMembership.id).where(
                GroupMembership.group_id == group_id,
                GroupMembership.participant_id == participant_id,
                col(GroupMembership.joined_on) <= day,
                (col(GroupMembership.left_on).is_(None)) | (col(GroupMembership.left_on) >= day),
            )
        ).first()
        is not None
    )


# ---- sessions and attendance --------------------------------------------------------------------


def get_session_row(session: Session, session_id: int, actor: Actor, loc=("path", "session_id")) -> DeliverySession:
    s = session.get(DeliverySession, session_id)
    if s is None:
        raise NotFound(list(loc), "session not found", "not_found")
    ensure_site_access(actor, s.site_id, loc=loc, what="session")
    return s


def _status(s: DeliverySession) -> str:
    if s.cancel_reason:
        return "cancelled"
    return "delivered" if s.delivered_on is not None else "planned"


def _check_session(session: Session, study: Study, values: dict[str, Any], today: date) -> None:
    check_window(study, {("body", "planned_date"): values["planned_date"]}, happened=False)
    check_window(study, {("body", "delivered_on"): values.get("delivered_on")})
    check_not_before_study(session, study, values["planned_date"], ["body", "planned_date"])
    if values.get("delivered_on") is not None:
        check_not_before_study(session, study, values["delivered_on"], ["body", "delivered_on"])
        if values["delivered_on"] > today:
            raise Unprocessable(["body", "delivered_on"], "delivered_on is in the future", "in_future")
        if values.get("duration_minutes") is None:
            raise Unprocessable(["body", "duration_minutes"], "a delivered session records its duration", "missing")
        if values.get("cancel_reason"):
            raise Unprocessable(["body", "cancel_reason"], "a delivered session cannot be cancelled", "inconsistent")


def create_session(session: Session, study: Study, body: SessionIn, actor: Actor) -> DeliverySession:
    """Plan (or record as delivered) a session of a group (audited)."""
    ensure_can_write(actor)
    g = session.get(PeerGroup, body.group_id)
    if g is None or g.study_id != study.id:
        raise Unprocessable(["body", "group_id"], "no group with this id in the study", "unknown_group")
    ensure_site_access(actor, g.site_id, loc=("body", "group_id"), what="group")
    if body.supporter_id is not None:
        supporter_in_study(session, study.id, body.supporter_id, ["body", "supporter_id"])
    values = body.model_dump()
    _check_session(session, study, values, study_today(study))
    s = DeliverySession(
        study_id=study.id, site_id=g.site_id, arm_id=g.arm_id, **{**values, "mode": body.mode or g.mode}
    )
    s.status = _status(s)
    session.add(s)
    session.flush()
    record(session, actor, "create", "delivery_session", s.id, study_id=study.id, site_id=s.site_id, after=snapshot(s))
    return s


def update_session(session: Session, s: DeliverySession, body: SessionPatch, actor: Actor) -> DeliverySession:
    """Record delivery, correct details, or cancel with a reason (audited)."""
    ensure_can_write(actor)
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise Unprocessable(["body"], "nothing to change", "no_changes")
    if changes.get("planned_date", 1) is None:
        raise Unprocessable(["body", "planned_date"], "this field cannot be emptied", "missing")
    study = _study(session, s.study_id)
    if changes.get("supporter_id") is not None:
        supporter_in_study(session, study.id, changes["supporter_id"], ["body", "supporter_id"])
    merged = s.model_dump() | changes
    if merged.get("cancel_reason") and merged.get("delivered_on") is not None and "delivered_on" not in changes:
        raise Unprocessable(["body", "cancel_reason"], "a delivered session cannot be cancelled", "inconsistent")
    _check_session(session, study, merged, study_today(study))
    has_attendance = session.exec(
        select(func.count()).select_from(SessionAttendance).where(SessionAttendance.session_id == s.id)
    ).one()
    if has_attendance and (merged.get("cancel_reason") or merged.get("delivered_on") is None):
        raise Conflict(["body"], "attendance is recorded for this session", "has_attendance")
    before = snapshot(s)
    for k, v in changes.items():
        setattr(s, k, v)
    s.status = _status(s)
    s.updated_at = utcnow()
    session.add(s)
    session.flush()
    record(
        session,
        actor,
        "update",
        "delivery_session",
        s.id,
        study_id=s.study_id,
        site_id=s.site_id,
        before=before,
        after=snapshot(s),
    )
    return s


def session_reads(session: Session, rows: list[DeliverySession]) -> list[SessionRead]:
    if not rows:
        return []
    sites, arms = codes(session, Site, rows[0].study_id), codes(session, Arm, rows[0].study_id)
    counts = dict(
        session.exec(
            select(SessionAttendance.session_id, func.count())
            .where(
                col(SessionAttendance.session_id).in_([r.id for r in rows]), col(SessionAttendance.status).in_(ATTENDED)
            )
            .group_by(col(SessionAttendance.session_id))
        ).all()
    )
    return [
        SessionRead(
            **r.model_dump(exclude={"study_id", "site_id", "arm_id", "created_at", "updated_at"}),
            site=sites[r.site_id],
            arm=arms[r.arm_id],
            attended=counts.get(r.id, 0),
        )
        for r in rows
    ]


def list_sessions(
    session: Session, study: Study, actor: Actor, group_id: int | None = None, status: str | None = None
) -> list[SessionRead]:
    q = select(DeliverySession).where(DeliverySession.study_id == study.id)
    if group_id is not None:
        q = q.where(DeliverySession.group_id == group_id)
    if status is not None:
        q = q.where(DeliverySession.status == status)
    if site_scoped(actor):
        q = q.where(col(DeliverySession.site_id).in_(actor.site_ids or {-1}))
    return session_reads(
        session, list(session.exec(q.order_by(col(DeliverySession.planned_date), col(DeliverySession.id))))
    )


def record_attendance(session: Session, s: DeliverySession, body: AttendanceIn, actor: Actor) -> int:
    """The register of a delivered session: each participant must be a member of the group on the
    session's date; entries replace earlier ones of the same participants (audited as one event)."""
    ensure_can_write(actor)
    # Read again inside the write transaction (locked on PostgreSQL): concurrent registers of one
    # session queue instead of racing on the unique (session, participant) key.
    locked = session.get(DeliverySession, s.id, with_for_update=True, populate_existing=True)
    if locked is None:
        raise NotFound(["path", "session_id"], "session not found", "not_found")
    s = locked
    if s.status != "delivered" or s.delivered_on is None:
        raise Unprocessable(
            ["path", "session_id"],
            f"attendance is recorded for delivered sessions (this one is {s.status})",
            "not_delivered",
        )
    day = s.delivered_on
    ids = [e.participant_id for e in body.records]
    members = set(
        session.exec(
            select(GroupMembership.participant_id).where(
                GroupMembership.group_id == s.group_id,
                col(GroupMembership.participant_id).in_(ids),
                col(GroupMembership.joined_on) <= day,
                (col(GroupMembership.left_on).is_(None)) | (col(GroupMembership.left_on) >= day),
            )
        ).all()
    )
    seen: set[int] = set()
    for i, e in enumerate(body.records):
        loc: list[str | int] = ["body", "records", i]
        if e.participant_id not in members:
            raise Unprocessable(
                loc + ["participant_id"], "not a member of the session's group on its date", "not_in_group"
            )
        if e.participant_id in seen:
            raise Unprocessable(loc + ["participant_id"], "the participant appears twice", "duplicate")
        seen.add(e.participant_id)
        if e.status in ("excused", "absent") and e.minutes:
            raise Unprocessable(loc + ["minutes"], "an absent participant has no minutes", "inconsistent")
        if e.minutes is not None and s.duration_minutes is not None and e.minutes > s.duration_minutes:
            raise Unprocessable(loc + ["minutes"], "more minutes than the session lasted", "out_of_range")
    existing = {
        a.participant_id: a
        for a in session.exec(
            select(SessionAttendance).where(
                SessionAttendance.session_id == s.id, col(SessionAttendance.participant_id).in_(ids)
            )
        )
    }
    before = {str(p): [a.status, a.minutes] for p, a in existing.items()}
    now = utcnow()
    new = [
        {
            "session_id": s.id,
            "participant_id": e.participant_id,
            "status": e.status,
            "minutes": e.minutes,
            "updated_at": now,
        }
        for e in body.records
        if e.participant_id not in existing
    ]
    if new:  # one multi-row INSERT for a register
        session.execute(insert(SessionAttendance), new)
    for e in body.records:
        a = existing.get(e.participant_id)
        if a is not None:
            a.status, a.minutes, a.updated_at = e.status, e.minutes, now
            session.add(a)
    session.flush()
    record(
        session,
        actor,
        "update" if existing else "create",
        "session_attendance",
        s.id,
        study_id=s.study_id,
        site_id=s.site_id,
        before=before or None,
        after={str(e.participant_id): [e.status, e.minutes] for e in body.records},
    )
    return len(body.records)


def list_attendance(session: Session, s: DeliverySession) -> list[AttendanceRead]:
    rows = session.exec(
        select(SessionAttendance, Participant.study_code)
        .join(Participant, col(Participant.id) == SessionAttendance.participant_id)
        .where(SessionAttendance.session_id == s.id)
        .order_by(col(Participant.study_code))
    ).all()
    return [
        AttendanceRead(participant_id=a.participant_id, study_code=c, status=a.status, minutes=a.minutes)
        for a, c in rows
    ]


# ---- one-to-one contacts and forum activity -----------------------------------------------------


def add_contact(session: Session, p: Participant, body: ContactIn, actor: Actor) -> PeerContact:
    ensure_can_write(actor)
    ensure_site_access(actor, p.site_id, loc=("path", "participant_id"), what="participant")
    check_window(_study(session, p.study_id), {("body", "on_date"): body.on_date})
    if body.on_date < p.enrolled_on:
        raise Unprocessable(["body", "on_date"], "on_date is before the participant's enrolment", "before_enrolment")
    if body.on_date > study_today(_study(session, p.study_id)):
        raise Unprocessable(["body", "on_date"], "on_date is in the future", "in_future")
    if body.supporter_id is not None:
        supporter_in_study(session, p.study_id, body.supporter_id, ["body", "supporter_id"])
    c = PeerContact(study_id=p.study_id, site_id=p.site_id, participant_id=p.id, **body.model_dump())
    session.add(c)
    session.flush()
    record(session, actor, "create", "peer_contact", c.id, study_id=p.study_id, site_id=p.site_id, after=snapshot(c))
    return c


def list_contacts(session: Session, study: Study, actor: Actor) -> list[ContactRead]:
    q = (
        select(PeerContact, Participant.study_code)
        .join(Participant, col(Participant.id) == PeerContact.participant_id)
        .where(PeerContact.study_id == study.id)
        .order_by(col(PeerContact.on_date), col(PeerContact.id))
    )
    if site_scoped(actor):
        q = q.where(col(PeerContact.site_id).in_(actor.site_ids or {-1}))
    return [ContactRead(study_code=code, **c.model_dump()) for c, code in session.exec(q)]


def _int(value: str, loc: list[str | int]) -> int:
    try:
        n = int(value.strip() or "0")
    except ValueError:
        raise Unprocessable(loc, "not a whole number", "int_parsing") from None
    if not 0 <= n <= 100_000:
        raise Unprocessable(loc, "must be between 0 and 100000", "out_of_range")
    return n


def import_forum(session: Session, study: Study, text: str, actor: Actor) -> ForumImportRead:
    """Import weekly forum activity (``study_code, week_start, posts, replies, logins``).

    All or nothing: the first bad cell is a 422 naming ``["body", <line>, <column>]`` and nothing is
    stored. A row for a participant and week already imported replaces it. Coordinators import their
    own sites' participants only. Audited as one event with the counts.
    """
    ensure_can_write(actor)
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in FORUM_COLUMNS if c not in header]
    if missing:
        raise Unprocessable(["body", 1, missing[0]], f"missing column {missing[0]}", "missing_column")
    reader.fieldnames = header
    people = {
        code: (pid, site_id, enrolled)
        for pid, code, site_id, enrolled in session.exec(
            select(Participant.id, Participant.study_code, Participant.site_id, Participant.enrolled_on).where(
                Participant.study_id == study.id
            )
        )
    }
    parsed: dict[tuple[int, date], tuple[int, int, int, int]] = {}
    today = study_today(study)
    for line, row in enumerate(reader, start=2):
        if line - 1 > MAX_FORUM_ROWS:
            raise Unprocessable(["body"], f"more than {MAX_FORUM_ROWS} rows", "too_many_rows")
        code = (row.get("study_code") or "").strip()
        who = people.get(code)
        if who is None or (site_scoped(actor) and who[1] not in actor.site_ids):
            raise Unprocessable(
                ["body", line, "study_code"], "no participant with this study code", "unknown_participant"
            )
        try:
            week = date.fromisoformat((row.get("week_start") or "").strip())
        except ValueError:
            raise Unprocessable(["body", line, "week_start"], "not a date (YYYY-MM-DD)", "date_parsing") from None
        if week.weekday() != 0:
            raise Unprocessable(["body", line, "week_start"], "weeks start on a Monday", "not_monday")
        if week + timedelta(days=6) < who[2]:
            raise Unprocessable(["body", line, "week_start"], "the week ends before enrolment", "before_enrolment")
        if week > today:
            raise Unprocessable(["body", line, "week_start"], "the week is in the future", "in_future")
        counts = tuple(_int(row.get(c) or "", ["body", line, c]) for c in ("posts", "replies", "logins"))
        if (who[0], week) in parsed:
            raise Unprocessable(["body", line, "week_start"], "this participant's week appears twice", "duplicate")
        parsed[(who[0], week)] = (who[1], *counts)
    if not parsed:
        raise Unprocessable(["body"], "no rows", "empty")
    existing = {
        (f.participant_id, f.week_start): f
        for f in session.exec(
            select(ForumActivity).where(
                ForumActivity.study_id == study.id,
                col(ForumActivity.participant_id).in_({pid for pid, _ in parsed}),
            )
        )
    }
    created = updated = 0
    now = utcnow()
    for (pid, week), (site_id, posts, replies, logins) in parsed.items():
        f = existing.get((pid, week))
        if f is None:
            session.add(
                ForumActivity(
                    study_id=study.id,
                    site_id=site_id,
                    participant_id=pid,
                    week_start=week,
                    posts=posts,
                    replies=replies,
                    logins=logins,
                    imported_at=now,
                )
            )
            created += 1
        else:
            f.posts, f.replies, f.logins, f.imported_at = posts, replies, logins, now
            session.add(f)
            updated += 1
    session.flush()
    record(
        session,
        actor,
        "import",
        "forum_activity",
        study.id,
        study_id=study.id,
        after={"rows": len(parsed), "created": created, "updated": updated},
    )
    return ForumImportRead(rows=len(parsed), created=created, updated=updated)
