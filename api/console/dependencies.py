"""Who is signed in to the console, and the one rule that renders every console page.

:class:`ConsoleUser` subclasses :class:`~api.auth.dependencies.Authorize`, so the route × role
matrix reads the console routes' roles from ``app.routes`` like any REST route's. Without a live
session a page redirects to the sign-in page (303); a role the route does not admit gets a 403
page. API tokens are not accepted here, and the cookie is not accepted by the REST routes.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlmodel import Session

from api.auth.dependencies import Authorize
from api.auth.policy import READERS, rule
from api.auth.service import Actor
from api.console import auth
from api.db import end_read, get_session

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
STATIC_DIR = Path(__file__).parent / "static"

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


class SignInRequired(Exception):
    """No live console session: the handler redirects to the sign-in page."""

    def __init__(self, next_path: str, reason: str = ""):
        self.next_path = next_path
        self.reason = reason


class NotAdmitted(Exception):
    """Signed in, but the route does not admit the role."""


def _secure(request: Request) -> bool:
    return request.app.state.settings.base_url.startswith("https://")


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    settings = request.app.state.settings
    response.set_cookie(
        auth.COOKIE,
        auth.sign_cookie(settings.secret_key, token, int(time.time())),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/console",
        max_age=settings.console_max_hours * 3600,
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(auth.COOKIE, path="/console", httponly=True, samesite="strict", secure=_secure(request))


def _lookup(request: Request, session: Session) -> Actor:
    settings = request.app.state.settings
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    found = auth.read_cookie(settings.secret_key, request.cookies.get(auth.COOKIE))
    if found is None:
        raise SignInRequired(here)
    token, seen = found
    if time.time() - seen > settings.console_idle_minutes * 60:
        raise SignInRequired(here, "idle")
    rid = getattr(request.state, "request_id", None) or uuid.uuid4().hex
    actor = auth.session_actor(session, token, max_age_seconds=settings.console_max_hours * 3600, request_id=rid)
    end_read(session)
    if actor is None:
        raise SignInRequired(here, "ended")
    request.state.actor = actor
    request.state.console_token = token
    return actor


class ConsoleUser(Authorize):
    """Dependency: the signed-in console user, if the route admits their role."""

    def __repr__(self) -> str:
        return f"console_user{self.roles!r}"

    async def __call__(self, request: Request, session: Session = Depends(get_session)) -> Actor:  # type: ignore[override]
        actor: Actor | None = getattr(request.state, "actor", None)
        if actor is None or getattr(request.state, "console_token", None) is None:
            actor = await run_in_threadpool(_lookup, request, session)
        if actor.role not in self.roles:
            raise NotAdmitted()
        return actor


def console_user(*roles: str) -> ConsoleUser:
    return ConsoleUser(*roles)


def csrf(request: Request) -> str:
    return auth.csrf_token(request.app.state.settings.secret_key, request.state.console_token)


def csrf_ok(request: Request, value: Any) -> bool:
    token = getattr(request.state, "console_token", None)
    return token is not None and auth.csrf_ok(request.app.state.settings.secret_key, token, value)


def page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """Render a console page; a signed-in page also renews the session cookie (the idle clock)."""
    actor: Actor | None = getattr(request.state, "actor", None)
    signed_in = actor is not None and getattr(request.state, "console_token", None) is not None
    base = {
        "actor": actor if signed_in else None,
        "csrf": csrf(request) if signed_in else None,
        "is_staff": signed_in and rule(actor).writes,  # type: ignore[arg-type]
        "idle_minutes": request.app.state.settings.console_idle_minutes,
    }
    response = templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code, headers=HEADERS)
    if signed_in:
        set_session_cookie(request, response, request.state.console_token)
    return response


def redirect(request: Request, url: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303, headers=HEADERS)
    if getattr(request.state, "console_token", None) is not None:
        set_session_cookie(request, response, request.state.console_token)
    return response


def install(app) -> None:
    """The console's handlers: to the sign-in page without a session, a 403 page for other roles."""

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired):
        target = "/console/sign-in?next=" + quote(exc.next_path, safe="")
        if exc.reason:
            target += f"&why={exc.reason}"
        response = RedirectResponse(target, status_code=303, headers=HEADERS)
        if exc.reason:
            clear_session_cookie(request, response)
        return response

    @app.exception_handler(NotAdmitted)
    async def _not_admitted(request: Request, exc: NotAdmitted):
        return page(
            request,
            "error.html",
            {"title": "Not available to your role", "message": "Your role may not use this page."},
            status_code=403,
        )


def error_page(request: Request, status_code: int, errors: list[dict[str, Any]]) -> HTMLResponse:
    """An ApiError raised under /console/ as a page (404 for another site's record, as in REST)."""
    titles = {404: "Not found", 403: "Not available to your role", 409: "Not possible now", 422: "Please check"}
    message = "; ".join(str(e.get("msg", "")) for e in errors) or "The request could not be completed."
    return page(
        request, "error.html", {"title": titles.get(status_code, "Error"), "message": message}, status_code=status_code
    )


__all__ = ["READERS", "console_user", "page", "redirect", "csrf_ok", "install", "error_page"]
