"""Limit failed token and link attempts per client address (in-process sliding window).

A failure is a 401 answer to a request that carried a bearer token, or a 404 answer on a form
link (``/f/...``). Once an address has ``limit`` failures within ``window`` seconds, its further
*failures* are answered 429 (with ``Retry-After``) instead of 401/404 until the oldest failure
leaves the window. The failures are throttled, not the address: a valid token or a working link
is always served, so one misconfigured client behind a clinic's NAT cannot lock the staff behind
the same address out. (Tokens and links carry 256 random bits: the limiter is there to make
guessing visible and cheap to refuse, not because guessing could succeed.)

Link failures and token failures are counted apart (the key is kind and address). The address
is the socket's peer: ``X-Forwarded-For`` is not trusted unless the server is started with
``peerlens serve --forwarded-allow-ips=<proxy address>`` (uvicorn's ``--forwarded-allow-ips``),
which makes the address the client's, not the proxy's.

One process keeps one window; several workers each keep their own, which still bounds guessing
to ``workers × limit`` per window.

Examples
--------
>>> lim = FailureLimiter(limit=2, window=60)
>>> lim.fail("10.0.0.1", now=0.0); lim.fail("10.0.0.1", now=1.0)
>>> lim.retry_after("10.0.0.1", now=2.0), lim.retry_after("10.0.0.1", now=61.0)
(58.0, None)
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque


class FailureLimiter:
    """Failure timestamps per key in a sliding window."""

    def __init__(self, limit: int, window: float):
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _prune(self, key: str, now: float) -> deque[float] | None:
        hits = self._hits.get(key)
        if hits is None:
            return None
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return None
        return hits

    def fail(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._prune(key, now)
            self._hits.setdefault(key, deque()).append(now)

    def retry_after(self, key: str, now: float | None = None) -> float | None:
        """Seconds until ``key`` may try again, or None when it is not limited."""
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._prune(key, now)
            if hits is None or len(hits) < self.limit:
                return None
            return max(hits[len(hits) - self.limit] + self.window - now, 0.0)

    def forget(self, key: str) -> None:
        """Drop ``key``'s failures (a console sign-in that succeeded)."""
        with self._lock:
            self._hits.pop(key, None)

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()


def _is_link_path(path: str) -> bool:
    return path.startswith("/f/")


class FailedAttemptGuard:
    """ASGI middleware applying a :class:`FailureLimiter` to token and link attempts."""

    def __init__(self, app, limiter: FailureLimiter):
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        has_token = any(k == b"authorization" for k, _ in scope.get("headers", ()))
        if not (has_token or _is_link_path(path)):
            return await self.app(scope, receive, send)
        client = scope.get("client")
        kind = "link" if _is_link_path(path) else "token"
        key = f"{kind}:{client[0] if client else 'unknown'}"
        swallowing = False

        async def watch(message):
            nonlocal swallowing
            if swallowing:
                return  # the body of the failure answer replaced by 429
            if message["type"] == "http.response.start":
                status = message["status"]
                if (status == 401 and has_token) or (status == 404 and _is_link_path(path)):
                    wait = self.limiter.retry_after(key)
                    self.limiter.fail(key)
                    if wait is not None:
                        swallowing = True
                        return await self._too_many(send, wait, html=_is_link_path(path))
            await send(message)

        return await self.app(scope, receive, watch)

    async def _too_many(self, send, wait: float, html: bool):
        retry = str(max(int(wait + 0.999), 1))
        if html:
            body = (
                b'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Please wait</title>'
                b'<meta name="viewport" content="width=device-width, initial-scale=1"></head><body>'
                b"<main><h1>Please wait a minute</h1><p>There were too many tries from this device. "
                b"Please wait a minute and then open your link again.</p></main></body></html>"
            )
            ctype = b"text/html; charset=utf-8"
        else:
            body = json.dumps(
                {
                    "detail": [
                        {
                            "loc": ["header", "Authorization"],
                            "msg": f"too many failed attempts; retry after {retry} s",
                            "type": "rate_limited",
                        }
                    ]
                }
            ).encode()
            ctype = b"application/json"
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", ctype),
                    (b"retry-after", retry.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
