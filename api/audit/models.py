"""The append-only audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Integer
from sqlmodel import Field, SQLModel

from api.db import UTCDateTime, utcnow

SOURCES = ("api", "web", "console", "import", "system")


class AuditEvent(SQLModel, table=True):
    """One create, update or delete: who, in which role, when (UTC), on what, old and new state.

    The table is insert-only: the migration installs triggers that refuse UPDATE and DELETE, and
    the service's database role may only INSERT and SELECT (README, "Database roles"). ``mac`` is a
    keyed MAC of the row written with it (:mod:`api.audit.chain`). Identifier (contact) changes
    record field names only, never values.
    """

    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_entity", "entity", "entity_id"),
        # A copy of a genuine row (with its MAC) cannot be inserted a second time.
        Index("uq_audit_event_mac", "mac", unique=True),
    )

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
    mac: str | None = Field(default=None, max_length=100)


class AuditSeal(SQLModel, table=True):
    """One link of the hash chain over the audit trail: row ``event_id`` is link ``seq``, and
    ``chain`` is the keyed hash of the previous link and this row's MAC (:mod:`api.audit.chain`).
    Insert-only like the trail itself."""

    __tablename__ = "audit_seal"

    seq: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    # No foreign key: the link is checked cryptographically, and a key would turn an owner's
    # TRUNCATE of audit_event into a foreign-key error before the append-only trigger speaks.
    event_id: int = Field(sa_column=Column(Integer, nullable=False, unique=True))
    chain: str = Field(max_length=64)
    sealed_at: datetime = Field(sa_type=UTCDateTime)
