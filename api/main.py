"""The FastAPI application.

Examples
--------
>>> from api.config import Settings
>>> app = create_app(Settings(database_url="sqlite://"))
>>> any(r.path == "/health" for r in app.routes)
True
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import uuid
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from sqlalchemy.engine import Engine

from api.analyses.router import router as analyses_router
from api.audit.router import router as audit_router
from api.auth.router import router as auth_router
from api.config import Settings, get_settings
from api.console import dependencies as console
from api.console.delivery.router import router as console_delivery_router
from api.console.participants.router import router as console_participants_router
from api.console.router import router as console_router
from api.console.safety.router import router as console_safety_router
from api.context.router import router as context_router
from api.db import engine_from_settings
from api.delivery import qualitative as _delivery_for_qualitative  # noqa: F401 (registers the hooks)
from api.delivery.router import router as delivery_router
from api.docs import install_docs
from api.errors import ErrorGuard, install_handlers
from api.exports.router import router as exports_router
from api.fidelity.router import router as fidelity_router
from api.inputguard import NulGuard
from api.interop.router import router as interop_router
from api.interop.service import load_custom_instruments
from api.licensed.router import router as licensed_router
from api.licensed.service import load_licensed
from api.links.router import router as links_router
from api.participants.router import router as participants_router
from api.redcap.router import router as redcap_api_router
from api.reminders.router import router as reminders_router
from api.reports.router import router as reports_router
from api.responses.router import catalogue
from api.responses.router import router as responses_router
from api.routing import mount
from api.safety.router import router as safety_router
from api.sap.router import router as sap_router
from api.studies import dates
from api.studies.router import router as studies_router
from api.transcripts.coding_router import router as coding_router
from api.transcripts.matrices.router import router as matrices_router
from api.transcripts.router import router as transcripts_router
from api.web.logfilter import install_log_redaction
from api.web.ratelimit import FailedAttemptGuard, FailureLimiter
from api.web.router import STATIC_DIR
from api.web.router import router as web_router

log = logging.getLogger("peerlens.api")

DESCRIPTION = """Data capture for peer-support evaluations: studies, sites, arms, waves, participants
(with a separate identifier vault), scheduled questionnaires scored by the instrument library, and an
append-only audit trail. Every route except `/health` takes `Authorization: Bearer <token>`
(`peerlens users create EMAIL --role admin|coordinator|analyst`)."""


class RequestGuard:
    """ASGI middleware: request ids, the release header, the body-size limit and a cap on requests in flight.

    A body larger than ``max_body_bytes`` (declared or streamed) is answered 413 before any route
    runs. The id from ``X-Request-ID`` (or a new one) is put on ``request.state.request_id``, in
    the audit trail and on the response.

    At most ``max_in_flight`` requests run at once (the size of the connection pool); the rest
    wait in the event loop, holding neither a worker thread nor a connection. Without the cap, a
    burst larger than the pool can deadlock: requests holding a connection wait for a worker
    thread while every worker thread waits for a connection.
    """

    def __init__(self, app, max_body_bytes: int, max_in_flight: int = 40):
        self.app = app
        self.max = max_body_bytes
        self.max_in_flight = max_in_flight
        from api.release import version

        # Every response names the release that produced it (exports and their dictionaries included).
        self.version_header = (b"peerlens-version", version().encode("ascii"))
        # One semaphore per event loop: tests drive the same app from several loops.
        self._gates: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _gate(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            gate = self._gates[loop] = asyncio.Semaphore(self.max_in_flight)
        return gate

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        async with self._gate():
            return await self._guarded(scope, receive, send)

    async def _guarded(self, scope, receive, send):
        rid = None
        length = None
        for k, v in scope.get("headers", ()):
            if k == b"x-request-id":
                rid = v.decode("latin-1")[:64]
            elif k == b"content-length":
                length = v
        rid = rid or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        rid_header = (b"x-request-id", rid.encode("latin-1"))

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [rid_header, self.version_header]
            await send(message)

        if length is not None:
            try:
                too_big = int(length) > self.max
            except ValueError:
                too_big = False
            if too_big:
                return await self._too_large(send_with_id)
            return await self.app(scope, receive, send_with_id)
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send_with_id)
        # No declared length (chunked): buffer up to the limit, then replay to the app.
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            body = message.get("body", b"")
            total += len(body)
            if total > self.max:
                return await self._too_large(send_with_id)
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send_with_id)

    async def _too_large(self, send):
        body = json.dumps(
            {"detail": [{"loc": ["body"], "msg": f"request body exceeds {self.max} bytes", "type": "too_large"}]}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start-up: register imported instruments and uploaded licensed content into this process; on
    PostgreSQL, hold the connections of the submission fast path (closed at shutdown)."""
    from api.responses.fastpath import Connections

    engine = app.state.engine
    await run_in_threadpool(load_custom_instruments, engine)
    await run_in_threadpool(load_licensed, engine)
    connections = Connections(engine) if engine.dialect.name == "postgresql" else None
    app.state.submission_connections = connections
    _freeze_startup_heap()
    try:
        yield
    finally:
        app.state.submission_connections = None
        if connections is not None:
            await connections.close()


