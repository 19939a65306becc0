"""Per-study export settings: how dates reach analysts and which free-text items are withheld."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON
from sqlmodel import Field, SQLModel

from api.db import UTCDateTime, utcnow

DATE_MODES = ("relative", "shift")


class ExportSettings(SQLModel, table=True):
    """How a study's data are de-identified for analysts.

    ``date_mode`` ``relative`` (default) replaces calendar dates by days since enrolment; ``shift``
    moves every date of a participant back by the same secret 0-364 days. ``free_text_items`` lists
    ``instrument.item`` codes a coordinator flagged as free text that may identify someone.
    """

    __tablename__ = "export_settings"

    study_id: int = Field(foreign_key="study.id", primary_key=True)
    date_mode: str = Field(default="relative", max_length=10)
    free_text_items: list[str] = Field(default_factory=list, sa_type=JSON)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
