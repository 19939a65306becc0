"""Study-specific instruments imported from a REDCap data dictionary.

The instrument registry lives in process memory; the dictionary rows of each imported form are kept
here so every process re-registers them at start-up (:func:`api.interop.service.load_custom_instruments`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Text
from sqlmodel import Field, SQLModel

from api.db import UTCDateTime, utcnow


class StudyInstrument(SQLModel, table=True):
    """One custom instrument (a REDCap form) and the dictionary CSV it was built from."""

    __tablename__ = "study_instrument"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    code: str = Field(max_length=40, unique=True)
    dictionary_csv: str = Field(sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
