"""Participant-facing web forms (server-rendered, no JavaScript needed) and their protections.

:func:`install` registers the form pages, the link administration routes, the stylesheet, the
failed-attempt limiter and the redaction of link tokens from logs on an application.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Add the participant forms and personal-link routes to ``app``."""
    from api.links.config import get_link_settings
    from api.links.router import router as links_router
    from api.main import mount
    from api.web.logfilter import install_log_redaction
    from api.web.ratelimit import FailedAttemptGuard, FailureLimiter
    from api.web.router import router as web_router

    mount(app, links_router)
    mount(app, web_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    cfg = get_link_settings()
    limiter = FailureLimiter(cfg.fail_limit, cfg.fail_window_seconds)
    app.state.failure_limiter = limiter
    app.add_middleware(FailedAttemptGuard, limiter=limiter)
    install_log_redaction()
