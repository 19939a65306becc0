"""Bodies of the licensed-content routes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class LicensedRead(BaseModel):
    """One upload; the licensed text itself is never returned."""

    id: int
    instrument: str
    kind: Literal["wording", "calibration"]
    scale: str | None = Field(None, description="the lookup scale a calibration applies to")
    rows: int = Field(description="data rows in the CSV")
    sha256: str = Field(description="SHA-256 of the stored file, to compare with the licensee's copy")
    uploaded_at: datetime
