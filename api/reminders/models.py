"""Reminder configuration, plans per wave and the reminder outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from api.db import UTCDateTime, utcnow

REMINDER_STATUSES = ("pending", "sending", "sent", "failed", "cancelled")
PLAN_CHANNELS = ("preferred", "email", "sms")


class ReminderConfig(SQLModel, table=True):
    """Study-wide reminder settings: pause switch, quiet hours (study time zone), SMS provider.

    Quiet hours are minutes after local midnight; ``quiet_start > quiet_end`` spans midnight
    (e.g. 21:00–08:00). Both null means no quiet hours.
    """

    __tablename__ = "reminder_config"

    study_id: int = Field(foreign_key="study.id", primary_key=True)
    paused: bool = False
    quiet_start_minute: int | None = None
    quiet_end_minute: int | None = None
    sms_webhook_url: str | None = Field(default=None, max_length=500)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ReminderPlan(SQLModel, table=True):
    """The reminders of one wave: steps after the window opens, channel and message templates.

    ``steps`` is a list of ``{"offset_days": int, "offset_hours": int}`` counted in wall-clock
    time of the study's time zone from local midnight of the day the window opens; the position
    in the list is the step number of the outbox rows.
    """

    __tablename__ = "reminder_plan"
    __table_args__ = (UniqueConstraint("study_id", "wave_id"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    wave_id: int = Field(foreign_key="wave.id")
    channel: str = Field(default="preferred", max_length=10)
    steps: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    subject: str = Field(max_length=200)
    body: str = Field(max_length=4000)
    sms_body: str | None = Field(default=None, max_length=480)
    form_url: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Reminder(SQLModel, table=True):
    """One reminder in the outbox: a participant, a wave, a step of the plan.

    ``message_id`` is assigned from the row id on first claim and reused by every later attempt,
    so a message sent again after a crash carries the same ``Message-ID``.
    """

    __table_args__ = (
        UniqueConstraint("participant_id", "wave_id", "step"),
        Index("ix_reminder_status_due_at", "status", "due_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id")
    participant_id: int = Field(foreign_key="participant.id", index=True)
    wave_id: int = Field(foreign_key="wave.id")
    step: int
    channel: str = Field(max_length=10)
    due_at: datetime = Field(sa_type=UTCDateTime)
    window_opens_at: datetime = Field(sa_type=UTCDateTime)
    window_closes_at: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(default="pending", max_length=12)
    attempts: int = 0
    retry_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    claimed_by: str | None = Field(default=None, max_length=64)
    last_error: str | None = Field(default=None, max_length=500)
    cancel_reason: str | None = Field(default=None, max_length=40)
    message_id: str | None = Field(default=None, max_length=200, unique=True)
    provider_ref: str | None = Field(default=None, max_length=200)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


STAFF_STATUSES = ("pending", "sending", "sent", "failed", "cancelled")


class StaffNotification(SQLModel, table=True):
    """One email to a member of staff in the outbox (safety alerts, escalations, serious events).

    Sent by the same dispatcher, channel, lease and retry policy as participant reminders, but never
    held by a study's reminder pause or quiet hours. ``topic`` names what the message is about
    (``alert:17:raised``); with ``user_id`` it is unique, so enqueueing twice sends once. Subject and
    body are rendered when the row is written and carry no clinical content and no identifier
    beyond a participant's study code and a link; the address is read from the user at send time.
    """

    __tablename__ = "staff_notification"
    __table_args__ = (
        UniqueConstraint("topic", "user_id"),
        Index("ix_staff_notification_status_due_at", "status", "due_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int | None = Field(default=None, foreign_key="site.id")
    user_id: int = Field(foreign_key="app_user.id")
    kind: str = Field(max_length=40)
    topic: str = Field(max_length=120)
    ref_entity: str = Field(max_length=40)
    ref_id: int
    subject: str = Field(max_length=200)
    body: str = Field(max_length=4000)
    due_at: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(default="pending", max_length=12)
    attempts: int = 0
    retry_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    claimed_by: str | None = Field(default=None, max_length=64)
    last_error: str | None = Field(default=None, max_length=500)
    cancel_reason: str | None = Field(default=None, max_length=40)
    message_id: str | None = Field(default=None, max_length=200, unique=True)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
