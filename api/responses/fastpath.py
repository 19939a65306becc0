"""REST submissions on PostgreSQL in two statements: one read, one write, both in autocommit.

Why
---
Through the ORM path (:func:`api.responses.service.submit_response`) a submission costs eight round
trips (BEGIN, six statements, COMMIT), each statement built by SQLAlchemy and the audit row flushed by
the ORM, and the route's dependencies are solved one by one, with two worker-thread hops: the
Python process, not the database, limits how many submissions a server takes. This module does the
same work in two statements whose SQL text is written once, below, at import, and executed with
plain parameters (psycopg prepares both server-side after a few uses). They are awaited on the event
loop, on one of a few autocommit connections the application holds (:class:`Connections`), so a
submission makes no worker-thread hop and no pool checkout; its Python work (checks, scoring, the
audit row) runs between them. :class:`api.responses.fastroute.SubmissionRoute` tries this before
the route's own handler.

1. :data:`READ`: the token and its user (with a coordinator's sites), the participant, the study,
   the wave, the slot's current response, the idempotency key's row, the study's own alert rules,
   the newest licensed upload, and a new response id drawn from the table's sequence (the audit
   row's MAC covers the response id, so it must be known before the write).
2. :data:`WRITE`: one data-modifying statement inserting the idempotency key, the response, its
   scores and its audit event. One statement in autocommit is one transaction: all rows or none.

Guarantees
----------
* The checks are :mod:`api.responses.checks`, the ones the ORM path makes, in the same order: same
  scores (the instrument library), same plausible-date and window rules.
* The audit row is built by :func:`api.audit.service.event_values`, as :func:`~api.audit.service.record`
  builds it (content and MAC); like every row it is chained later by the sealer
  (:mod:`api.audit.chain`), so ``peerlens audit verify`` checks rows of both paths alike.
* Only a new response is ever answered here, and only for a valid token whose role may write and
  whose sites cover the participant (the same functions as the dependencies).
* NUL characters never reach the statement: :class:`api.inputguard.NulGuard` refuses them first.

When the route answers instead
------------------------------
:func:`attempt` returns None, having written nothing, and the route's own handler (dependencies,
then the ORM path, which reads again) answers whenever the answer is not a new response:

* any refusal: a missing, unknown or expired token (401), a participant out of reach (404), a role
  that may not write (403), a body or header the route's validation refuses, or a 409/422 of the
  checks; the route then gives the same answer with the same body, from the same rules;
* the slot has a response or the key a row (a replay, a 409, a resumed partial response), or the
  request is an amendment; the wave is unknown;
* alert rules apply to the instrument (its definition's or the study's): an alert, its
  notifications and audit events are written by :func:`api.safety.service.raise_alerts` in the
  submission's transaction;
* a licensed upload newer than this process has applied (the ORM path applies it first);
* the connection cannot be opened, or fails during the read (see :class:`Connections`); one that
  fails during the write is an error (500), as in the ORM path: whether it committed is unknown;
* the write lost a race. The key is inserted first and the response only if the key was; when a
  parallel request with another key (or none) took the slot, the key row refers to a response that
  was not written and its foreign key fails at the end of the statement, so nothing is written.
  The ORM path then answers as it does for a race: a replay, a 409 or a 422.

SQLite, the participant form, imports, FHIR and the console always use the ORM path, and so does an
application whose lifespan has not run (it holds no connections). A read that does not end in a
write leaves a gap in the response ids; ids carry no meaning.
"""

from __future__ import annotations

import asyncio
import json
import select
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy.engine import Engine

from api.audit.chain import key_for
from api.audit.service import event_values
from api.auth.policy import STAFF, ensure_can_write
from api.auth.service import Actor, hash_token, token_in_force
from api.db import utcnow
from api.errors import ApiError
from api.licensed.service import LICENSED_CODES, applied_up_to
from api.participants.service import ensure_visible
from api.responses import checks
from api.responses.schemas import ResponseCreate, ResponseRead, ScoreRead

READ = """
SELECT u.id, u.role, u.email, u.active, t.expires_at, t.revoked_at,
       CASE WHEN u.role = 'coordinator'
            THEN ARRAY(SELECT us.site_id FROM user_site us WHERE us.user_id = u.id) END,
       p.id, p.study_id, p.site_id, p.status, p.voided_at, p.follow_up_stopped_on,
       p.consent_withdrawn_on, p.enrolled_on, p.consent_date,
       st.time_zone, st.created_at,
       w.id, w.offset_days, w.window_before_days, w.window_after_days, w.instruments,
       ss.rules,
       (SELECT max(lc.id) FROM licensed_content lc),
       CASE WHEN w.id IS NOT NULL AND r.id IS NULL AND k.id IS NULL
            THEN nextval(pg_get_serial_sequence('response', 'id')) END
FROM api_token t
JOIN app_user u ON u.id = t.user_id
LEFT JOIN participant p ON p.id = %(participant_id)s
LEFT JOIN study st ON st.id = p.study_id
LEFT JOIN wave w ON w.study_id = p.study_id AND w.code = %(wave)s::text
LEFT JOIN response r ON r.participant_id = p.id AND r.wave_id = w.id AND r.instrument = %(instrument)s::text
LEFT JOIN idempotency_key k ON k.participant_id = p.id AND k.key = %(key)s::text
LEFT JOIN safety_settings ss ON ss.study_id = p.study_id
WHERE t.token_hash = %(token_hash)s::text
"""

