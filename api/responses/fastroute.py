"""The route class of ``POST /participants/{id}/responses``: the PostgreSQL fast path first.

A new response is by far the most frequent write. Solving the route's dependencies one by one
(token, participant, role, session, header), each with its own bookkeeping, and two worker-thread
hops cost more CPU than storing the response itself. :class:`SubmissionRoute` keeps the route
exactly as declared (its dependencies, validation, OpenAPI entry and every answer) and, on
PostgreSQL, tries :func:`api.responses.fastpath.attempt` first, on the event loop with the
connections the application's lifespan opened (``app.state.submission_connections``). It answers
only when that stored a new response; anything else, a refusal included, goes to the
route's own handler, which judges it in the usual order (401, 404, 403, then the body). The body is
read once: the request object, with its parsed JSON, is the one the route's handler gets.

What is read here mirrors the route's declarations, and a request this module reads differently
from them is simply left to the route: the bearer token as :class:`fastapi.security.HTTPBearer`
reads it, the path's participant id as a positive 32-bit integer, a JSON content type, the body as
:class:`~api.responses.schemas.ResponseCreate` validates it and an ``Idempotency-Key`` of 1 to 200
characters.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import ValidationError

from api.responses import fastpath
from api.responses.schemas import ResponseCreate

_MAX_ID = 2**31 - 1


class SubmissionRoute(APIRoute):
    """An :class:`~fastapi.routing.APIRoute` whose handler tries the fast path before its own."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        declared = super().get_route_handler()

        async def handler(request: Request) -> Response:
            connections = getattr(request.app.state, "submission_connections", None)
            if connections is not None:
                stored = await _fast(request, connections)
                if stored is not None:
                    return Response(stored, status_code=201, media_type="application/json")
            return await declared(request)

        return handler


async def _fast(request: Request, connections: fastpath.Connections) -> str | None:
    """The stored response's JSON, or None to leave the request to the route's handler."""
    scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
    if scheme.lower() != "bearer" or not token:
        return None
    raw_id = request.path_params.get("participant_id", "")
    # at most 10 digits: int() refuses strings of thousands of digits (the route answers those 422)
    if not (raw_id.isascii() and raw_id.isdigit() and len(raw_id) <= 10) or not 1 <= int(raw_id) <= _MAX_ID:
        return None
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        return None
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 200:
        return None
    try:
        body = ResponseCreate.model_validate(await request.json())  # parsed once: the route reuses it
    except (ValueError, RecursionError, ValidationError):  # not JSON, nested too deeply, not a valid body
        return None
    request_id = getattr(request.state, "request_id", None) or uuid.uuid4().hex
    return await fastpath.attempt(connections, token, int(raw_id), body, key, request_id)
