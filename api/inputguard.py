"""Characters no stored text may hold: NUL everywhere, line breaks where a mail header is built.

PostgreSQL cannot store ``\\u0000`` in text (SQLite stores it silently), so a NUL in any client
value is refused before a route runs, the same on both backends, with a 422 naming the field:

* :class:`NulGuard`, an ASGI middleware, looks at the path, the query string, the headers and
  the body (JSON, URL-encoded and multipart form fields) of every request;
* :func:`decode_upload` decodes an uploaded text file and refuses a NUL in it (binary uploads
  such as ``.docx`` legitimately contain zero bytes, so files are judged once decoded);
* :func:`install_nul_backstop` refuses a NUL in any text parameter of any SQL statement, for
  values that reach the database another way (command-line imports, background work).

:data:`SingleLine` is the type of values a reminder may put into a mail header (study title,
participant name, subject template): a CR or LF there would let a value add headers.

Examples
--------
>>> nul_path({"title": "ok", "answers": {"q1": "a\\x00b"}})
['answers', 'q1']
>>> nul_path(["x", {"y": 1}]) is None
True
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import parse_qsl

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from api.errors import Unprocessable, error

NUL = "\x00"
NUL_TYPE = "null_character"
NUL_MSG = "text may not contain the NUL character (\\u0000)"


def _shown(key: str) -> str:
    return key.replace(NUL, "\\u0000")


def nul_path(value: Any, path: list | None = None) -> list | None:
    """The path (keys and indexes) to the first string or key holding a NUL, or None."""
    path = path or []
    if isinstance(value, str):
        return path if NUL in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and NUL in k:
                return [*path, _shown(k)]
            found = nul_path(v, [*path, k])
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = nul_path(v, [*path, i])
            if found is not None:
                return found
    return None


def refuse_nul(text: str | None, loc: list) -> None:
    """Raise the 422 of :data:`NUL_TYPE` at ``loc`` when ``text`` holds a NUL."""
    if text is not None and NUL in text:
        raise Unprocessable(loc, NUL_MSG, NUL_TYPE)


def decode_upload(data: bytes, loc: list, *, message: str = "the file must be UTF-8 text") -> str:
    """UTF-8 (with or without BOM) text of an uploaded file; 422 at ``loc`` when it is not, or
    when it holds a NUL."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Unprocessable(loc, message, "invalid_encoding") from None
    refuse_nul(text, loc)
    return text


def _single_line(v: str) -> str:
    if "\r" in v or "\n" in v:
        raise PydanticCustomError("line_break", "may not contain a line break (it can end up in a mail header)")
    return v


SingleLine = Annotated[str, AfterValidator(_single_line)]


# ---- the middleware ---------------------------------------------------------------------------


def _query_nul(raw: bytes, where: str) -> list | None:
    for k, v in parse_qsl(raw.decode("latin-1"), keep_blank_values=True, encoding="utf-8", errors="replace"):
        if NUL in k or NUL in v:
            return [where, _shown(k)]
    return None


def _path_nul(scope) -> list:
    from starlette.routing import Match

    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", ()):
        match, child = route.matches(scope)
        if match != Match.NONE:
            for name, value in child.get("path_params", {}).items():
                if isinstance(value, str) and NUL in value:
                    return ["path", name]
    return ["path"]


class NulGuard:
    """ASGI middleware answering 422 ``null_character`` for a NUL anywhere in a request.

    The body is read whole (the size limit of :class:`api.main.RequestGuard` applies first) and
    replayed to the application; it is parsed only when it holds a NUL or a ``\\u0000`` escape,
    so an ordinary request pays for two byte searches.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        loc = None
        if NUL in scope.get("path", ""):
            loc = _path_nul(scope)
        qs = scope.get("query_string", b"")
        if loc is None and (b"%00" in qs or b"\x00" in qs):
            loc = _query_nul(qs, "query")
        if loc is None:
            for k, v in scope.get("headers", ()):
                if b"\x00" in v:
                    loc = ["header", k.decode("latin-1")]
                    break
        if loc is not None:
            return await self._refuse(send, loc)
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([], message, receive), send)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if b"\x00" in body or b"\\u0000" in body or b"%00" in body:
            loc = await self._body_nul(scope, body)
            if loc is not None:
                return await self._refuse(send, loc)
        return await self.app(scope, _replay([body], None, receive), send)

    async def _body_nul(self, scope, body: bytes) -> list | None:
        ctype = ""
        for k, v in scope.get("headers", ()):
            if k == b"content-type":
                ctype = v.decode("latin-1").lower()
        if ctype.startswith("application/x-www-form-urlencoded"):
            return _query_nul(body, "body")
        if ctype.startswith("multipart/form-data"):
            return await _multipart_nul(scope, body)
        try:  # JSON (FastAPI also reads a body without a content type as JSON)
            found = nul_path(json.loads(body))
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None  # not JSON: the route answers it (json_invalid)
        return None if found is None else ["body", *found]

    async def _refuse(self, send, loc: list):
        body = json.dumps({"detail": [error(loc, NUL_MSG, NUL_TYPE)]}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 422,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _replay(chunks: list[bytes], pending, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            if pending is not None:
                return pending
            return {"type": "http.request", "body": chunks[0] if chunks else b"", "more_body": False}
        return await receive()

    return replay


async def _multipart_nul(scope, body: bytes) -> list | None:
    """The form field (not file) holding a NUL; files are judged by :func:`decode_upload`."""
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    sent = False

    async def once():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(scope, once).form()
    except Exception:  # noqa: BLE001 - a malformed form is the route's to answer
        return None
    try:
        for name, value in form.multi_items():
            if NUL in name or (not isinstance(value, UploadFile) and NUL in value):
                return ["body", _shown(name)]
    finally:
        await form.close()
    return None


# ---- the database backstop ---------------------------------------------------------------------


class NulInDatabaseValue(Unprocessable):
    """A NUL reached an SQL parameter (not through a request, or through a path the middleware
    does not parse); answered as a 422 like the middleware's."""


def _has_nul(params) -> str | None:
    if isinstance(params, dict):
        for k, v in params.items():
            if isinstance(v, str) and NUL in v:
                return str(k)
    elif isinstance(params, (list, tuple)):
        for i, v in enumerate(params):
            if isinstance(v, str) and NUL in v:
                return str(i)
            if isinstance(v, (dict, list, tuple)):
                found = _has_nul(v)
                if found is not None:
                    return found
    return None


def _refuse_nul_parameters(conn, cursor, statement, parameters, context, executemany):
    found = _has_nul(parameters)
    if found is not None:
        names = getattr(getattr(context, "compiled", None), "positiontup", None)
        if found.isdigit() and names and int(found) < len(names):
            found = names[int(found)]  # SQLite's positional parameters: back to the column's name
        # The parameter name is a column name (never a value); the statement is not quoted.
        raise NulInDatabaseValue(["body"], f"{NUL_MSG} (column {found.rstrip('_0123456789')})", NUL_TYPE)


def install_nul_backstop(engine) -> None:
    """Refuse, on both backends, any SQL statement whose text parameters hold a NUL."""
    from sqlalchemy import event

    if not event.contains(engine, "before_cursor_execute", _refuse_nul_parameters):
        event.listen(engine, "before_cursor_execute", _refuse_nul_parameters)