# The key first, the response only if the key was written (or none was sent), then the scores and
# the audit event of that response. ``count(*)`` of ``r`` tells whether anything was written.
WRITE = """
WITH k AS (
    INSERT INTO idempotency_key (participant_id, key, request_hash, response_id, created_at)
    SELECT %(participant_id)s, %(key)s::text, %(request_hash)s::text, %(id)s, %(now)s
    WHERE %(key)s::text IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING 1
), r AS (
    INSERT INTO response (id, study_id, site_id, participant_id, wave_id, instrument, instrument_version,
                          answers, external_scores, status, mode, entered_by, completed_at, out_of_window,
                          version, created_at, updated_at)
    SELECT %(id)s, %(study_id)s, %(site_id)s, %(participant_id)s, %(wave_id)s, %(instrument)s::text,
           %(instrument_version)s::text, %(answers)s::json, %(external_scores)s::json, %(status)s::text,
           %(mode)s::text, %(entered_by)s::int, %(completed_at)s, %(out_of_window)s, 1, %(now)s, %(now)s
    WHERE %(key)s::text IS NULL OR EXISTS (SELECT FROM k)
    ON CONFLICT DO NOTHING
    RETURNING id
), s AS (
    INSERT INTO score (response_id, scale, value, band, level, items_answered, items_expected, prorated,
                       missing_reason, flags)
    SELECT r.id, x.scale, x.value, x.band, x.level, x.items_answered, x.items_expected, x.prorated,
           x.missing_reason, x.flags
    FROM r, ROWS FROM (json_to_recordset(%(scores)s::json)
                       AS (scale text, value float8, band text, level int, items_answered int,
                           items_expected int, prorated bool, missing_reason text, flags json))
            WITH ORDINALITY AS x(scale, value, band, level, items_answered, items_expected, prorated,
                                 missing_reason, flags, n)
    ORDER BY x.n
), a AS (
    INSERT INTO audit_event (at, actor_id, actor_role, action, entity, entity_id, study_id, site_id,
                             before, after, reason, request_id, source, mac)
    SELECT %(a_at)s, %(a_actor_id)s::int, %(a_actor_role)s::text, %(a_action)s::text, %(a_entity)s::text,
           %(a_entity_id)s::text, %(a_study_id)s::int, %(a_site_id)s::int, %(a_before)s::json,
           %(a_after)s::json, %(a_reason)s::text, %(a_request_id)s::text, %(a_source)s::text, %(a_mac)s::text
    FROM r
)
SELECT count(*) FROM r
"""


@dataclass(frozen=True, slots=True)
class Person:
    """The participant, as the checks read it."""

    id: int
    study_id: int
    site_id: int
    status: str
    voided_at: datetime | None
    follow_up_stopped_on: date | None
    consent_withdrawn_on: date | None
    enrolled_on: date
    consent_date: date


@dataclass(frozen=True, slots=True)
class Clock:
    """The study, as the date rules read it."""

    time_zone: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Window:
    """The wave, as the window and the instrument check read it."""

    id: int
    offset_days: int
    window_before_days: int
    window_after_days: int
    instruments: list[str]


@dataclass(frozen=True, slots=True)
class Read:
    """What :data:`READ` found for a token, a participant and a request's slot and key."""

    user_id: int
    role: str
    email: str
    token_state: tuple[bool, datetime | None, datetime | None]  # user active, expires_at, revoked_at
    site_ids: frozenset[int]
    participant: Person | None
    study: Clock | None
    wave: Window | None
    rules: list[dict[str, Any]]
    licensed_top: int | None
    new_id: int | None  # drawn only for a known wave with a free slot and an unused key
    asked: tuple[str | None, str | None, str | None]  # wave, instrument and key the read was made for


