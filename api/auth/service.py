"""Users and API tokens.

A token is ``plk_`` followed by 43 URL-safe characters (32 random bytes); the database keeps its
SHA-256 only, so a leaked table does not leak credentials.

Examples
--------
>>> token = new_token()
>>> token.startswith("plk_") and len(hash_token(token)) == 64
True
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_
from sqlmodel import Session, SQLModel, select

from api.auth import policy
from api.auth.models import ApiToken, User, UserSite
from api.db import utcnow

TOKEN_PREFIX = "plk_"


@dataclass(frozen=True)
class Actor:
    """Who is acting: the current user (or the system), as services and the audit trail see it.

    ``site_ids`` limits a site-scoped role (coordinators); what each role may do is
    :mod:`api.auth.policy`.
    """

    user_id: int | None
    role: str
    site_ids: frozenset[int] = field(default_factory=frozenset)
    email: str | None = None
    request_id: str | None = None
    source: str = "api"

    @property
    def is_admin(self) -> bool:
        return policy.rule(self).admin

    def sees_site(self, site_id: int | None) -> bool:
        """Whether this actor may see records of ``site_id``."""
        return policy.sees_site(self, site_id)

    def sees_contacts(self, site_id: int | None) -> bool:
        """Whether identifiers of a participant at ``site_id`` may be shown (never to analysts)."""
        return policy.sees_identifiers(self, site_id)

    @classmethod
    def system(cls, source: str = "system", request_id: str | None = None) -> Actor:
        """The actor of command-line and background work."""
        return cls(user_id=None, role=policy.SYSTEM, source=source, request_id=request_id)


def new_token(redcap: bool = False) -> str:
    """A fresh random token (shown once, never stored).

    ``redcap=True`` gives REDCap's format, 32 upper-case hexadecimal characters (128 random bits),
    which REDCap clients such as PyCap insist on; it is an API token like any other.
    """
    if redcap:
        return secrets.token_hex(16).upper()
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_prefix(token: str) -> str:
    """What lists and the audit trail show of a token: ``plk_`` and 8 characters, or 6 of a
    REDCap-format token (whose 128 bits have no prefix to spare)."""
    return token[:12] if token.startswith(TOKEN_PREFIX) else token[:6]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(session: Session, email: str, role: str, site_ids: list[int] | None = None) -> User:
    """Create a user (flushes; the caller commits)."""
    if role not in policy.ROLES:
        raise ValueError(f"role must be one of {', '.join(policy.ROLES)}")
    user = User(email=email.strip().lower(), role=role)
    session.add(user)
    session.flush()
    for sid in site_ids or []:
        session.add(UserSite(user_id=user.id, site_id=sid))
    session.flush()
    return user


def issue_token(session: Session, user: User, expires_at: datetime | None = None, redcap: bool = False) -> str:
    """Store a new token for ``user`` and return its clear text (the only time it exists)."""
    token = new_token(redcap)
    session.add(
        ApiToken(user_id=user.id, prefix=token_prefix(token), token_hash=hash_token(token), expires_at=expires_at)
    )
    session.flush()
    return token


def actor_and_row(session: Session, token: str, model: type[SQLModel] | None, key: Any) -> tuple[Actor | None, Any]:
    """The actor of ``token`` and the ``model`` row with primary key ``key``, in one query.

    The token is checked on every request (nothing is cached, so a revocation takes effect at
    once); reading the row of the path in the same statement saves a round trip. The row is
    returned whatever the token, and is None when absent: callers check the actor first. A
    coordinator's sites come in the same statement, one result row per site.
    """
    stmt = (
        select(User, ApiToken.expires_at, ApiToken.revoked_at, UserSite.site_id)
        .select_from(ApiToken)
        .join(User, ApiToken.user_id == User.id)
        .outerjoin(UserSite, and_(UserSite.user_id == User.id, User.role == "coordinator"))
    )
    if model is not None:
        stmt = stmt.add_columns(model).outerjoin(model, model.id == key)
    rows = session.exec(stmt.where(ApiToken.token_hash == hash_token(token))).all()
    if not rows:
        return None, None
    user, expires_at, revoked_at = rows[0][0], rows[0][1], rows[0][2]
    row = rows[0][4] if model is not None else None
    if not token_in_force(user.active, expires_at, revoked_at):
        return None, row
    sites = frozenset(r[3] for r in rows if r[3] is not None)
    return Actor(user_id=user.id, role=user.role, site_ids=sites, email=user.email), row


def token_in_force(active: bool, expires_at: datetime | None, revoked_at: datetime | None) -> bool:
    """Whether a token found by its hash admits its user: an active user, not revoked, not expired."""
    return active and revoked_at is None and (expires_at is None or expires_at > utcnow())
