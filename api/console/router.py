"""/console: sign-in, the study list, the study dashboard and the analysts' export page.

Participant pages are in :mod:`api.console.participants.router`. Every page runs the services the REST
routes run, with the signed-in user as the actor, so validation, site scoping and the audit trail
are the REST ones.
"""

from __future__ import annotations

import secrets
from typing import Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlmodel import Session

from api.auth.policy import READERS, STAFF, deidentified
from api.auth.service import Actor
from api.console import auth
from api.console.dependencies import (
    HEADERS,
    clear_session_cookie,
    console_user,
    csrf_ok,
    page,
    redirect,
    set_session_cookie,
)
from api.console.service import dashboard, visible_sites
from api.db import end_read, get_session
from api.exports import router as exports_router
from api.exports.schemas import Format
from api.studies.service import require_study, visible_studies

router = APIRouter(tags=["console"], include_in_schema=False)

PRE_COOKIE = "plk_console_pre"  # the sign-in form's CSRF cookie (no session exists yet)
SHAPES = ("long", "wide", "items")
FORMATS = ("csv", "json", "parquet", "dta", "sav")


def _safe_next(value: str | None) -> str:
    # Only a path inside the console: never an absolute URL (no open redirect).
    if not value:
        return "/console"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console") or value.startswith("//"):
        return "/console"
    return value


def _pre_csrf(request: Request, cookie: str) -> str:
    return auth.csrf_token(request.app.state.settings.secret_key, "sign-in:" + cookie)


def _sign_in_page(
    request: Request,
    *,
    next_path: str,
    error: str | None = None,
    email: str = "",
    otp: bool = False,
    status_code: int = 200,
    why: str | None = None,
) -> HTMLResponse:
    cookie = request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(24)
    response = page(
        request,
        "sign_in.html",
        {
            "title": "Sign in",
            "next": next_path,
            "error": error,
            "email": email,
            "ask_otp": otp,
            "pre_csrf": _pre_csrf(request, cookie),
            "why": why,
        },
        status_code=status_code,
    )
    if not request.cookies.get(PRE_COOKIE):
        response.set_cookie(
            PRE_COOKIE,
            cookie,
            httponly=True,
            samesite="strict",
            path="/console",
            secure=request.app.state.settings.base_url.startswith("https://"),
        )
    return response


@router.get("/console/sign-in", response_class=HTMLResponse)
def sign_in_form(
    request: Request, next: str | None = Query(None, max_length=500), why: str | None = Query(None, max_length=20)
):
    """The sign-in page (email, password, and the authenticator code for users with a second factor)."""
    return _sign_in_page(request, next_path=_safe_next(next), why=why)


@router.post("/console/sign-in", response_class=HTMLResponse)
def sign_in(
    request: Request,
    email: str = Form("", max_length=320),
    password: str = Form("", max_length=1000),
    otp: str = Form("", max_length=20),
    csrf: str = Form("", max_length=200),
    next: str = Form("/console", max_length=500),
    session: Session = Depends(get_session),
):
    settings = request.app.state.settings
    next_path = _safe_next(next)
    cookie = request.cookies.get(PRE_COOKIE)
    if not cookie or not auth.csrf_ok(settings.secret_key, "sign-in:" + cookie, csrf):
        return _sign_in_page(
            request,
            next_path=next_path,
            email=email,
            status_code=403,
            error="This page had expired. Please sign in again.",
        )
    address = request.client.host if request.client else "?"
    limiter = request.app.state.console_signin_limiter
    key = f"{email.strip().lower()}|{address}"
    wait = limiter.retry_after(key)
    if wait is not None:
        response = _sign_in_page(
            request,
            next_path=next_path,
            email=email,
            status_code=429,
            error=f"Too many failed attempts for this account from here. Try again in {int(wait // 60) + 1} minutes.",
        )
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    user, problem = auth.check_sign_in(session, email, password, otp)
    if user is None:
        if problem == "otp_needed":
            return _sign_in_page(
                request,
                next_path=next_path,
                email=email,
                otp=True,
                status_code=401,
                error="Enter the 6-digit code from your authenticator app.",
            )
        limiter.fail(key)
        return _sign_in_page(
            request,
            next_path=next_path,
            email=email,
            otp=problem == "otp",
            status_code=401,
            error="That code is not right." if problem == "otp" else "Email or password is not right.",
        )
    token = auth.start_session(session, user, getattr(request.state, "request_id", None))
    session.commit()
    limiter.forget(key)
    done = RedirectResponse(next_path, status_code=303, headers=HEADERS)
    set_session_cookie(request, done, token)
    done.delete_cookie(PRE_COOKIE, path="/console")
    return done


