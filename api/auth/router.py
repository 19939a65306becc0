"""/me (who the token belongs to) and /users (administration: list, revoke, deactivate)."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Path
from sqlmodel import Session

from api import users
from api.auth.dependencies import authorize
from api.auth.policy import ADMIN, ROLES
from api.auth.schemas import Me, Reason, Revoked, UserInfo
from api.auth.service import Actor
from api.db import end_read, get_session
from api.errors import Conflict, NotFound

router = APIRouter(tags=["auth"])
UserId = Path(ge=1, le=2**31 - 1)


@router.get("/me", response_model=Me)
def me(actor: Actor = Depends(authorize(*ROLES))):
    return Me(id=actor.user_id, email=actor.email, role=actor.role, site_ids=sorted(actor.site_ids))


@router.get("/users", response_model=list[UserInfo])
def list_users(actor: Actor = Depends(authorize(*ADMIN)), session: Session = Depends(get_session)):
    """Every user with role, sites, active state and tokens (prefix, state, dates; never the token)."""
    out = users.list_users(session)
    end_read(session)
    return out


def _one(session: Session, user_id: int) -> UserInfo:
    return next(u for u in users.list_users(session) if u.id == user_id)


@router.post("/users/{user_id}/deactivate", response_model=UserInfo)
def deactivate(
    user_id: int = UserId,
    body: Reason | None = Body(None),
    actor: Actor = Depends(authorize(*ADMIN)),
    session: Session = Depends(get_session),
):
    """Deactivate a user: every token of theirs stops working at once (audited)."""
    try:
        users.set_active(session, user_id, actor, False, reason=body.reason if body else None)
    except LookupError:
        raise NotFound(["path", "user_id"], "no such user") from None
    except PermissionError as exc:
        raise Conflict(["path", "user_id"], str(exc), "last_admin") from None
    out = _one(session, user_id)
    session.commit()
    return out


@router.post("/users/{user_id}/reactivate", response_model=UserInfo)
def reactivate(
    user_id: int = UserId,
    body: Reason | None = Body(None),
    actor: Actor = Depends(authorize(*ADMIN)),
    session: Session = Depends(get_session),
):
    """Reactivate a user (their tokens that are neither revoked nor expired work again; audited)."""
    try:
        users.set_active(session, user_id, actor, True, reason=body.reason if body else None)
    except LookupError:
        raise NotFound(["path", "user_id"], "no such user") from None
    out = _one(session, user_id)
    session.commit()
    return out


@router.post("/users/{user_id}/tokens/revoke", response_model=Revoked)
def revoke_all(
    user_id: int = UserId,
    body: Reason | None = Body(None),
    actor: Actor = Depends(authorize(*ADMIN)),
    session: Session = Depends(get_session),
):
    """Revoke every live token of a user (audited, one event per token)."""
    try:
        ids = users.revoke_tokens(session, user_id, actor, reason=body.reason if body else None)
    except LookupError:
        raise NotFound(["path", "user_id"], "no such user") from None
    session.commit()
    return Revoked(user_id=user_id, revoked=ids)


@router.post("/users/{user_id}/tokens/{token_id}/revoke", response_model=Revoked)
def revoke_one(
    user_id: int = UserId,
    token_id: int = Path(ge=1, le=2**31 - 1),
    body: Reason | None = Body(None),
    actor: Actor = Depends(authorize(*ADMIN)),
    session: Session = Depends(get_session),
):
    """Revoke one token (its id is listed by ``GET /users``; audited)."""
    try:
        ids = users.revoke_tokens(session, user_id, actor, token=token_id, reason=body.reason if body else None)
    except LookupError as exc:
        loc = ["path", "user_id"] if str(exc) == "no such user" else ["path", "token_id"]
        raise NotFound(loc, str(exc)) from None
    session.commit()
    return Revoked(user_id=user_id, revoked=ids)
