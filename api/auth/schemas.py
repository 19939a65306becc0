"""Bodies of the auth routes."""

from __future__ import annotations

from pydantic import BaseModel


class Me(BaseModel):
    id: int | None
    email: str | None
    role: str
    site_ids: list[int]
