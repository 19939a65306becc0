"""Responses (raw answers), their scores and idempotency keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from api.db import UTCDateTime, utcnow

# rest: the REST API; web: the participant form; staff: entered in the console (paper form, interview); import
MODES = ("rest", "web", "staff", "import")


class Response(SQLModel, table=True):
    """One instrument filled at one wave: raw answers as JSON and the instrument version scored.

    There is one current row per participant, wave and instrument; an amendment rewrites it and
    keeps the previous version in the audit trail.
    """

    __table_args__ = (UniqueConstraint("participant_id", "wave_id", "instrument"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id")
    participant_id: int = Field(foreign_key="participant.id", index=True)
    wave_id: int = Field(foreign_key="wave.id")
    instrument: str = Field(max_length=40)
    instrument_version: str = Field(max_length=40)
    answers: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    external_scores: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    status: str = Field(default="complete", max_length=20)
    mode: str = Field(default="rest", max_length=10)
    entered_by: int | None = Field(default=None, foreign_key="app_user.id")
    completed_at: datetime = Field(sa_type=UTCDateTime)
    out_of_window: bool = False
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Score(SQLModel, table=True):
    """A scale score computed at submission by the instrument library."""

    __table_args__ = (UniqueConstraint("response_id", "scale"),)

    id: int | None = Field(default=None, primary_key=True)
    response_id: int = Field(foreign_key="response.id", ondelete="CASCADE")
    scale: str = Field(max_length=60)
    value: float | None = None
    band: str | None = Field(default=None, max_length=80)
    level: int | None = None
    items_answered: int = 0
    items_expected: int = 0
    prorated: bool = False
    missing_reason: str | None = Field(default=None, max_length=300)
    flags: list[str] = Field(default_factory=list, sa_type=JSON)


class IdempotencyKey(SQLModel, table=True):
    """A client-chosen key of a submission: a retry with the key returns the response it created."""

    __tablename__ = "idempotency_key"
    __table_args__ = (UniqueConstraint("participant_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    participant_id: int = Field(foreign_key="participant.id")
    key: str = Field(max_length=200)
    request_hash: str = Field(max_length=64)
    response_id: int = Field(foreign_key="response.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
