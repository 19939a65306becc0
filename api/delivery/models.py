"""Process evaluation: the intervention as planned (TIDieR per arm, planned dose and adherence rule),
the peer supporters who deliver it (identifiers in a vault of their own), their training, the peer
groups and their members, sessions and attendance, one-to-one contacts and online-forum activity.

Dose is never stored: it is derived from sessions, attendance, contacts and forum activity
(:mod:`api.delivery.dose`).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from api.db import UTCDateTime, utcnow

#: A peer supporter's prior role: the field has no shared definition, so each is recorded as one of these.
PRIOR_ROLES = ("volunteer", "paid_peer_worker", "health_coach", "educator", "none", "other")
SUPPORTER_STATUSES = ("recruited", "in_training", "active", "paused", "left")
TRAINING_FORMATS = ("didactic", "role_play", "supervised_practice", "online", "mixed")
#: What a training record is: a module attended (initial or refresher), a competency assessment,
#: a certification, or an ongoing supervision contact.
TRAINING_KINDS = ("module", "refresher", "assessment", "certification", "supervision")
MODES = ("face_to_face", "online", "phone", "mixed")
SESSION_STATUSES = ("planned", "delivered", "cancelled")
#: Attendance of a participant at a delivered session. The first three count as attended.
ATTENDANCE = ("attended", "late", "left_early", "excused", "absent")
ATTENDED = ("attended", "late", "left_early")
CONTACT_KINDS = ("call", "message", "home_visit", "video", "other")
#: How "received the intervention" is judged per arm: sessions attended, proportion of the planned
#: sessions, or minutes of contact (sessions and one-to-one contacts), at least ``threshold``.
ADHERENCE_KINDS = ("sessions", "proportion", "minutes")


class DeliveryPlan(SQLModel, table=True):
    """An arm's planned dose and its adherence definition (used by complier analyses)."""

    __tablename__ = "delivery_plan"

    arm_id: int = Field(foreign_key="arm.id", primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    planned_sessions: int
    session_minutes: int
    frequency_days: int | None = None
    adherence_kind: str = Field(default="sessions", max_length=12)
    adherence_threshold: float
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TidierDescription(SQLModel, table=True):
    """One version of an arm's TIDieR description (items 1–9 and 11 as typed; 10 and 12 are
    generated from the records when the checklist is read)."""

    __tablename__ = "tidier_description"
    __table_args__ = (UniqueConstraint("arm_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    arm_id: int = Field(foreign_key="arm.id")
    version: int
    items: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    note: str | None = Field(default=None, max_length=2000)
    created_by: int | None = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PeerSupporter(SQLModel, table=True):
    """A peer supporter: pseudonymous code, site and arm, lived-experience profile, demographics for
    matching analyses, dates and status. Names and contact details are in :class:`PeerSupporterContact`."""

    __tablename__ = "peer_supporter"
    __table_args__ = (UniqueConstraint("study_id", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id", index=True)
    arm_id: int | None = Field(default=None, foreign_key="arm.id")
    code: str = Field(max_length=40)
    condition: str | None = Field(default=None, max_length=200)
    years_since_diagnosis: float | None = None
    prior_role: str = Field(default="none", max_length=20)
    gender: str | None = Field(default=None, max_length=40)
    age_band: str | None = Field(default=None, max_length=20)
    ethnicity: str | None = Field(default=None, max_length=100)
    start_date: date
    end_date: date | None = None
    status: str = Field(default="recruited", max_length=20)
    status_reason: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PeerSupporterContact(SQLModel, table=True):
    """A peer supporter's direct identifiers, kept apart like participants' (never shown to analysts)."""

    __tablename__ = "peer_supporter_contact"

    supporter_id: int = Field(foreign_key="peer_supporter.id", primary_key=True, ondelete="CASCADE")
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    date_of_birth: date | None = None
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TrainingProgramme(SQLModel, table=True):
    """A training programme for peer supporters; trainers are described by role and qualification."""

    __tablename__ = "training_programme"
    __table_args__ = (UniqueConstraint("study_id", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    code: str = Field(max_length=40)
    title: str = Field(max_length=300)
    description: str | None = Field(default=None, max_length=4000)
    trainers: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TrainingModule(SQLModel, table=True):
    """A curriculum module: learning objectives, hours, format, materials and the programme theory it serves."""

    __tablename__ = "training_module"
    __table_args__ = (UniqueConstraint("programme_id", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    programme_id: int = Field(foreign_key="training_programme.id", index=True)
    code: str = Field(max_length=40)
    title: str = Field(max_length=300)
    position: int = 0
    objectives: list[str] = Field(default_factory=list, sa_type=JSON)
    hours: float
    format: str = Field(max_length=20)
    materials: list[str] = Field(default_factory=list, sa_type=JSON)
    theory: str | None = Field(default=None, max_length=2000)


class TrainingRecord(SQLModel, table=True):
    """One training event of a supporter: a module attended, a refresher, a competency assessment
    (score and assessor), a certification, or a supervision contact."""

    __tablename__ = "training_record"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    supporter_id: int = Field(foreign_key="peer_supporter.id", index=True)
    module_id: int | None = Field(default=None, foreign_key="training_module.id")
    kind: str = Field(max_length=20)
    on_date: date
    hours: float = 0.0
    score: float | None = None
    assessor: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PeerGroup(SQLModel, table=True):
    """A peer group of one site and arm, face-to-face or online."""

    __tablename__ = "peer_group"
    __table_args__ = (UniqueConstraint("study_id", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id", index=True)
    arm_id: int = Field(foreign_key="arm.id")
    code: str = Field(max_length=40)
    name: str | None = Field(default=None, max_length=200)
    mode: str = Field(default="face_to_face", max_length=20)
    supporter_ids: list[int] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class GroupMembership(SQLModel, table=True):
    """A participant's membership of a group from ``joined_on`` to ``left_on`` (inclusive; open when None).
    A participant is in at most one group at a time; switching group closes one and opens another."""

    __tablename__ = "group_membership"

    id: int | None = Field(default=None, primary_key=True)
    group_id: int = Field(foreign_key="peer_group.id", index=True)
    participant_id: int = Field(foreign_key="participant.id", index=True)
    joined_on: date
    left_on: date | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class DeliverySession(SQLModel, table=True):
    """A group session: planned date, delivered date and duration, mode, topic and curriculum module,
    supporter; or cancelled with a reason (then it counts in no one's planned dose)."""

    __tablename__ = "delivery_session"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id")
    arm_id: int = Field(foreign_key="arm.id")
    group_id: int = Field(foreign_key="peer_group.id", index=True)
    supporter_id: int | None = Field(default=None, foreign_key="peer_supporter.id")
    number: int | None = None
    planned_date: date
    delivered_on: date | None = None
    duration_minutes: int | None = None
    mode: str = Field(default="face_to_face", max_length=20)
    topic: str | None = Field(default=None, max_length=300)
    curriculum_module: str | None = Field(default=None, max_length=100)
    status: str = Field(default="planned", max_length=12)
    cancel_reason: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SessionAttendance(SQLModel, table=True):
    """A participant's attendance at a delivered session; ``minutes`` when late or leaving early."""

    __tablename__ = "session_attendance"
    __table_args__ = (UniqueConstraint("session_id", "participant_id"),)

    id: int | None = Field(default=None, primary_key=True)
    session_id: int = Field(foreign_key="delivery_session.id", index=True)
    participant_id: int = Field(foreign_key="participant.id", index=True)
    status: str = Field(max_length=12)
    minutes: int | None = None
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PeerContact(SQLModel, table=True):
    """A one-to-one contact between a supporter and a participant: call, message, home visit, video."""

    __tablename__ = "peer_contact"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id")
    participant_id: int = Field(foreign_key="participant.id", index=True)
    supporter_id: int | None = Field(default=None, foreign_key="peer_supporter.id")
    kind: str = Field(max_length=12)
    on_date: date
    duration_minutes: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ForumActivity(SQLModel, table=True):
    """A participant's online-forum activity in the week starting ``week_start`` (a Monday)."""

    __tablename__ = "forum_activity"
    __table_args__ = (UniqueConstraint("participant_id", "week_start"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id")
    participant_id: int = Field(foreign_key="participant.id")
    week_start: date
    posts: int = 0
    replies: int = 0
    logins: int = 0
    imported_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