@router.post("/console/sign-out")
def sign_out(
    request: Request,
    csrf: str = Form("", max_length=200),
    actor: Actor = Depends(console_user(*READERS)),
    session: Session = Depends(get_session),
):
    if not csrf_ok(request, csrf):
        return page(
            request, "error.html", {"title": "Page expired", "message": "Please reload and try again."}, status_code=403
        )
    auth.end_session(session, request.state.console_token, actor)
    session.commit()
    response = RedirectResponse("/console/sign-in?why=signed_out", status_code=303, headers=HEADERS)
    clear_session_cookie(request, response)
    return response


@router.get("/console", response_class=HTMLResponse)
def home(request: Request, actor: Actor = Depends(console_user(*READERS)), session: Session = Depends(get_session)):
    """The studies the user may see."""
    studies = visible_studies(session, actor)
    end_read(session)
    if len(studies) == 1:
        return redirect(request, f"/console/studies/{studies[0].id}")
    return page(request, "home.html", {"title": "Studies", "studies": studies})


@router.get("/console/studies/{study_id}", response_class=HTMLResponse)
def study_dashboard(
    request: Request,
    study_id: int,
    actor: Actor = Depends(console_user(*READERS)),
    session: Session = Depends(get_session),
):
    """Enrolment against target by site and arm, balance, wave completion among those due, the
    reminder queue, open safety alerts and recent responses."""
    study = require_study(session, study_id, actor)
    board = dashboard(session, study, actor)
    end_read(session)
    return page(
        request,
        "dashboard.html",
        {"title": study.title, "study": study, "d": board, "deidentified": deidentified(actor)},
    )


@router.get("/console/studies/{study_id}/exports", response_class=HTMLResponse)
def exports_page(
    request: Request,
    study_id: int,
    actor: Actor = Depends(console_user(*READERS)),
    session: Session = Depends(get_session),
):
    """Choose a shape and format; analysts always get the de-identified file."""
    study = require_study(session, study_id, actor)
    sites = visible_sites(session, study, actor)
    end_read(session)
    return page(
        request,
        "exports.html",
        {
            "title": f"Exports · {study.title}",
            "study": study,
            "shapes": SHAPES,
            "formats": FORMATS,
            "sites": sites,
            "deidentified": deidentified(actor),
        },
    )


@router.get("/console/studies/{study_id}/exports/download")
def export_download(
    request: Request,
    study_id: int,
    shape: Literal["long", "wide", "items"] = Query("long"),
    format: Format = Query("csv"),
    site: str | None = Query(None, max_length=40, pattern=r"^[A-Za-z0-9_.-]*$"),
    actor: Actor = Depends(console_user(*READERS)),
    session: Session = Depends(get_session),
):
    """The export itself, streamed by the REST export route's code (same de-identification and audit)."""
    study = require_study(session, study_id, actor)
    response = exports_router.export(
        shape=shape,
        request=request,
        actor=actor,
        study=study,
        session=session,
        format=format,
        waves=None,
        instruments=None,
        sites=site or None,
        identifiers=False,
        items=False,
        escape_formulas=True,
    )
    set_session_cookie(request, response, request.state.console_token)
    return response


__all__ = ["router", "STAFF"]
