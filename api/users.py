"""User administration shared by the CLI, the /users routes and the demo.

Every change is audited in the caller's transaction (the caller commits): a user created, a token
issued or revoked, a user deactivated or reactivated.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from api.audit.service import record
from api.auth import policy
from api.auth.models import ApiToken, User, UserSite
from api.auth.schemas import TokenInfo, UserInfo
from api.auth.service import Actor, create_user, issue_token, token_prefix
from api.db import utcnow
from api.studies.models import Site


def resolve_sites(session: Session, refs: list[str]) -> list[int]:
    """Site ids for ``CODE`` (every study's site with that code) or ``STUDY_ID:CODE`` references."""
    ids: list[int] = []
    for ref in refs:
        if ":" in ref:
            study_id, code = ref.split(":", 1)
            stmt = select(Site.id).where(Site.study_id == int(study_id), Site.code == code)
        else:
            stmt = select(Site.id).where(Site.code == ref)
        found = session.exec(stmt).all()
        if not found:
            raise ValueError(f"no site {ref!r}")
        ids.extend(found)
    return sorted(set(ids))


def create_with_token(
    session: Session,
    email: str,
    role: str,
    sites: list[str],
    expires_at: datetime | None = None,
    actor: Actor | None = None,
) -> str:
    """Create a user scoped to ``sites`` and return a fresh token; audited as a system action."""
    actor = actor or Actor.system()
    if session.exec(select(User.id).where(User.email == email.strip().lower())).first() is not None:
        raise ValueError("a user with this email exists; use `peerlens users token EMAIL`")
    site_ids = resolve_sites(session, sites)
    user = create_user(session, email, role, site_ids)
    token = issue_token(session, user, expires_at=expires_at)
    record(session, actor, "create", "user", user.id, after={"role": role, "site_ids": site_ids})
    record(
        session,
        actor,
        "create",
        "api_token",
        user.id,
        after={"prefix": token_prefix(token), "expires_at": expires_at.isoformat() if expires_at else None},
    )
    return token


def new_token_for(
    session: Session, email: str, expires_at: datetime | None = None, actor: Actor | None = None, redcap: bool = False
) -> str:
    """Issue another token for an existing user (``redcap=True``: in REDCap's 32-character format)."""
    actor = actor or Actor.system()
    user = session.exec(select(User).where(User.email == email.strip().lower())).first()
    if user is None:
        raise ValueError("no user with this email")
    token = issue_token(session, user, expires_at=expires_at, redcap=redcap)
    record(
        session,
        actor,
        "create",
        "api_token",
        user.id,
        after={"prefix": token_prefix(token), "expires_at": expires_at.isoformat() if expires_at else None},
    )
    return token


# ---- administration: list, revoke, deactivate (CLI and /users routes) --------------------------


def _user(session: Session, ref: str | int) -> User:
    """A user by id or email; ValueError when there is none."""
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        user = session.get(User, int(ref))
    else:
        user = session.exec(select(User).where(User.email == ref.strip().lower())).first()
    if user is None:
        raise LookupError("no such user")
    return user


def list_users(session: Session) -> list[UserInfo]:
    """Every user with role, sites, state and token metadata (prefixes only: tokens are hashed)."""
    users = session.exec(select(User).order_by(User.id)).all()
    sites: dict[int, list[str]] = {}
    for uid, code, study_id in session.exec(
        select(UserSite.user_id, Site.code, Site.study_id).join(Site, Site.id == UserSite.site_id)
    ).all():
        sites.setdefault(uid, []).append(f"{study_id}:{code}")
    tokens: dict[int, list[TokenInfo]] = {}
    now = utcnow()
    for t in session.exec(select(ApiToken).order_by(ApiToken.id)).all():
        state = "revoked" if t.revoked_at else ("expired" if t.expires_at and t.expires_at <= now else "live")
        tokens.setdefault(t.user_id, []).append(
            TokenInfo(
                id=t.id,
                prefix=t.prefix,
                state=state,
                created_at=t.created_at,
                expires_at=t.expires_at,
                revoked_at=t.revoked_at,
            )
        )
    return [
        UserInfo(
            id=u.id,
            email=u.email,
            role=u.role,
            active=u.active,
            sites=sorted(sites.get(u.id, [])),
            created_at=u.created_at,
            tokens=tokens.get(u.id, []),
        )
        for u in users
    ]


def revoke_tokens(
    session: Session, user_ref: str | int, actor: Actor, *, token: str | int | None = None, reason: str | None = None
) -> list[int]:
    """Revoke one token of a user (by id or by the prefix shown at creation, e.g. ``plk_AbC123xy``)
    or, with ``token=None``, every live one. Returns the ids revoked (audited; the caller commits)."""
    policy.ensure_admin(actor, "revoke tokens")
    user = _user(session, user_ref)
    stmt = select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
    if token is not None:
        key = str(token)
        stmt = stmt.where(ApiToken.id == int(key)) if key.isdigit() else stmt.where(ApiToken.prefix == key[:12])
    rows = session.exec(stmt).all()
    if token is not None and not rows:
        raise LookupError("no live token with this id or prefix for this user")
    now = utcnow()
    for t in rows:
        t.revoked_at = now
        session.add(t)
        record(
            session,
            actor,
            "revoke",
            "api_token",
            t.id,
            before={"revoked_at": None},
            after={"user_id": user.id, "prefix": t.prefix, "revoked_at": now.isoformat()},
            reason=reason,
        )
    session.flush()
    return [t.id for t in rows]


def set_active(session: Session, user_ref: str | int, actor: Actor, active: bool, reason: str | None = None) -> User:
    """Deactivate (every token stops working at once) or reactivate a user (audited).

    The last active admin cannot be deactivated: nobody could administer the service after.
    """
    policy.ensure_admin(actor, "deactivate or reactivate users")
    user = _user(session, user_ref)
    if user.active == active:
        return user
    if not active and user.role == "admin":
        others = session.exec(
            select(User.id).where(User.role == "admin", User.active.is_(True), User.id != user.id)
        ).first()
        if others is None:
            raise PermissionError("the last active admin cannot be deactivated")
    user.active = active
    session.add(user)
    record(
        session,
        actor,
        "reactivate" if active else "deactivate",
        "user",
        user.id,
        before={"active": not active},
        after={"active": active},
        reason=reason,
    )
    session.flush()
    return user
