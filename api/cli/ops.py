"""Set-up and serving: migrate, downgrade, backup, restore, serve, demo and the reminder worker."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    pass

from api.cli.core import _engine, _fail, _settings, _warn_if_owner, app


@app.command()
def migrate(revision: str = typer.Argument("head", help="target revision")) -> None:
    """Apply database migrations (alembic upgrade) to DATABASE_URL.

    With PEERLENS_MIGRATION_DATABASE_URL (PostgreSQL) the migrations run as that role, the owner
    of the tables, and the role of DATABASE_URL is then granted what the service needs: on the
    audit trail SELECT and INSERT only.
    """
    from api.dbroles import grant_service_role, service_role
    from api.migrate import upgrade

    settings = _settings()
    owner_url = settings.migration_database_url
    upgrade(owner_url or settings.database_url, revision)
    typer.echo(f"database at revision {revision}")
    if owner_url and settings.database_url.startswith("postgresql"):
        role = service_role(settings.database_url)
        if not role:
            _fail("DATABASE_URL names no user: the service role cannot be granted")
        try:
            grant_service_role(owner_url, role)
        except ValueError as exc:
            _fail(str(exc))
        typer.echo(f"service role {role}: tables granted, audit trail append-only")


@app.command("downgrade", context_settings={"ignore_unknown_options": True})
def downgrade_cmd(
    revision: str = typer.Argument(..., help="target revision: an id from CHANGELOG.md, -1 for one step, or base"),
) -> None:
    """Downgrade the schema of DATABASE_URL (refused, and rolled back, where it would delete data)."""
    from api.db import make_engine
    from api.migrate import current_revision, downgrade
    from migrations.policy import DowngradeRefused

    settings = _settings()
    url = settings.migration_database_url or settings.database_url  # schema changes run as the owner
    try:
        downgrade(url, revision)
    except DowngradeRefused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            now = current_revision(conn)
    finally:
        engine.dispose()
    typer.echo(f"database downgraded to revision {now or 'base (empty)'}")


@app.command("backup")
def backup_cmd(
    output: str | None = typer.Option(
        None, "-o", "--output", help="backup file (default: backups/peerlens-<UTC time>.sqlite or .dump)"
    ),
    database_url: str | None = typer.Option(None, "--database-url", help="database to back up (default: DATABASE_URL)"),
    role: str | None = typer.Option(None, "--role", help="PostgreSQL: SET ROLE for the dump (pg_dump --role)"),
    pg_dump: str | None = typer.Option(None, "--pg-dump", help="PostgreSQL: the pg_dump program to use"),
) -> None:
    """Back up the database while the service runs: one consistent file, mode 0600, and a manifest.

    SQLite: the online backup API. PostgreSQL: pg_dump --format=custom on one exported snapshot.
    The manifest (FILE.manifest.json) holds the release, schema revision, row counts and SHA-256.
    """

    from api.backup import BackupError, backup

    url = database_url or _settings().database_url
    if output is None:
        suffix = "sqlite" if url.startswith("sqlite") else "dump"
        output = f"backups/peerlens-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.{suffix}"
    try:
        m = backup(url, Path(output), role=role, pg_dump=pg_dump)
    except BackupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"backup written: {output} ({m.bytes:,} bytes, sha256 {m.sha256[:16]}...)")
    typer.echo(
        f"manifest: {output}.manifest.json (Peerlens {m.peerlens_version}, schema {m.schema_revision}, "
        f"{len(m.tables)} tables, {m.rows:,} rows)"
    )


@app.command("restore")
def restore_cmd(
    path: str = typer.Argument(..., help="a file written by peerlens backup (or pg_dump --format=custom)"),
    database_url: str | None = typer.Option(
        None, "--database-url", help="the EMPTY database to restore into (default: DATABASE_URL)"
    ),
    no_owner: bool = typer.Option(False, "--no-owner", help="PostgreSQL: objects owned by the restoring role"),
    role: str | None = typer.Option(None, "--role", help="PostgreSQL: SET ROLE before restoring"),
    pg_restore: str | None = typer.Option(None, "--pg-restore", help="PostgreSQL: the pg_restore program to use"),
) -> None:
    """Restore a backup into an empty database (refused otherwise) and check it against its manifest."""
    from api.backup import BackupError
    from api.migrate import head_revision
    from api.restore import restore

    url = database_url or _settings().database_url
    try:
        result = restore(path, url, pg_restore=pg_restore, no_owner=no_owner, role=role)
    except BackupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    rows = sum(result.tables.values())
    check = "row counts match the manifest" if result.verified else "no manifest: row counts not checked"
    typer.echo(f"restored {path}: {len(result.tables)} tables, {rows:,} rows, schema {result.schema_revision}; {check}")
    if result.schema_revision != head_revision():
        typer.echo(f"the schema is older than this release's ({head_revision()}): run peerlens migrate next")


def _event_loop() -> str:
    """What uvicorn's "auto" loop and HTTP settings pick here: uvloop and httptools when installed."""
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"{loop}, {http}"


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="interface to bind"),
    port: int = typer.Option(8000, help="port"),
    workers: int = typer.Option(
        1, min=1, help="server processes, each with its own connection pool (PostgreSQL only; about one per core)"
    ),
    reload: bool = typer.Option(False, help="restart on code changes (development)"),
    forwarded_allow_ips: str | None = typer.Option(
        None,
        "--forwarded-allow-ips",
        envvar="FORWARDED_ALLOW_IPS",
        help="addresses of reverse proxies whose X-Forwarded-For/-Proto are trusted (default: none)",
    ),
) -> None:
    """Serve the API (OpenAPI UI at /docs).

    Links and emails use PEERLENS_BASE_URL; when it is not set they point at this server's own
    address and port. X-Forwarded-For is ignored unless --forwarded-allow-ips names the proxy.
    The server runs on uvloop with the httptools parser (uvicorn[standard]) where they are installed.
    """

    import uvicorn

    settings = _settings()
    if workers > 1 and settings.database_url.startswith("sqlite"):
        typer.echo(
            "error: --workers > 1 needs PostgreSQL (SQLite lets one process write at a time); "
            "set DATABASE_URL to a PostgreSQL database or serve with one worker",
            err=True,
        )
        raise typer.Exit(code=2)
    if workers > 1 and reload:
        typer.echo("error: --reload runs one process; drop --workers or --reload", err=True)
        raise typer.Exit(code=2)
    if "base_url" not in settings.model_fields_set:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        shown = f"[{shown}]" if ":" in shown else shown
        os.environ["PEERLENS_BASE_URL"] = f"http://{shown}:{port}"
        from api.config import get_settings

        get_settings.cache_clear()
        settings = _settings()
    engine = _engine(settings)  # one clear line, not a traceback per request, when the schema is missing
    _warn_if_owner(engine)
    typer.echo(
        f"serving on http://{host}:{port} with {workers} worker{'s' if workers > 1 else ''} "
        f"({_event_loop()}) (links and emails: {settings.base_url})"
    )
    if settings.audit_seal_seconds > 0:
        from api.audit.chain import Sealer

        Sealer(engine, settings.audit_seal_seconds).start()  # one per server, whatever --workers
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        reload=reload,
        log_level="info",
        # uvicorn trusts X-Forwarded-For from 127.0.0.1 by default; the service trusts no proxy
        # unless told which, so the failed-attempt limiter sees real client addresses.
        proxy_headers=bool(forwarded_allow_ips),
        forwarded_allow_ips=forwarded_allow_ips or "",
    )