_heap_frozen = False


def _freeze_startup_heap() -> None:
    """Take the objects made at start-up out of the cycle collector's sight, once per process.

    They (modules, routes, models: about 250,000) live as long as the process. Left to the
    collector, each full collection walks them all (~120 ms, every request in flight waiting);
    frozen, collections walk only what requests allocated since. Once: a process that builds
    several applications (the tests) freezes the imports, not each application's objects.
    """
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.collect()
        gc.freeze()


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """Build the application.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to :func:`api.config.get_settings` (environment variables).
    engine : Engine, optional
        An existing engine (tests share one); otherwise one is made from ``settings.database_url``.
    """
    from api.release import version

    settings = settings or get_settings()
    app = FastAPI(
        title="Peerlens data capture",
        version=version(),
        description=DESCRIPTION,
        lifespan=_lifespan,
        docs_url=None,  # api.docs serves both pages with local assets
        redoc_url=None,
    )
    app.state.settings = settings
    # One date policy for every domain (api/studies/dates.py), with this deployment's margins.
    dates.configure(settings.dates_before_start_days, settings.dates_future_minutes)
    app.state.engine = engine or engine_from_settings(settings)
    install_handlers(app)
    install_docs(app)  # /docs and /redoc with their assets served locally (no CDN)
    app.add_middleware(NulGuard)  # inside RequestGuard: the size limit applies before the body is read
    app.add_middleware(
        RequestGuard,
        max_body_bytes=settings.max_body_bytes,
        max_in_flight=settings.db_pool_size + settings.db_max_overflow,
    )
    # Failed token and link attempts per client address (429 past the limit); added after the
    # request guard, so it sees every answer, the guard's 413 included.
    app.state.failure_limiter = FailureLimiter(settings.fail_limit, settings.fail_window_seconds)
    app.add_middleware(FailedAttemptGuard, limiter=app.state.failure_limiter)
    # Failed console sign-ins per account and client address (api/console/auth.py).
    app.state.console_signin_limiter = FailureLimiter(
        settings.console_signin_limit, settings.console_signin_window_seconds
    )
    console.install(app)
    install_log_redaction()  # personal-link tokens never reach a log line
    for router in (
        responses_router,  # first: the most frequent request, a new response, is matched at once
        studies_router,
        participants_router,
        catalogue,  # /instruments
        auth_router,
        audit_router,
        links_router,  # /participants/{id}/links
        web_router,  # /f/{token}: the participant forms
        reminders_router,  # reminder plans, outbox, /u/{token} unsubscribe
        interop_router,  # REDCap and other imports; the ODM export (before /exports/{shape})
        exports_router,
        redcap_api_router,  # /studies/{id}/redcap/api/: the REDCap-compatible API
        transcripts_router,  # transcripts, REFI-QDA, joint displays
        coding_router,  # codebook, memos, codings, agreement, suggestions
        context_router,  # context records and events, goals, logic model, CMO configurations, realist table
        matrices_router,  # joint-display matrices and meta-inferences
        safety_router,  # safety settings, alerts, adverse events, DMC line listing and summary
        delivery_router,  # process evaluation: supporters, training, groups, sessions, attendance, dose
        fidelity_router,  # fidelity checklists and ratings, agreement, the FRAME adaptation log
        sap_router,  # statistical analysis plan, blinding and unblinding
        analyses_router,  # /studies/{id}/analyses/{kind} and their plot files
        reports_router,  # screening log, /studies/{id}/reports (the trial report, HTML and PDF)
        console_router,  # /console: sign-in, dashboard, exports page
        console_participants_router,  # /console: enrolment, participant pages
        console_safety_router,  # /console: safety alerts
        console_delivery_router,  # /console: peer groups, sessions, delivery and registers
        licensed_router,  # /licensed: licensed item wordings and calibration tables
    ):
        mount(app, router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount("/console-assets", StaticFiles(directory=console.STATIC_DIR), name="console-assets")

    # Outermost: an unhandled exception becomes a bare 500 and a log line without values.
    app.add_middleware(ErrorGuard)

    @app.get("/health", tags=["health"])
    def health(request: Request):
        """Liveness, database reachability, the Peerlens version and the schema revision (no authentication).

        ``schema`` is the database's Alembic revision and ``schema_current`` whether it is the one this
        release expects (false: run ``peerlens migrate``).
        """
        from api.migrate import current_revision, head_revision
        from api.release import version

        try:
            with request.app.state.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                revision = current_revision(conn)
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            log.warning("health check: database unreachable (%s)", type(exc).__name__)
            return JSONResponse(
                {"status": "degraded", "database": "unreachable", "version": version()}, status_code=503
            )
        return {
            "status": "ok",
            "database": "ok",
            "version": version(),
            "schema": revision,
            "schema_current": revision == head_revision(),
        }

    return app
