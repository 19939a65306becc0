"""Bodies of the auth routes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Me(BaseModel):
    id: int | None
    email: str | None
    role: str
    site_ids: list[int]


class TokenInfo(BaseModel):
    """A token as administrators see it: its prefix and state, never the token."""

    id: int
    prefix: str
    state: Literal["live", "expired", "revoked"]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class UserInfo(BaseModel):
    id: int
    email: str
    role: str
    active: bool
    sites: list[str] = Field(description="STUDY_ID:SITE_CODE of a coordinator's sites")
    created_at: datetime
    tokens: list[TokenInfo]


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=2000, description="recorded in the audit trail")


class Revoked(BaseModel):
    user_id: int
    revoked: list[int] = Field(description="ids of the tokens revoked by this request")
