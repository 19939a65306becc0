"""The screening log: everyone assessed for eligibility, the outcome, and the enrolled participant.

No identifier is stored here: a screened person who is not enrolled is a row with a site, a date,
an outcome and a reason category (plus a short reason text that must not name anyone); a screened
person who is enrolled points at their pseudonymous participant.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlmodel import Field, SQLModel

from api.db import UTCDateTime, utcnow

#: What came of a screening: enrolled, or excluded before randomisation for one of CONSORT's reasons.
OUTCOMES = ("enrolled", "not_eligible", "declined", "other")


class ScreeningEntry(SQLModel, table=True):
    """One person assessed for eligibility."""

    __tablename__ = "screening_entry"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id", index=True)
    screened_on: date
    outcome: str = Field(max_length=20)
    reason: str | None = Field(default=None, max_length=120)
    participant_id: int | None = Field(default=None, foreign_key="participant.id", unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
