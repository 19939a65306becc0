"""Licensed instrument content uploaded by an administrator: item wordings and calibration tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Text
from sqlmodel import Field, SQLModel

from api.db import UTCDateTime, utcnow

KINDS = ("wording", "calibration")


class LicensedContent(SQLModel, table=True):
    """One upload (a CSV as received); the newest row of an (instrument, kind, scale) applies.

    Earlier rows stay: they are what the scores computed before a replacement were based on.
    """

    __tablename__ = "licensed_content"
    __table_args__ = (Index("ix_licensed_content_instrument_kind", "instrument", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    instrument: str = Field(max_length=40)
    kind: str = Field(max_length=20)
    scale: str | None = Field(default=None, max_length=40)
    content: str = Field(sa_type=Text)
    sha256: str = Field(max_length=64)
    rows: int = 0
    uploaded_by: int | None = Field(default=None, foreign_key="app_user.id")
    uploaded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
