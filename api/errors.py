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

import logging
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
    """Register the handlers that give every 4xx the same body shape and hide 5xx details.

    FastAPI is imported here rather than at the top so that services, the command line and
    :mod:`api.auth.policy` can raise these errors without loading the web framework.
    """
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse({"detail": exc.errors}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": [_clean(e) for e in exc.errors()]}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
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

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # Log the type and the request id only: the exception text may quote submitted values.
        rid = getattr(request.state, "request_id", None)
        log.error("unhandled %s in %s %s (request %s)", type(exc).__name__, request.method, request.url.path, rid)
        return JSONResponse({"detail": [error([], "internal error", "internal_error")]}, status_code=500)
