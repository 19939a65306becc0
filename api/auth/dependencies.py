"""Authentication and authorisation dependencies.

Every protected route declares the roles it admits with :func:`authorize`; the dependency object
keeps them in ``.roles`` so that a test (or the docs) can list a route × role matrix from
``app.routes``.

Who may do what is decided in :mod:`api.auth.policy`; this module only applies it to requests.

Examples
--------
>>> dep = authorize("admin", "coordinator")
>>> dep.roles
('admin', 'coordinator')
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from api.auth.policy import ROLES
from api.auth.service import Actor, actor_and_row
from api.db import end_read, get_session
from api.errors import Forbidden, Unauthorized

_bearer = HTTPBearer(auto_error=False, description="API token printed by `peerlens users create`")


def resolve_actor(request: Request, credentials: HTTPAuthorizationCredentials | None, session: Session) -> Actor:
    """The actor behind the bearer token (looked up once per request, then cached on the request).

    Sync, for dependencies that already run in a worker thread: a path dependency that resolves
    the actor itself saves the separate thread hop of :func:`authenticated`.
    """
    cached = getattr(request.state, "actor", None)
    if cached is not None:
        return cached
    found, _ = resolve_actor_and_row(request, credentials, session, None, None)
    return found


def resolve_actor_and_row(
    request: Request, credentials: HTTPAuthorizationCredentials | None, session: Session, model, key
) -> tuple[Actor, Any]:
    """:func:`resolve_actor` plus the ``model`` row ``key`` of the path, read in the same query.

    The token is still judged first: a missing or bad token is a 401 whatever the row.
    """
    found, row = actor_and_row(session, bearer_token(credentials), model, key)
    end_read(session)
    if found is None:
        raise invalid_token()
    return admit(request, found.user_id, found.role, found.site_ids, found.email), row


def bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    """The token of the Authorization header; 401 when there is none."""
    if credentials is None or not credentials.credentials:
        raise Unauthorized(["header", "Authorization"], "a bearer token is required", "not_authenticated")
    return credentials.credentials


def invalid_token() -> Unauthorized:
    return Unauthorized(["header", "Authorization"], "unknown, revoked or expired token", "invalid_token")


def admit(request: Request, user_id: int | None, role: str, site_ids: frozenset[int], email: str | None) -> Actor:
    """The actor of a valid token, with the request's id, cached on the request for later dependencies."""
    rid = getattr(request.state, "request_id", None) or uuid.uuid4().hex
    actor = Actor(user_id=user_id, role=role, site_ids=site_ids, email=email, request_id=rid, source="api")
    request.state.actor = actor
    return actor


async def authenticated(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    session: Session = Depends(get_session),
) -> Actor:
    """The actor behind the bearer token, whatever its role (cached on the request).

    Path dependencies such as ``valid_study`` use it for site scoping; :func:`authorize` adds the
    role check. Both share one lookup per request. The lookup runs in a worker thread; once the
    actor is cached (e.g. by ``valid_participant``) this costs no thread hop at all.
    """
    cached = getattr(request.state, "actor", None)
    if cached is not None:
        return cached
    return await run_in_threadpool(resolve_actor, request, credentials, session)


class Authorize:
    """Dependency returning the current :class:`~api.auth.service.Actor` if its role is admitted."""

    def __init__(self, *roles: str):
        unknown = set(roles) - set(ROLES)
        if unknown or not roles:
            raise ValueError(f"roles must be among {ROLES}")
        self.roles = tuple(roles)

    def __repr__(self) -> str:
        return f"authorize{self.roles!r}"

    # async: a pure check, so it runs on the event loop instead of costing a worker-thread hop
    async def __call__(self, request: Request, actor: Actor = Depends(authenticated)) -> Actor:
        if actor.role not in self.roles:
            raise Forbidden(
                ["header", "Authorization"],
                f"role {actor.role} may not {request.method} this resource",
                "role_not_allowed",
            )
        return actor


def authorize(*roles: str) -> Authorize:
    """Build the dependency admitting ``roles``, usually a set of :mod:`api.auth.policy`.

    Use as ``actor: Actor = Depends(authorize(*STAFF))``.
    """
    return Authorize(*roles)


def route_roles(route) -> tuple[str, ...] | None:
    """The roles a route admits through :func:`authorize` (searched through its dependencies), or
    None for a route without a rule; the access tests build the route × role matrix from it."""

    def walk(dep):
        if isinstance(dep.call, Authorize):
            return dep.call.roles
        for sub in dep.dependencies:
            found = walk(sub)
            if found:
                return found
        return None

    return walk(route.dependant)
