"""Bodies of the link routes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.studies.schemas import Code

LinkState = Literal["none", "active", "revoked", "expired", "not_open", "completed"]


class LinkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wave: Code = Field(description="wave code, e.g. m3")


class OfferedInstrument(BaseModel):
    """Whether the web form can offer an instrument of the wave, and why not."""

    instrument: str
    offered: bool
    reason: str | None = Field(None, description="why the form cannot show it (e.g. licensed wording not loaded)")
    completed: bool


class LinkStatus(BaseModel):
    wave: str
    state: LinkState
    issued_at: datetime | None
    expires_at: datetime | None
    opens_at: datetime
    closes_at: datetime
    instruments: list[OfferedInstrument]
    url: str | None = Field(None, description="the live personal link (the one reminders send), if any")


class LinkIssued(LinkStatus):
    url: str = Field(description="the personal link")
    token: str
