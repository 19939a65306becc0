"""Writing the audit trail in the caller's transaction, and reading it (filtered, in pages).

Examples
--------
>>> snapshot({"a": 1, "when": __import__("datetime").date(2026, 1, 2)})
{'a': 1, 'when': '2026-01-02'}
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from sqlmodel import Session, SQLModel, select

from api.audit import chain
from api.audit.models import AuditEvent
from api.audit.schemas import AuditEventRead, AuditPage
from api.auth.service import Actor
from api.db import utcnow
from api.errors import Unprocessable
from api.jsonable import jsonable
from api.studies.models import Study


def snapshot(obj: SQLModel | dict[str, Any] | None, *, exclude: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """A JSON-safe copy of a row (or dict) for ``before``/``after``."""
    if obj is None:
        return None
    data = obj if isinstance(obj, dict) else obj.model_dump()
    return {k: jsonable(v) for k, v in data.items() if k not in exclude}


def record(
    session: Session,
    actor: Actor,
    action: str,
    entity: str,
    entity_id: Any,
    *,
    study_id: int | None = None,
    site_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
) -> AuditEvent:
    """Add one audit event to the session (committed with the change it describes).

    Parameters
    ----------
    actor : Actor
        Who acts; ``actor.source`` (api, web, import, system) and ``actor.request_id`` are copied.
    action : str
        ``create``, ``update``, ``delete``, ``amend``, ``randomise``, ``status_change`` …
    entity, entity_id
        Table-level name and key of the record changed.
    before, after : dict, optional
        State before and after (see :func:`snapshot`); for identifiers pass field names only.

    Examples
    --------
    >>> record(session, actor, "update", "study", 3, study_id=3,
    ...        before={"title": "Old"}, after={"title": "New"})  # doctest: +SKIP
    """
    event = AuditEvent(
        **event_values(
            chain.key_for(session.get_bind()),
            actor,
            action,
            entity,
            entity_id,
            study_id=study_id,
            site_id=site_id,
            before=before,
            after=after,
            reason=reason,
        )
    )
    session.add(event)
    return event


def event_values(
    key: bytes,
    actor: Actor,
    action: str,
    entity: str,
    entity_id: Any,
    *,
    study_id: int | None = None,
    site_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The columns of one audit row (id aside), its MAC under ``key`` included.

    :func:`record` adds them to a session; a statement that writes the row itself (the
    submission fast path, :mod:`api.responses.fastpath`) inserts them as they are, so both
    carry the same content and a MAC that ``peerlens audit verify`` checks alike.
    """
    values: dict[str, Any] = {
        "at": at or utcnow(),
        "actor_id": actor.user_id,
        "actor_role": actor.role,
        "action": action,
        "entity": entity,
        "entity_id": str(entity_id),
        "study_id": study_id,
        "site_id": site_id,
        # As the JSON column will give them back, so the MAC covers exactly what is stored.
        "before": chain.jsonable(before),
        "after": chain.jsonable(after),
        "reason": reason,
        "request_id": actor.request_id,
        "source": actor.source,
    }
    # Keyed per row, no lock and no read: concurrent writers never wait for each other here.
    values["mac"] = chain.row_mac(key, values)
    return values


def list_events(
    session: Session,
    *,
    study_id: int | None = None,
    entity: str | None = None,
    entity_id: str | None = None,
    action: str | None = None,
    after: int | None = None,
    limit: int = 100,
) -> list[AuditEventRead]:
    """Events in id order after the id ``after``, filtered by the fields given."""
    stmt = select(AuditEvent)
    for col, val in (
        (AuditEvent.study_id, study_id),
        (AuditEvent.entity, entity),
        (AuditEvent.entity_id, entity_id),
        (AuditEvent.action, action),
    ):
        if val is not None:
            stmt = stmt.where(col == val)
    if after is not None:
        stmt = stmt.where(AuditEvent.id > after)
    rows = session.exec(stmt.order_by(AuditEvent.id).limit(limit)).all()
    return [AuditEventRead.model_validate(e, from_attributes=True) for e in rows]


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"a1:{last_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, value = raw.split(":", 1)
        if tag != "a1" or not value.isdigit():
            raise ValueError
        return int(value)
    except (ValueError, UnicodeDecodeError):
        raise Unprocessable(["query", "cursor"], "not a cursor returned by this endpoint", "invalid_cursor") from None


def study_events(
    session: Session,
    study: Study,
    *,
    entity: str | None = None,
    entity_id: str | None = None,
    actor_id: int | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> AuditPage:
    """One page of a study's events, oldest first; ``cursor`` is the previous page's ``next_cursor``.

    Raises
    ------
    Unprocessable
        ``until`` not later than ``since``, or a cursor this function did not make.
    """
    if since is not None and until is not None and since >= until:
        raise Unprocessable(["query", "until"], "until must be later than since", "empty_range")
    stmt = select(AuditEvent).where(AuditEvent.study_id == study.id)
    for col, val in (
        (AuditEvent.entity, entity),
        (AuditEvent.entity_id, entity_id),
        (AuditEvent.actor_id, actor_id),
        (AuditEvent.action, action),
    ):
        if val is not None:
            stmt = stmt.where(col == val)
    if since is not None:
        stmt = stmt.where(AuditEvent.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEvent.at < until)
    if cursor is not None:
        stmt = stmt.where(AuditEvent.id > _decode_cursor(cursor))
    rows = session.exec(stmt.order_by(AuditEvent.id).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(
        items=[AuditEventRead.model_validate(r, from_attributes=True) for r in rows],
        next_cursor=_encode_cursor(rows[-1].id) if more else None,
    )
