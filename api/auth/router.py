"""/me: who the token belongs to."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.auth.dependencies import authorize
from api.auth.policy import READERS
from api.auth.schemas import Me
from api.auth.service import Actor

router = APIRouter(tags=["auth"])


@router.get("/me", response_model=Me)
def me(actor: Actor = Depends(authorize(*READERS))):
    return Me(id=actor.user_id, email=actor.email, role=actor.role, site_ids=sorted(actor.site_ids))