@app.command()
def demo(
    participants: int = typer.Option(60, "--participants", "-n", min=3, help="synthetic participants"),
    seed: int = typer.Option(20261125, help="seed of the synthetic cohort"),
) -> None:
    """Load the demo study (idempotent) and print API tokens for a demo admin, coordinator and analyst."""
    from api.demo import load_demo

    settings = _settings()
    _engine(settings).dispose()
    result = load_demo(
        settings.database_url, n_participants=participants, seed=seed, base_url=settings.base_url, realist=True
    )
    typer.echo(result.summary())


@app.command()
def worker(
    interval: float = typer.Option(60.0, "--interval", min=0.1, help="seconds between rounds"),
    once: bool = typer.Option(False, "--once", help="one round (plan, then send all that is due), then exit"),
    plan: bool = typer.Option(True, "--plan/--no-plan", help="run the planner before dispatching"),
    batch: int = typer.Option(50, "--batch", min=1, max=1000, help="reminders claimed per transaction"),
    worker_id: str | None = typer.Option(None, "--worker-id", help="name in claimed_by (default host:pid)"),
    study: list[int] | None = typer.Option(None, "--study", help="send only for this study id; repeatable"),
    quiet: bool = typer.Option(False, "--quiet", help="no per-round summary"),
) -> None:
    """Plan and send due reminders (any number of workers may share one PostgreSQL database)."""
    import logging

    from api.licensed.service import load_licensed
    from api.reminders.dispatcher import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings()
    engine = _engine(settings)
    try:
        load_licensed(engine)
        run_worker(
            engine,
            settings,
            interval=interval,
            once=once,
            plan=plan,
            batch=batch,
            worker_id=worker_id,
            study_ids=study or None,
            echo=None if quiet else typer.echo,
        )
    except KeyboardInterrupt:
        pass
    finally:
        engine.dispose()


# --- qualitative: transcripts and joint displays (same services as the API, no HTTP) -----------