class Connections:
    """Autocommit connections to an engine's database, held between submissions by one event loop.

    The application opens this in its lifespan (PostgreSQL only) and closes it at shutdown; without
    it (an application whose lifespan has not run) the route's own handler answers every request.
    At most ``size`` statements run at once, each on a connection of its own; a connection is opened
    with the engine's URL on first need and then kept, and it is checked before each use as the
    engine's pool checks a checkout (closed, broken, or readable while idle: the server ended it)
    and replaced after the pool's recycle age. A statement that fails other than by a constraint
    violation (which leaves the connection idle) closes its connection.

    Examples
    --------
    >>> from api.db import make_engine
    >>> conns = Connections(make_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres"), size=2)
    >>> conns.size, conns.open
    (2, 0)
    """

    application_name = "peerlens-submissions"

    def __init__(self, engine: Engine, size: int = 8) -> None:
        self.engine = engine
        self.size = size
        self._free = asyncio.Semaphore(size)
        self._idle: list[tuple[psycopg.AsyncConnection, float]] = []
        self._busy = 0
        self._closed = False
        self._recycle = getattr(engine.pool, "_recycle", -1)

    @property
    def open(self) -> int:
        """Connections open now, idle or in use."""
        return len(self._idle) + self._busy

    async def _take(self) -> tuple[psycopg.AsyncConnection, float]:
        now = time.monotonic()
        while self._idle:
            conn, born = self._idle.pop()
            if _usable(conn) and not (0 <= self._recycle < now - born):
                return conn, born
            await conn.close()
        _, params = self.engine.dialect.create_connect_args(self.engine.url)
        params.setdefault("application_name", self.application_name)
        try:
            return await psycopg.AsyncConnection.connect(autocommit=True, **params), now
        except psycopg.OperationalError as exc:
            raise NothingWritten from exc

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A held connection for one submission's statements, returned afterwards."""
        if self._closed:  # shutting down: the route's handler answers
            raise NothingWritten("the submission connections are closed")
        async with self._free:
            self._busy += 1
            try:
                conn, born = await self._take()
            except BaseException:
                self._busy -= 1
                raise
            try:
                yield conn
            except BaseException:
                await conn.close()  # in an unknown state: a statement cut short, a lost server
                raise
            finally:
                self._busy -= 1
            if self._closed:
                await conn.close()
            else:
                self._idle.append((conn, born))

    async def close(self) -> None:
        """Close the idle connections; those in use close when they are returned."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await conn.close()


class NothingWritten(Exception):
    """The database could not be reached, or the connection failed before the write was sent."""


def _usable(conn: psycopg.AsyncConnection) -> bool:
    if conn.closed or conn.broken:
        return False
    try:  # an idle connection has nothing to read unless the server has ended it
        return not select.select([conn.fileno()], [], [], 0)[0]
    except (OSError, ValueError):
        return False


async def _one(conn: psycopg.AsyncConnection, sql: str, params: dict[str, Any]) -> tuple | None:
    """One statement in autocommit; its first row."""
    cursor = await conn.execute(sql, params)
    return await cursor.fetchone()


async def read(
    conn: psycopg.AsyncConnection,
    token_hash: str,
    participant_id: int,
    wave: str | None,
    instrument: str | None,
    key: str | None,
) -> Read | None:
    """Run :data:`READ`; None when no token has this hash."""
    params = {"token_hash": token_hash, "participant_id": participant_id, "wave": wave, "instrument": instrument}
    row = await _one(conn, READ, {**params, "key": key})
    if row is None:
        return None
    (uid, role, email, active, expires_at, revoked_at, sites, pid, study_id, site_id, status, voided_at) = row[:12]
    (stopped, withdrawn, enrolled_on, consent_date, time_zone, created_at, wave_id) = row[12:19]
    (offset, before, after, wave_instruments, rules, licensed_top, new_id) = row[19:]
    participant = (
        Person(pid, study_id, site_id, status, voided_at, stopped, withdrawn, enrolled_on, consent_date)
        if pid is not None
        else None
    )
    return Read(
        user_id=uid,
        role=role,
        email=email,
        token_state=(active, expires_at, revoked_at),
        site_ids=frozenset(sites or ()),
        participant=participant,
        study=Clock(time_zone, created_at) if pid is not None else None,
        wave=Window(wave_id, offset, before, after, wave_instruments) if wave_id is not None else None,
        rules=rules or [],
        licensed_top=licensed_top,
        new_id=new_id,
        asked=(wave, instrument, key),
    )


async def attempt(
    connections: Connections, token: str, participant_id: int, body: ResponseCreate, key: str | None, request_id: str
) -> str | None:
    """Read, judge and store a new response: its JSON, as the route answers it, or None, having
    written nothing, to leave the request to the route.

    Refusals are left to the route too, which judges them in its order (token, participant, role,
    body) and answers them from the same rules.
    """
    try:
        async with connections.connection() as conn:
            return await _attempt(conn, connections.engine, token, participant_id, body, key, request_id)
    except NothingWritten:
        return None  # the route's handler answers, on a pooled connection


async def _attempt(
    conn: psycopg.AsyncConnection,
    engine: Engine,
    token: str,
    participant_id: int,
    body: ResponseCreate,
    key: str | None,
    request_id: str,
) -> str | None:
    try:
        found = await read(conn, hash_token(token), participant_id, body.wave, body.instrument, key)
    except psycopg.OperationalError as exc:  # the connection closes on the way out
        raise NothingWritten from exc
    if found is None or not token_in_force(*found.token_state) or found.role not in STAFF:
        return None
    actor = Actor(
        user_id=found.user_id,
        role=found.role,
        site_ids=found.site_ids,
        email=found.email,
        request_id=request_id,
        source="api",
    )
    try:
        ensure_visible(actor, found.participant)
        return await submit(conn, key_for(engine), found, body, actor, key)
    except ApiError:
        return None


def _alerting(instrument, rules: list[dict[str, Any]]) -> bool:
    # As api.safety.service.raise_alerts gathers them: the definition's rules and the study's own
    # rules for this instrument (or for every instrument).
    return bool(instrument.alerts) or any(r.get("instrument") in (None, instrument.code) for r in rules)


async def submit(
    conn: psycopg.AsyncConnection, audit_key: bytes, found: Read, body: ResponseCreate, actor: Actor, key: str | None
) -> str | None:
    """Store a new response in one statement and return its JSON (as the ORM path answers it), or
    None, having written nothing, when the ORM path must answer (see the module docstring). The
    audit row is keyed with ``audit_key`` (:func:`api.audit.chain.key_for` of the engine).

    Raises
    ------
    api.errors.ApiError
        The 409 and 422 of :mod:`api.responses.checks`, exactly as the ORM path raises them.
    """
    participant, study, wave = found.participant, found.study, found.wave
    if (
        body.amend
        or participant is None
        or study is None
        or wave is None
        or found.new_id is None
        or found.asked != (body.wave, body.instrument, key)
    ):
        return None
    if body.instrument in LICENSED_CODES and not applied_up_to(found.licensed_top):
        return None
    ensure_can_write(actor)
    answers = dict(body.answers)
    external_scores = dict(body.external_scores) if body.external_scores else None
    checks.ensure_collecting(participant)
    instrument = checks.instrument_of_wave(body.instrument, wave.instruments)
    if _alerting(instrument, found.rules):
        return None
    scores, status = checks.scored(instrument, answers, external_scores)
    now = utcnow()
    completed_at, out_of_window = checks.dated(study, participant, wave, body.completed_at, now)
    key_hash = None
    if key is not None:
        key_hash = checks.request_hash(
            body.wave, body.instrument, answers, external_scores, body.completed_at, body.amend, body.reason
        )
    values = checks.score_values(scores)
    audit = event_values(
        audit_key,
        actor,
        "create",
        "response",
        found.new_id,
        study_id=participant.study_id,
        site_id=participant.site_id,
        after=checks.created_view(
            participant.id, body.wave, instrument, answers, external_scores, completed_at, out_of_window, status, "rest"
        ),
        at=now,
    )
    params: dict[str, Any] = {
        "id": found.new_id,
        "study_id": participant.study_id,
        "site_id": participant.site_id,
        "participant_id": participant.id,
        "wave_id": wave.id,
        "instrument": instrument.code,
        "instrument_version": str(instrument.version),
        "answers": json.dumps(answers),
        "external_scores": json.dumps(external_scores),
        "status": status,
        "mode": "rest",
        "entered_by": actor.user_id,
        "completed_at": completed_at,
        "out_of_window": out_of_window,
        "now": now,
        "key": key,
        "request_hash": key_hash,
        "scores": json.dumps(values),
    }
    for name, value in audit.items():
        params[f"a_{name}"] = json.dumps(value) if name in ("before", "after") else value
    try:
        written = await _one(conn, WRITE, params)
    except psycopg.errors.ForeignKeyViolation:
        return None  # the slot was taken by a parallel request with another key: nothing written
    if not written or not written[0]:
        return None  # the key or the slot was taken by a parallel request: nothing written
    return ResponseRead(
        id=found.new_id,
        participant_id=participant.id,
        wave=body.wave,
        instrument=instrument.code,
        instrument_version=str(instrument.version),
        answers=answers,
        external_scores=external_scores,
        completed_at=completed_at,
        days=(completed_at.astimezone(ZoneInfo(study.time_zone)).date() - participant.enrolled_on).days,
        mode="rest",
        entered_by=actor.user_id,
        out_of_window=out_of_window,
        version=1,
        status=status,
        created_at=now,
        updated_at=now,
        dates="calendar",
        scores=[ScoreRead(**v) for v in values],
        alerts=[],
    ).model_dump_json()
