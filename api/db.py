"""Engine factory, sessions and the naming convention shared with Alembic.

Transactions: the code that opens a session commits it, once; a function that is handed a session
never commits (it adds and flushes). One request is one transaction: routes get a
:class:`~sqlmodel.Session` from :func:`get_session`, call services and commit once. Command-line
commands, the reminder worker's steps and a streamed export's closing audit event open sessions of
their own and commit them the same way (``tests/test_architecture.py`` checks the rule).

SQLite runs every transaction as ``BEGIN IMMEDIATE`` so concurrent writers queue on the busy
timeout instead of failing on a stale snapshot; PostgreSQL uses row locks where order matters
(randomisation).

Examples
--------
>>> engine = make_engine("sqlite://")
>>> engine.dialect.name
'sqlite'
"""

from __future__ import annotations

import select
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import DateTime, event, exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, SQLModel, create_engine

from api.inputguard import install_nul_backstop

# Constraint names are stable across SQLite and PostgreSQL so that migrations can drop them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION
metadata = SQLModel.metadata


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite has no time zones: values are normalised to UTC before storage and tagged UTC on the
    way out, so application code never meets a naive datetime.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def make_engine(
    url: str,
    *,
    pool_size: int = 20,
    max_overflow: int = 20,
    busy_timeout: float = 30.0,
    echo: bool = False,
    pool_recycle: int = 1800,
) -> Engine:
    """Create an engine for ``url`` with the settings the service relies on.

    Parameters
    ----------
    url : str
        SQLAlchemy URL, e.g. ``sqlite:///./peerlens.db`` or
        ``postgresql+psycopg://postgres@127.0.0.1:5432/peerlens``.
    pool_size, max_overflow : int
        Connection pool; sized for the thread pool that runs sync routes (40 by default).
    busy_timeout : float
        Seconds a SQLite writer waits for the database lock.
    pool_recycle : int
        PostgreSQL: seconds after which a pooled connection is replaced.
    """
    u = make_url(url)
    # Statement parameters are study data and contact details: never in an exception message
    # (which a log handler might print) or in echo output.
    kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
    if u.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": busy_timeout}
        if u.database in (None, "", ":memory:"):
            kwargs["poolclass"] = StaticPool
        else:
            # As many connections as threads that run sync routes, so no request waits on the pool
            # while holding a worker thread (SQLite itself serialises the writers).
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow)
        engine = create_engine(u, **kwargs)
        _configure_sqlite(engine)
        install_nul_backstop(engine)
        return engine
    if u.get_backend_name() == "postgresql" and u.drivername == "postgresql":
        u = u.set(drivername="postgresql+psycopg")
    # No pre-ping: it costs a ``SELECT 1`` round trip on every checkout. A checkout instead looks
    # at the idle socket without talking to the server (see _drop_dead_on_checkout); recycling
    # bounds the age of a connection a firewall might have silently dropped.
    kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=False, pool_recycle=pool_recycle)
    engine = create_engine(u, **kwargs)
    event.listen(engine, "checkout", _drop_dead_on_checkout)
    install_nul_backstop(engine)
    return engine


def _drop_dead_on_checkout(dbapi_connection, _record, _proxy) -> None:
    """Refuse a pooled connection the server has closed, so the pool opens a fresh one.

    An idle connection in the pool has nothing to read; a server that restarts or terminates the
    backend sends a FATAL notice and closes the socket, which makes it readable (or EOF). Polling
    the socket is a local system call, unlike a ping. ``DisconnectionError`` makes the pool
    discard this connection and retry with a new one.
    """
    if dbapi_connection.closed or dbapi_connection.broken:
        raise exc.DisconnectionError("connection closed")
    try:
        readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
    except (OSError, ValueError) as e:
        raise exc.DisconnectionError(str(e)) from e
    if readable:
        raise exc.DisconnectionError("the server closed the connection")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Take over transaction control from pysqlite so that BEGIN IMMEDIATE can be emitted.
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def engine_from_settings(settings) -> Engine:
    """The engine described by a :class:`api.config.Settings` (its audit rows keyed by the settings' key)."""
    from api.audit.chain import audit_key, register_key

    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        busy_timeout=settings.sqlite_busy_timeout,
    )
    register_key(engine, audit_key(settings))
    return engine


def end_read(session: Session) -> None:
    """End the read transaction of a dependency on SQLite, releasing the database lock.

    FastAPI runs each sync dependency in its own worker-thread hop. On SQLite every transaction
    holds the (single) write lock, and a lock held between hops can wait for a worker thread that
    is itself waiting for the lock. Ending the transaction before the hop returns avoids that; on
    PostgreSQL reads take no such lock and this is a no-op. Loaded objects stay usable
    (sessions do not expire on commit).
    """
    if (
        session.in_transaction()
        and session.get_bind().dialect.name == "sqlite"
        and not session.new
        and not session.dirty
        and not session.deleted
    ):
        session.commit()


async def get_session(request: Request) -> AsyncIterator[Session]:
    """FastAPI dependency: a session on the application's engine, closed after the request.

    Routes commit explicitly once the service has done its work; anything not committed is rolled
    back when the session closes, so a failing request leaves nothing half-written.

    Opening a session does no I/O, and neither does closing one that holds no connection (the
    route committed), so both run on the event loop instead of costing two worker-thread hops;
    a close that must roll back a connection still runs in a worker thread.
    """
    session = Session(request.app.state.engine, expire_on_commit=False)
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()
