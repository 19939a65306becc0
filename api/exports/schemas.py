"""Bodies of the export settings."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Shape = Literal[
    "long",
    "wide",
    "items",
    "safety",
    "delivery",
    "dose",
    "delivery_sessions",
    "supporter_training",
    "fidelity",
    "adaptations",
]
Format = Literal["csv", "parquet", "dta", "sav", "json"]
DateMode = Literal["relative", "shift"]


class ExportSettingsIn(BaseModel):
    """``date_mode``: ``relative`` (days since enrolment) or ``shift`` (per-participant secret shift).
    ``free_text_items``: ``instrument.item`` codes withheld from de-identified exports."""

    model_config = ConfigDict(extra="forbid")

    date_mode: DateMode | None = None
    free_text_items: list[str] | None = Field(default=None, max_length=500)


class ExportSettingsRead(BaseModel):
    study_id: int
    date_mode: DateMode
    free_text_items: list[str]
    updated_at: datetime


class ExportReceipt(BaseModel):
    """What the server sent for one streamed export (``GET /studies/{id}/export-receipts/{request_id}``)."""

    request_id: str
    study_id: int
    complete: bool = Field(description="false: the stream ended early (failure or client gone); discard the file")
    error: str | None = Field(None, description="the kind of failure when not complete")
    shape: str | None
    format: str | None
    rows: int | None
    bytes: int | None = Field(description="bytes sent; compare with the bytes received")
    sha256: str | None = Field(description="SHA-256 (hex) of the bytes sent; compare with the file's")
    at: datetime
