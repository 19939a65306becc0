"""The statistical analysis plan (one row per version) and the study's unblinding record."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from api.db import UTCDateTime, utcnow

PLAN_STATUSES = ("draft", "locked")


class AnalysisPlan(SQLModel, table=True):
    """One version of a study's statistical analysis plan.

    A draft is editable; locking records ``content_hash`` (SHA-256 of the canonical serialisation,
    :func:`api.sap.service.canonical`) and makes the row immutable. Versions count from 1.
    """

    __tablename__ = "analysis_plan"
    __table_args__ = (UniqueConstraint("study_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    version: int
    status: str = Field(default="draft", max_length=10)
    content: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    content_hash: str | None = Field(default=None, max_length=64)
    locked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    locked_by: int | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class StudyUnblinding(SQLModel, table=True):
    """The study's unblinding: present once an admin has unblinded it (irreversible)."""

    __tablename__ = "study_unblinding"

    study_id: int = Field(foreign_key="study.id", primary_key=True)
    unblinded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    unblinded_by: int | None = None
    reason: str = Field(max_length=2000)
