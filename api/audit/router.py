"""/audit: the filtered, paginated audit trail (admins)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlmodel import Session, select

from api.audit.models import AuditEvent
from api.audit.schemas import AuditEventRead
from api.auth.dependencies import authorize
from api.auth.policy import ADMIN
from api.auth.service import Actor
from api.db import end_read, get_session

router = APIRouter(tags=["audit"])


@router.get("/audit", response_model=list[AuditEventRead])
def list_events(
    actor: Actor = Depends(authorize(*ADMIN)),
    session: Session = Depends(get_session),
    study_id: int | None = None,
    entity: str | None = None,
    entity_id: str | None = None,
    action: str | None = None,
    after: int | None = Query(None, ge=0, le=2**31 - 1, description="last id seen"),
    limit: int = Query(100, ge=1, le=1000),
):
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
    out = [
        AuditEventRead.model_validate(e, from_attributes=True)
        for e in session.exec(stmt.order_by(AuditEvent.id).limit(limit)).all()
    ]
    end_read(session)
    return out


# --- /studies/{id}/audit: one study's trail, filtered, with an opaque keyset cursor -------------

import base64  # noqa: E402

from pydantic import AwareDatetime, BaseModel  # noqa: E402

from api.errors import Unprocessable  # noqa: E402
from api.studies.dependencies import valid_study  # noqa: E402
from api.studies.models import Study  # noqa: E402


class AuditPage(BaseModel):
    """One page of events in id order; pass ``next_cursor`` back as ``cursor`` for the next page."""

    items: list[AuditEventRead]
    next_cursor: str | None


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
        raise Unprocessable(["query", "cursor"], "not a cursor returned by this endpoint", "invalid_cursor")


@router.get("/studies/{study_id}/audit", response_model=AuditPage)
def study_audit(
    actor: Actor = Depends(authorize(*ADMIN)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    entity: str | None = Query(None, max_length=40, description="e.g. participant, response"),
    entity_id: str | None = Query(None, max_length=64),
    actor_id: int | None = Query(None, ge=0, le=2**31 - 1, description="user id of who acted"),
    action: str | None = Query(None, max_length=40, description="create, update, amend, revoke …"),
    since: AwareDatetime | None = Query(None, description="events at or after (with a UTC offset)"),
    until: AwareDatetime | None = Query(None, description="events before (with a UTC offset)"),
    cursor: str | None = Query(None, max_length=200),
    limit: int = Query(100, ge=1, le=1000),
):
    """The audit trail of one study (admins), oldest first, in pages of ``limit``."""
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
