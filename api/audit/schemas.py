"""Bodies of the audit routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class AuditEventRead(BaseModel):
    id: int
    at: datetime
    actor_id: int | None
    actor_role: str
    action: str
    entity: str
    entity_id: str
    study_id: int | None
    site_id: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reason: str | None
    request_id: str | None
    source: str


class AuditPage(BaseModel):
    """One page of events in id order; pass ``next_cursor`` back as ``cursor`` for the next page."""

    items: list[AuditEventRead]
    next_cursor: str | None
