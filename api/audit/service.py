"""Writing the audit trail, in the caller's transaction.

Examples
--------
>>> snapshot({"a": 1, "when": __import__("datetime").date(2026, 1, 2)})
{'a': 1, 'when': '2026-01-02'}
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, SQLModel

from api.audit.models import AuditEvent
from api.auth.service import Actor
from api.jsonable import jsonable


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
        actor_id=actor.user_id,
        actor_role=actor.role,
        action=action,
        entity=entity,
        entity_id=str(entity_id),
        study_id=study_id,
        site_id=site_id,
        before=before,
        after=after,
        reason=reason,
        request_id=actor.request_id,
        source=actor.source,
    )
    session.add(event)
    return event
