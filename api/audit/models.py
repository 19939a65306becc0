"""The append-only audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index
from sqlmodel import Field, SQLModel

from api.db import UTCDateTime, utcnow

SOURCES = ("api", "web", "import", "system")


class AuditEvent(SQLModel, table=True):
    """One create, update or delete: who, in which role, when (UTC), on what, old and new state.

    The table is insert-only: the migration installs triggers that refuse UPDATE and DELETE.
    Identifier (contact) changes record field names only, never values.
    """

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_entity", "entity", "entity_id"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor_id: int | None = Field(default=None)
    actor_role: str = Field(max_length=20)
    action: str = Field(max_length=40)
    entity: str = Field(max_length=40)
    entity_id: str = Field(max_length=64)
    study_id: int | None = Field(default=None, index=True)
    site_id: int | None = Field(default=None)
    before: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    after: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    reason: str | None = Field(default=None, max_length=2000)
    request_id: str | None = Field(default=None, max_length=64)
    source: str = Field(default="api", max_length=10)
