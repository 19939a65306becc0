"""Studies and their design: sites, arms and waves."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from api.db import UTCDateTime, utcnow

DESIGNS = ("rct", "cluster_rct", "cohort", "realist_trial")
STUDY_STATUSES = ("planning", "recruiting", "follow_up", "closed")
ARM_KINDS = ("intervention", "active_comparator", "control")


class Study(SQLModel, table=True):
    """A peer-support evaluation. ``randomisation_seed`` is shown to admins only."""

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=300)
    # What participants see (reminder subjects, forms): the internal title may name a diagnosis.
    public_title: str | None = Field(default=None, max_length=300)
    design: str = Field(max_length=20)
    blinding: str = Field(default="none", max_length=40)
    planned_sample_size: int | None = None
    power_assumptions: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    time_zone: str = Field(default="UTC", max_length=64)
    status: str = Field(default="planning", max_length=20)
    randomisation_seed: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Site(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("study_id", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    code: str = Field(max_length=40)
    name: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Arm(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("study_id", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    code: str = Field(max_length=40)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=20)
    allocation_ratio: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Wave(SQLModel, table=True):
    """A scheduled timepoint: ``offset_days`` after enrolment, open from ``window_before_days``
    before to ``window_after_days`` after the due date, with the instruments due."""

    __table_args__ = (UniqueConstraint("study_id", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    code: str = Field(max_length=40)
    offset_days: int
    window_before_days: int = 0
    window_after_days: int = 0
    instruments: list[str] = Field(default_factory=list, sa_type=JSON)
    # Administered by staff (coordinator tasks), never offered on the participant form nor reminded.
    staff_instruments: list[str] | None = Field(default=None, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SiteContact(SQLModel, table=True):
    """How participants reach a site's study team: shown on every page of the participant form."""

    __tablename__ = "site_contact"

    site_id: int = Field(foreign_key="site.id", primary_key=True, ondelete="CASCADE")
    phone: str = Field(max_length=40)
    hours: str | None = Field(default=None, max_length=200)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
