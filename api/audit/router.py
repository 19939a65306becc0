"""/audit: the filtered, paginated audit trail (admins)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlmodel import Session, select

from api.audit.models import AuditEvent
from api.audit.schemas import AuditEventRead
from api.auth.dependencies import authorize
from api.auth.service import Actor
from api.db import get_session

router = APIRouter(tags=["audit"])


@router.get("/audit", response_model=list[AuditEventRead])
def list_events(actor: Actor = Depends(authorize("admin")), session: Session = Depends(get_session),
                study_id: int | None = None, entity: str | None = None, entity_id: str | None = None,
                action: str | None = None, after: int | None = Query(None, ge=0, description="last id seen"),
                limit: int = Query(100, ge=1, le=1000)):
    stmt = select(AuditEvent)
    for col, val in ((AuditEvent.study_id, study_id), (AuditEvent.entity, entity),
                     (AuditEvent.entity_id, entity_id), (AuditEvent.action, action)):
        if val is not None:
            stmt = stmt.where(col == val)
    if after is not None:
        stmt = stmt.where(AuditEvent.id > after)
    return session.exec(stmt.order_by(AuditEvent.id).limit(limit)).all()
