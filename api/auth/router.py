"""/me: who the token belongs to."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.auth.dependencies import READ_ROLES, authorize
from api.auth.schemas import Me
from api.auth.service import Actor

router = APIRouter(tags=["auth"])


@router.get("/me", response_model=Me)
def me(actor: Actor = Depends(authorize(*READ_ROLES))):
    return Me(id=actor.user_id, email=actor.email, role=actor.role, site_ids=sorted(actor.site_ids))
