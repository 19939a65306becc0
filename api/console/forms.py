"""Helpers every console form shares: REST-shaped errors as ``{field: message}``, the expired-page answer."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from api.console.dependencies import page


def expired(request: Request) -> HTMLResponse:
    """The answer to a form without a valid CSRF token: nothing saved, 403."""
    return page(
        request,
        "error.html",
        {"title": "This page had expired", "message": "Nothing was saved. Go back, reload the page and try again."},
        status_code=403,
    )


def errors_by_field(errors: list[dict[str, Any]]) -> dict[str, str]:
    """``{"site": "…"}`` from REST-shaped errors: the last non-index part of ``loc`` names the field."""
    out: dict[str, str] = {}
    for e in errors:
        loc = [str(x) for x in e.get("loc", ()) if not isinstance(x, int) and x not in ("body", "path", "query")]
        out[".".join(loc) or "form"] = str(e.get("msg", "not valid"))
    return out


def validation_errors(exc: ValidationError) -> dict[str, str]:
    """A schema's refusal as ``{field: message}``."""
    return errors_by_field([{"loc": e["loc"], "msg": e["msg"]} for e in exc.errors()])


async def posted_form(request: Request) -> dict[str, str]:
    """Dependency: a form whose field names are not known in advance (a register's ``status_<id>``),
    read on the event loop so that the route itself stays a plain ``def`` (its database work runs in
    the thread pool). ``csrf`` is part of it; check it with :func:`api.console.dependencies.csrf_ok`."""
    form = await request.form()
    return {k: str(v) for k, v in form.items()}
