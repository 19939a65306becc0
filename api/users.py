"""User administration shared by the CLI and the demo (no HTTP)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from api.audit.service import record
from api.auth.models import User
from api.auth.service import Actor, create_user, issue_token
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
        after={"prefix": token[:12], "expires_at": expires_at.isoformat() if expires_at else None},
    )
    return token


def new_token_for(session: Session, email: str, expires_at: datetime | None = None, actor: Actor | None = None) -> str:
    """Issue another token for an existing user."""
    actor = actor or Actor.system()
    user = session.exec(select(User).where(User.email == email.strip().lower())).first()
    if user is None:
        raise ValueError("no user with this email")
    token = issue_token(session, user, expires_at=expires_at)
    record(
        session,
        actor,
        "create",
        "api_token",
        user.id,
        after={"prefix": token[:12], "expires_at": expires_at.isoformat() if expires_at else None},
    )
    return token
