"""/audit and /studies/{id}/audit: the filtered, paginated audit trail (admins)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime
from sqlmodel import Session

from api.audit import service
from api.audit.schemas import AuditEventRead, AuditPage
from api.auth.dependencies import authorize
from api.auth.policy import ADMIN
from api.auth.service import Actor
from api.db import end_read, get_session
from api.studies.dependencies import valid_study
from api.studies.models import Study

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
    out = service.list_events(
        session, study_id=study_id, entity=entity, entity_id=entity_id, action=action, after=after, limit=limit
    )
    end_read(session)
    return out


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
    page = service.study_events(
        session,
        study,
        entity=entity,
        entity_id=entity_id,
        actor_id=actor_id,
        action=action,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
    end_read(session)
    return page
