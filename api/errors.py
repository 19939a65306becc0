"""Errors in FastAPI's shape: ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``.

Services raise :class:`ApiError` (or its subclasses); the handlers registered by
:func:`install_handlers` turn it, request-validation errors and plain HTTP errors into that
shape. Messages name the field and the rule, never the value a client sent for an identifier.

Examples
--------
>>> e = NotFound(["path", "study_id"], "study not found")
>>> e.status_code, e.errors[0]["type"]
(404, 'not_found')
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

log = logging.getLogger("peerlens.api")

Loc = Sequence[str | int]


def error(loc: Loc, msg: str, type_: str) -> dict[str, Any]:
    """One error entry."""
    return {"loc": list(loc), "msg": msg, "type": type_}


class ApiError(Exception):
    """A client error with one or more entries of ``{"loc", "msg", "type"}``."""

    status_code = 400
    default_type = "bad_request"

    def __init__(
        self,
        loc: Loc | None = None,
        msg: str = "",
        type_: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        status_code: int | None = None,
    ):
        if status_code is not None:
            self.status_code = status_code
        self.errors = errors if errors is not None else [error(loc or [], msg, type_ or self.default_type)]
        super().__init__("; ".join(e["msg"] for e in self.errors))


class NotFound(ApiError):
    status_code = 404
    default_type = "not_found"


class Unprocessable(ApiError):
    status_code = 422
    default_type = "value_error"


class Conflict(ApiError):
    status_code = 409
    default_type = "conflict"


class Forbidden(ApiError):
    status_code = 403
    default_type = "forbidden"


class Unauthorized(ApiError):
    status_code = 401
    default_type = "not_authenticated"


def _clean(err: dict[str, Any]) -> dict[str, Any]:
    # Pydantic puts the submitted value in ``input`` (and sometimes ``ctx``); a contact field's
    # value must not travel back in an error body or into a log line.
    return {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "value_error")}


def install_handlers(app: FastAPI) -> None:
    """Register the handlers that give every 4xx the same body shape (5xx: :class:`ErrorGuard`).

    FastAPI is imported here rather than at the top so that services, the command line and
    :mod:`api.auth.policy` can raise these errors without loading the web framework.
    """
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        if request.url.path.startswith("/console/"):
            # Console pages answer with a page, not JSON (404 for another site's record, as in REST).
            from api.console.dependencies import error_page

            return error_page(request, exc.status_code, exc.errors)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse({"detail": exc.errors}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": [_clean(e) for e in exc.errors()]}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        cause = exc.__cause__
        if exc.status_code == 400 and isinstance(cause, (UnicodeError, RecursionError)):
            # FastAPI answers a body it cannot decode (invalid UTF-8, JSON nested beyond Python's
            # recursion limit) with a bare 400; it is a JSON decode error like any other.
            msg = "the body is not valid UTF-8" if isinstance(cause, UnicodeError) else "JSON nested too deeply"
            return JSONResponse({"detail": [error(["body"], msg, "json_invalid")]}, status_code=422)
        if isinstance(exc.detail, list):
            detail = exc.detail
        else:
            kind = {
                404: "not_found",
                405: "method_not_allowed",
                401: "not_authenticated",
                403: "forbidden",
                413: "too_large",
            }.get(exc.status_code, "http_error")
            detail = [error([], str(exc.detail), kind)]
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


# ---- unexpected errors: a 500 without details, a log line without values ---------------------

_OWN = tuple(os.sep + d + os.sep for d in ("api", "instruments", "analysis", "qualitative", "migrations"))
_MIDDLEWARE = {"__call__", "_guarded", "watch", "replay"}


def describe(exc: BaseException) -> str:
    """What went wrong, without a single value: exception types along the cause chain, the
    database's SQLSTATE and constraint name when there is one, and where (file:line function).

    Exception messages are left out on purpose: a database error quotes the failing row
    (``DETAIL: Failing row contains (…, 'alice@example.org', …)``), a validation error the value.

    Examples
    --------
    >>> try:
    ...     {}["alice@example.org"]
    ... except KeyError as e:
    ...     "alice" in describe(e)
    False
    """
    chain: list[str] = []
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        name = f"{type(e).__module__}.{type(e).__qualname__}".removeprefix("builtins.")
        diag = getattr(e, "diag", None) or getattr(getattr(e, "orig", None), "diag", None)
        sqlstate = getattr(e, "sqlstate", None) or getattr(getattr(e, "orig", None), "sqlstate", None)
        extra = []
        if sqlstate:
            extra.append(f"sqlstate {sqlstate}")
        constraint = getattr(diag, "constraint_name", None) if diag is not None else None
        if constraint:
            extra.append(f"constraint {constraint}")
        chain.append(name + (f" ({', '.join(extra)})" if extra else ""))
        e = e.__cause__ or e.__context__
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if any(d in f.filename for d in _OWN) and f.name not in _MIDDLEWARE
    ]
    where = " <- ".join(
        f"{f.filename[max(f.filename.rfind(d) for d in _OWN if d in f.filename) + 1 :]}:{f.lineno} {f.name}"
        for f in reversed(frames[-5:])
    )
    return " caused by ".join(dict.fromkeys(chain)) + (f" at {where}" if where else "")


class ErrorGuard:
    """Outermost ASGI middleware: an unhandled exception becomes a bare 500 and one log line.

    Starlette would re-raise the exception to the server, which logs it with its message and
    traceback; with a database error the message quotes statement parameters or the failing row,
    i.e. contact details. Here the exception stops: the log line carries the request id, the
    route and :func:`describe` (types, SQLSTATE, constraint, code locations), never a message.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def watch(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:  # noqa: BLE001 - the point: nothing unhandled leaves the app
            route = scope.get("route")
            path = getattr(route, "path", None) or scope.get("path", "")
            rid = scope.get("state", {}).get("request_id")
            log.error("unhandled error in %s %s (request %s): %s", scope.get("method"), path, rid, describe(exc))
            if started:
                return  # the body is cut short; the client sees an incomplete response
            body = json.dumps({"detail": [error([], "internal error", "internal_error")]}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            if rid:
                headers.append((b"x-request-id", str(rid).encode("latin-1")))
            await send({"type": "http.response.start", "status": 500, "headers": headers})
            await send({"type": "http.response.body", "body": body})
