"""Participants, the identifier vault and the randomisation tables."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from api.db import UTCDateTime, utcnow

PARTICIPANT_STATUSES = ("active", "withdrawn", "lost_to_follow_up", "completed")
# The three kinds of withdrawal a trial reports apart (CONSORT 2010 item 13b; SPIRIT 2013 item 18b):
# the column prefix of each in ``participant`` (``<prefix>_on``, ``<prefix>_reason``).
WITHDRAWAL_KINDS = {
    "intervention": "intervention_stopped",  # stopped receiving the intervention; follow-up goes on
    "follow_up": "follow_up_stopped",  # no further data collection; data so far are used
    "consent": "consent_withdrawn",  # consent withdrawn for use of data: dropped from exports and analyses
}
CHANNELS = ("email", "sms", "none")


class Participant(SQLModel, table=True):
    """A pseudonymous participant: study code, site, arm, enrolment, consent and status."""

    __table_args__ = (UniqueConstraint("study_id", "study_code"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id", index=True)
    arm_id: int | None = Field(default=None, foreign_key="arm.id")
    study_code: str = Field(max_length=40)
    enrolled_on: date
    consent_date: date
    consent_version: str = Field(max_length=40)
    randomised: bool = False
    status: str = Field(default="active", max_length=20)
    status_date: date | None = None
    status_reason: str | None = Field(default=None, max_length=2000)
    intervention_stopped_on: date | None = None
    intervention_stopped_reason: str | None = Field(default=None, max_length=2000)
    follow_up_stopped_on: date | None = None
    follow_up_stopped_reason: str | None = Field(default=None, max_length=2000)
    consent_withdrawn_on: date | None = None
    consent_withdrawn_reason: str | None = Field(default=None, max_length=2000)
    # "Entered in error": kept with its audit trail, left out of exports, analyses, reminders and counts.
    voided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    void_reason: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ParticipantContact(SQLModel, table=True):
    """Direct identifiers, kept apart from study data (pseudonymisation, GDPR Art. 4(5))."""

    __tablename__ = "participant_contact"

    participant_id: int = Field(foreign_key="participant.id", primary_key=True, ondelete="CASCADE")
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    date_of_birth: date | None = None
    preferred_channel: str = Field(default="none", max_length=10)
    opt_out: bool = False
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AllocationStratum(SQLModel, table=True):
    """The randomisation counter of one stratum (a site); locked while a participant is allocated."""

    __tablename__ = "allocation_stratum"
    __table_args__ = (UniqueConstraint("study_id", "site_id"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id")
    site_id: int = Field(foreign_key="site.id")
    allocated: int = 0


class Allocation(SQLModel, table=True):
    """One used slot of the allocation sequence (admins only)."""

    __table_args__ = (UniqueConstraint("stratum_id", "sequence"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    stratum_id: int = Field(foreign_key="allocation_stratum.id")
    sequence: int
    block: int
    block_size: int
    arm_id: int = Field(foreign_key="arm.id")
    participant_id: int = Field(foreign_key="participant.id", unique=True)
    allocated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
