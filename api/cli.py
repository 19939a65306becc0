"""The ``peerlens`` command.

Each command is one function; a domain that needs a command (``worker``, ``export``,
``analyze``) adds one decorated function below the marked line.

Examples
--------
.. code-block:: console

    $ peerlens migrate
    $ peerlens demo --participants 120
    $ peerlens users create ana@example.org --role coordinator --site north
    $ peerlens users list
    $ peerlens users revoke ana@example.org --token plk_AbC123xy --reason "laptop lost"
    $ peerlens serve --port 8000
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlmodel import Session

    from api.config import Settings
    from api.errors import ApiError
    from api.studies.models import Study

# No local variables in tracebacks: they would print study data and contact details.
app = typer.Typer(
    help="Peerlens: data capture and analysis of peer-support evaluations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
users_app = typer.Typer(
    help="Manage users and their API tokens.", no_args_is_help=True, pretty_exceptions_show_locals=False
)
app.add_typer(users_app, name="users")
audit_app = typer.Typer(
    help="Check the audit trail's hash chain; seal new rows into it.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(audit_app, name="audit")


def _fail(message: str) -> NoReturn:
    """Stop with one line on stderr (no traceback) and exit status 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


def _settings():
    """The settings, or one clear line when the environment is not acceptable (e.g. production
    without a secret key)."""
    from pydantic import ValidationError

    from api.config import get_settings
    from api.studies import dates

    try:
        settings = get_settings()
    except ValidationError as exc:
        _fail("; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors()))
    dates.configure(settings.dates_before_start_days, settings.dates_future_minutes)
    return settings


def _warn_if_owner(engine) -> None:
    """Say so when the service's PostgreSQL role owns the audit table (it could then disable the
    audit triggers): production runs as a role that does not (README, "Database roles")."""
    if engine.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    with engine.connect() as conn:
        owner = conn.execute(
            text("SELECT tableowner = current_user FROM pg_tables WHERE tablename = 'audit_event'")
        ).scalar()
    if owner:
        typer.echo(
            "warning: the service connects as the owner of the tables, which can disable the audit "
            "trail's triggers; run it as a role without ownership (peerlens migrate with "
            "PEERLENS_MIGRATION_DATABASE_URL grants one)",
            err=True,
        )


def _engine(settings=None):
    """An engine on DATABASE_URL once the schema is known to be there and current."""
    from api.db import engine_from_settings
    from api.migrate import schema_problem

    settings = settings or _settings()
    problem = schema_problem(settings.database_url)
    if problem:
        _fail(problem)
    return engine_from_settings(settings)


@dataclass
class _StudyRun:
    """What a command on one study works with: settings, engine, an open session and the study."""

    settings: Settings
    engine: Engine
    session: Session
    study: Study


@contextmanager
def _study_session(study_id: int) -> Iterator[_StudyRun]:
    """The study ``study_id`` in an open session (the command commits it), with the instruments
    imported from REDCap dictionaries registered; the engine is disposed afterwards."""
    from sqlmodel import Session

    from api.interop.service import load_custom_instruments
    from api.licensed.service import load_licensed
    from api.studies.models import Study

    settings = _settings()
    engine = _engine(settings)
    try:
        load_custom_instruments(engine)
        load_licensed(engine)
        with Session(engine, expire_on_commit=False) as session:
            study = session.get(Study, study_id)
            if study is None:
                raise typer.BadParameter("no such study", param_hint="STUDY")
            yield _StudyRun(settings, engine, session, study)
    finally:
        engine.dispose()


def _bad_parameter(exc: ApiError, hints: dict[str, str] | None = None) -> typer.BadParameter:
    """A service's 4xx as the command's usage error, naming the option the field came from."""
    err = exc.errors[0]
    names = [str(part) for part in err["loc"] if isinstance(part, str) and part not in ("body", "query", "path")]
    if hints is not None:
        return typer.BadParameter(err["msg"], param_hint=hints.get(names[0] if names else "", "STUDY"))
    return typer.BadParameter(err["msg"], param_hint=names[-1] if names else "STUDY")


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
    from pathlib import Path

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
    import os

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


@users_app.command("create")
def users_create(
    email: str = typer.Argument(..., help="the user's email (their login name)"),
    role: str = typer.Option(..., "--role", help="admin | coordinator | analyst | evaluator"),
    site: list[str] | None = typer.Option(None, "--site", help="site code (or STUDY_ID:CODE); repeat for more"),
    expires: datetime | None = typer.Option(None, "--expires", help="token expiry, e.g. 2027-01-31 (UTC)"),
) -> None:
    """Create a user and print a new API token (shown once; only its hash is stored)."""
    from api.auth.policy import ROLES
    from api.users import create_with_token

    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}", param_hint="--role")
    if role == "coordinator" and not site:
        raise typer.BadParameter("a coordinator needs at least one --site", param_hint="--site")
    _print_token(
        lambda session, expires_at: create_with_token(session, email, role, site or [], expires_at=expires_at), expires
    )


def _print_token(issue, expires: datetime | None) -> None:
    """Run ``issue(session, expires_at)`` in one transaction and print the token it returns."""
    from sqlmodel import Session

    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    engine = _engine()
    try:
        with Session(engine) as session:
            try:
                token = issue(session, expires)
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from None
            session.commit()
    finally:
        engine.dispose()
    typer.echo(token)


@users_app.command("token")
def users_token(
    email: str = typer.Argument(..., help="an existing user's email"),
    expires: datetime | None = typer.Option(None, "--expires", help="token expiry (UTC)"),
    redcap: bool = typer.Option(
        False, "--redcap", help="REDCap's format (32 hex characters) for REDCap clients such as PyCap"
    ),
) -> None:
    """Issue another API token for an existing user."""
    from api.users import new_token_for

    _print_token(
        lambda session, expires_at: new_token_for(session, email, expires_at=expires_at, redcap=redcap), expires
    )


def _admin_change(change) -> None:
    """Run ``change(session)`` in one transaction as the system actor (audited, source "system")."""
    from sqlmodel import Session

    engine = _engine()
    try:
        with Session(engine) as session:
            try:
                message = change(session)
            except (LookupError, PermissionError, ValueError) as exc:
                _fail(str(exc).strip("'\""))
            session.commit()
    finally:
        engine.dispose()
    typer.echo(message)


@users_app.command("list")
def users_list(as_json: bool = typer.Option(False, "--json", help="one JSON document instead of a table")) -> None:
    """List users: role, sites, active state and their tokens (prefix and state only)."""
    import json as _json

    from sqlmodel import Session

    from api.users import list_users

    engine = _engine()
    try:
        with Session(engine) as session:
            rows = list_users(session)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(_json.dumps([r.model_dump(mode="json") for r in rows], indent=1))
        return
    typer.echo(f"{'id':>4}  {'email':<32} {'role':<12} {'active':<6}  {'tokens (live/all)':<18} sites")
    for r in rows:
        live = sum(t.state == "live" for t in r.tokens)
        typer.echo(
            f"{r.id:>4}  {r.email:<32} {r.role:<12} {'yes' if r.active else 'no':<6}  "
            f"{f'{live}/{len(r.tokens)}':<18} {', '.join(r.sites) or '-'}"
        )
        for t in r.tokens:
            typer.echo(f"{'':>6}token {t.id}: {t.prefix}…  {t.state}")


@users_app.command("revoke")
def users_revoke(
    user: str = typer.Argument(..., help="email or id"),
    token: str | None = typer.Option(None, "--token", help="token id or prefix (plk_…); default: every live token"),
    reason: str | None = typer.Option(None, "--reason", help="recorded in the audit trail"),
) -> None:
    """Revoke a user's token (or all of them); the next request with it gets 401."""
    from api.auth.service import Actor
    from api.users import revoke_tokens

    def change(session):
        ids = revoke_tokens(session, user, Actor.system(), token=token, reason=reason)
        return f"revoked {len(ids)} token(s)" + (f": {', '.join(map(str, ids))}" if ids else "")

    _admin_change(change)


@users_app.command("password")
def users_password(
    user: str = typer.Argument(..., help="the user's email"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="read the password from standard input"),
) -> None:
    """Set a user's console password (argon2id hash; at least 12 characters). Prompts twice unless --password-stdin."""
    import sys

    from api.auth.service import Actor
    from api.console.auth import find_user, set_password
    from api.errors import ApiError

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Console password", hide_input=True, confirmation_prompt=True)

    def change(session):
        found = find_user(session, user)
        if found is None:
            raise LookupError(f"no user {user}")
        try:
            set_password(session, found, password, Actor.system())
        except ApiError as exc:
            raise ValueError(str(exc)) from None
        return f"console password set for {found.email}"

    _admin_change(change)


@users_app.command("totp")
def users_totp(user: str = typer.Argument(..., help="the user's email")) -> None:
    """Turn on the console's second factor for a user: prints a new TOTP secret and its otpauth:// URI
    (enter either in an authenticator app). A new secret replaces the old one."""
    from api.auth.service import Actor
    from api.console.auth import enable_totp, find_user, provisioning_uri
    from api.errors import ApiError

    def change(session):
        found = find_user(session, user)
        if found is None:
            raise LookupError(f"no user {user}")
        try:
            secret = enable_totp(session, found, Actor.system())
        except ApiError as exc:
            raise ValueError(str(exc)) from None
        return f"secret: {secret}\nuri: {provisioning_uri(secret, found.email)}"

    _admin_change(change)


@users_app.command("deactivate")
def users_deactivate(
    user: str = typer.Argument(..., help="email or id"),
    reason: str | None = typer.Option(None, "--reason", help="recorded in the audit trail"),
) -> None:
    """Deactivate a user: all their tokens stop working at once (reversible with `activate`)."""
    from api.auth.service import Actor
    from api.users import set_active

    _admin_change(lambda s: f"deactivated {set_active(s, user, Actor.system(), False, reason=reason).email}")


@users_app.command("activate")
def users_activate(
    user: str = typer.Argument(..., help="email or id"),
    reason: str | None = typer.Option(None, "--reason", help="recorded in the audit trail"),
) -> None:
    """Reactivate a deactivated user (tokens neither revoked nor expired work again)."""
    from api.auth.service import Actor
    from api.users import set_active

    _admin_change(lambda s: f"activated {set_active(s, user, Actor.system(), True, reason=reason).email}")


@audit_app.command("verify")
def audit_verify(
    max_delay: float = typer.Option(
        3600.0, "--max-delay", help="seconds a transaction may take; older unsealed times count as back-dated"
    ),
    head: str | None = typer.Option(
        None, "--head", help="SEQ:HASH printed by an earlier verify: it must still be there"
    ),
    as_json: bool = typer.Option(False, "--json", help="the report as JSON"),
    seal_first: bool = typer.Option(False, "--seal", help="seal waiting rows before checking"),
) -> None:
    """Recompute every row's MAC and the whole chain; exit status 1 when anything was tampered with.

    Keep the printed head (seq:hash) somewhere else (the operations log): a later verify with
    --head shows the chain still reaches it, i.e. no rows were cut off its end.
    """
    import json as _json
    from datetime import timedelta

    from sqlmodel import Session

    from api.audit.chain import seal, verify

    engine = _engine()
    try:
        if seal_first:
            seal(engine)
        with Session(engine) as session:
            report = verify(session, max_delay=timedelta(seconds=max_delay), expect_head=head)
    finally:
        engine.dispose()
    typer.echo(_json.dumps(report.as_dict(), indent=1) if as_json else "\n".join(report.lines()))
    if not report.ok:
        raise typer.Exit(code=1)


@audit_app.command("seal")
def audit_seal(full: bool = typer.Option(False, "--full", help="search every row, not only recent ones")) -> None:
    """Seal rows not yet in the chain (the worker and the server do this every round)."""
    from api.audit.chain import seal

    engine = _engine()
    try:
        n = seal(engine, full=full)
    finally:
        engine.dispose()
    typer.echo(f"sealed {n} row(s)")


# ---- commands of other domains (worker, export, analyze): one function each, below -------------


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


@app.command("joint-display")
def joint_display_cmd(
    study: int = typer.Argument(..., help="study id"),
    theme: list[str] = typer.Option(..., "--theme", help="code key or id; repeatable"),
    output: str = typer.Option(..., "-o", "--output", help="directory to write into"),
    scale: list[str] | None = typer.Option(None, "--scale", help="outcome scale; repeatable"),
    baseline: str | None = typer.Option(None, help="baseline wave (default: first observation)"),
    followup: str | None = typer.Option(None, help="follow-up wave (default: last observation)"),
    arm: str | None = typer.Option(None, help="restrict to one arm"),
    quotes: int = typer.Option(2, min=0, max=10, help="exemplar quotes per row"),
    plot_format: str = typer.Option("svg", "--plot-format", help="svg | png"),
) -> None:
    """Themes against outcome change: writes joint-display.csv, .json and a plot into OUTPUT.

    Runs with the analyst's view (de-identified outcomes and quotes).
    """
    import json as _json
    from pathlib import Path

    import qualitative
    from api.audit.service import record
    from api.auth.service import Actor
    from api.errors import ApiError
    from api.jsonable import records
    from api.transcripts.analysis import joint_table
    from api.transcripts.schemas import JointDisplayRequest

    if plot_format not in ("svg", "png"):
        raise typer.BadParameter("must be svg or png", param_hint="--plot-format")
    actor = Actor(user_id=None, role="analyst", source="system")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    body = JointDisplayRequest(
        themes=theme,
        scales=scale or None,
        baseline=baseline,
        followup=followup,
        arm=arm,
        quotes=quotes,
        plot_format=plot_format,
    )
    with _study_session(study) as run:
        try:
            table, themes = joint_table(run.session, run.study, actor, body, run.settings)
        except ApiError as exc:
            raise _bad_parameter(exc) from None
        flat = table.assign(quotes=table["quotes"].map(lambda qs: " | ".join(qs)))
        flat.to_csv(out / "joint-display.csv", index=False)
        (out / "joint-display.json").write_text(_json.dumps(records(table), indent=2))
        qualitative.plot_joint_display(table, out / f"joint-display.{plot_format}")
        record(
            run.session,
            Actor.system(),
            "create",
            "joint_display",
            "cli",
            study_id=run.study.id,
            after={"themes": themes, "scales": scale or None, "rows": len(table)},
        )
        run.session.commit()
    typer.echo(f"{len(table)} row(s): {out / 'joint-display.csv'}, {out / f'joint-display.{plot_format}'}")


@app.command("import-transcript")
def import_transcript_cmd(
    study: int = typer.Argument(..., help="study id"),
    path: str = typer.Argument(..., help=".txt, .md, .vtt, .srt or .docx"),
    participant: list[str] = typer.Option(..., "--participant", help="study code; repeat for a focus group"),
    wave: str | None = typer.Option(None, help="wave code"),
    kind: str | None = typer.Option(None, help="interview | focus_group"),
    speaker_map: str | None = typer.Option(None, "--speaker-map", help='JSON {"label": "study code"}'),
) -> None:
    """Import a transcript file: de-identified with the participants' vault identifiers, then stored.

    Prints the transcript id, whether statistical NER ran, and counts of replaced identifiers.
    """
    from pathlib import Path

    from api.auth.service import Actor
    from api.errors import ApiError
    from api.transcripts import service

    if kind not in (None, "interview", "focus_group"):
        raise typer.BadParameter("must be interview or focus_group", param_hint="--kind")
    file = Path(path)
    if not file.is_file():
        raise typer.BadParameter("no such file", param_hint="PATH")
    with _study_session(study) as run:
        try:
            row, _ = service.upload_transcript(
                run.session,
                run.study,
                Actor.system(source="import"),
                data=file.read_bytes(),
                filename=file.name,
                participants=participant,
                wave=wave,
                kind=kind,
                fmt=None,
                title=None,
                interviewer_labels=None,
                speaker_map=service.parse_speaker_map(speaker_map),
                settings=run.settings,
            )
        except ApiError as exc:
            raise _bad_parameter(exc) from None
        run.session.commit()
    counts = ", ".join(f"{k} {v}" for k, v in row.replacement_counts.items()) or "none"
    typer.echo(f"transcript {row.id}: {len(row.turns)} turns, NER {row.ner}, replaced: {counts}")


# --- end qualitative


@app.command()
def analyze(
    study: int = typer.Argument(..., help="study id"),
    outdir: str | None = typer.Option(
        None, "--outdir", help="folder to write (default: PEERLENS_ARTIFACT_DIR/analyses/STUDY/<run id>)"
    ),
    outcome: list[str] | None = typer.Option(
        None,
        "--outcome",
        help="scale to model, e.g. pam13_activation; repeatable (default: the standard scales the study collects)",
    ),
    mcid: list[str] | None = typer.Option(
        None, "--mcid", help="SCALE=VALUE minimal important difference for a scale without a published one; repeatable"
    ),
    fmt: str = typer.Option("png", "--format", help="plot files: png | svg"),
    followup: str | None = typer.Option(
        None, "--followup", help="wave of the primary analysis, change and responders (default: the last wave)"
    ),
    imputations: int = typer.Option(20, "--imputations", help="imputations of the missing-data analysis (2-100)"),
) -> None:
    """Run the standard analyses on a study's current export (de-identified, as an analyst sees it) and
    write CSV tables, plots and report.md to a folder (same service as the API, no HTTP)."""
    from pathlib import Path

    from api.analyses.service import write_report
    from api.artifacts import ArtifactStore
    from api.auth.service import Actor
    from api.errors import ApiError

    if fmt not in ("png", "svg"):
        raise typer.BadParameter("must be png or svg", param_hint="--format")
    actor = Actor(user_id=None, role="analyst", source="system")
    with _study_session(study) as run:
        folder = Path(outdir) if outdir else ArtifactStore.from_settings(run.settings).new_run("analyses", study).folder
        try:
            written = write_report(
                run.session,
                run.study,
                actor,
                folder,
                outcomes=outcome,
                mcids=mcid,
                fmt=fmt,
                secret=run.settings.secret_key,
                followup=followup,
                imputations=imputations,
            )
        except ApiError as exc:
            hints = {"outcome": "--outcome", "mcid": "--mcid", "followup": "--followup", "imputations": "--imputations"}
            raise _bad_parameter(exc, hints) from None
        run.session.commit()
    tables = sum(1 for k in written if k.startswith("table:"))
    plots = sum(1 for k in written if k.startswith("plot:"))
    typer.echo(f"{tables} tables, {plots} plots and report.md written to {folder.resolve()}")


@app.command("realist-table")
def realist_table_cmd(
    study: int = typer.Argument(..., help="study id"),
    output: str = typer.Option(..., "-o", "--output", help="file to write (.csv or .json)"),
    fdr: float = typer.Option(0.05, "--fdr", help="false-discovery rate of the Benjamini-Hochberg step"),
    min_per_cell: int = typer.Option(5, "--min-per-cell", help="fewest participants per arm in and out of a context"),
    arm: str | None = typer.Option(None, "--arm", help="intervention arm (a neutral letter while blinded)"),
    reference: str | None = typer.Option(None, "--reference", help="comparison arm (a letter while blinded)"),
) -> None:
    """Write the study's realist output table: every CMO configuration with its estimate and its
    qualitative evidence (de-identified, as an analyst sees it; same service as the API)."""
    import json as _json
    from pathlib import Path

    from api.auth.service import Actor
    from api.context.realist import study_realist_table, table_csv
    from api.errors import ApiError
    from api.jsonable import records

    actor = Actor(user_id=None, role="analyst", source="system")
    with _study_session(study) as run:
        try:
            table = study_realist_table(
                run.session, run.study, actor, run.settings.secret_key, arm, reference, fdr, min_per_cell
            )
        except ApiError as exc:
            raise _bad_parameter(exc) from None
    path = Path(output)
    if path.suffix == ".json":
        path.write_text(_json.dumps({"study_id": study, "rows": records(table)}, indent=1))
    else:
        path.write_text(table_csv(table))
    typer.echo(f"{len(table)} CMO configurations written to {path.resolve()}")


@app.command("report")
def report_cmd(
    study: int = typer.Argument(..., help="study id"),
    site: list[str] | None = typer.Option(None, "--site", help="site code to cover; repeatable (default: every site)"),
    pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="also print the report to PDF (headless Chromium)"),
    outdir: str | None = typer.Option(None, "--outdir", help="also copy report.html (and report.pdf) to this folder"),
) -> None:
    """Write the trial report (CONSORT flow, Table 1, outcomes, harms, attrition, reproducibility) as one
    self-contained HTML file and its PDF, as an analyst sees the study (de-identified)."""
    import shutil
    from pathlib import Path

    from api.auth.service import Actor
    from api.errors import ApiError
    from api.reports.schemas import ReportIn
    from api.reports.service import build

    actor = Actor(user_id=None, role="analyst", source="system")
    with _study_session(study) as run:
        try:
            out = build(run.session, run.study, actor, run.settings, ReportIn(sites=site or None, pdf=pdf))
        except ApiError as exc:
            raise _bad_parameter(exc, {"sites": "--site"}) from None
        run.session.commit()
    folder = Path(run.settings.artifact_dir) / "reports" / str(study) / out.run_id
    files = [folder / "report.html"] + ([folder / "report.pdf"] if out.pdf_url else [])
    if outdir:
        target = Path(outdir)
        target.mkdir(parents=True, exist_ok=True)
        files = [Path(shutil.copy2(f, target / f.name)) for f in files]
    for f in files:
        typer.echo(f"written: {f.resolve()}")
    absent = [s.title for s in out.sections if not s.present]
    if absent:
        typer.echo("sections without data yet: " + "; ".join(absent))
    if out.pdf_error:
        typer.echo(f"no PDF: {out.pdf_error}", err=True)
    typer.echo(f"data snapshot sha256 {out.data_hash}")


#: Export shapes beside the cohort shapes: the REDCap records file and the CDISC ODM 1.3.2 file.
OTHER_SHAPES = ("redcap", "odm")


@app.command("export")
def export_cmd(
    study: int = typer.Argument(..., help="study id"),
    shape: str = typer.Option(
        "long",
        "--shape",
        help="long | wide | items | safety | delivery shapes | fidelity | adaptations | redcap | odm (CDISC ODM 1.3.2)",
    ),
    fmt: str = typer.Option("csv", "--format", help="csv | json | parquet | dta | sav"),
    output: str = typer.Option(..., "-o", "--output", help="file to write"),
    waves: str | None = typer.Option(None, help="comma-separated wave codes"),
    instruments: str | None = typer.Option(None, help="comma-separated instrument codes"),
    sites: str | None = typer.Option(None, help="comma-separated site codes"),
    items: bool = typer.Option(False, "--items", help="wide: a column per item"),
    identified: bool = typer.Option(
        False, "--identified", help="staff export with identifiers (default: analyst view)"
    ),
    dictionary: bool = typer.Option(True, "--dictionary/--no-dictionary", help="also write FILE.dictionary.json"),
    keep_formulas: bool = typer.Option(
        False, "--keep-formulas", help="CSV: write cells starting with = + - @ verbatim (default: prefix ')"
    ),
    url: str | None = typer.Option(
        None,
        "--url",
        help="export from a running server (e.g. http://host:8000) as the --token user, verified against the "
        "export's receipt (bytes, SHA-256, complete) before the file is kept",
    ),
    token: str | None = typer.Option(None, "--token", envvar="PEERLENS_TOKEN", help="bearer token for --url"),
) -> None:
    """Export a study's cohort (same service as the API, no HTTP), with a progress bar.

    Without --identified the file is exactly what an analyst receives (de-identified). With --url
    the export is downloaded over HTTP and kept only if it matches the server's receipt. Either way
    the file appears under its name only once complete (it is written to FILE.part first).
    """
    import json as _json

    if url is not None:
        _export_over_http(url, token, study, shape, fmt, output, waves, instruments, sites, items, keep_formulas)
        return

    from sqlmodel import Session
    from tqdm import tqdm

    from api.auth.service import Actor
    from api.errors import ApiError
    from api.exports import service, writers
    from api.interop.redcap_export import csv_chunks

    if shape not in service.SHAPES + OTHER_SHAPES:
        raise typer.BadParameter(f"must be one of {', '.join(service.SHAPES + OTHER_SHAPES)}", param_hint="--shape")
    if shape == "odm":
        fmt = "xml"  # the one serialisation ODM has
    elif fmt not in writers.FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(writers.FORMATS)}", param_hint="--format")
    # The command runs as the system; --identified keeps staff rights, otherwise the analyst view.
    actor = Actor(user_id=None, role="system" if identified else "analyst", source="system")
    filters = service.ExportFilters(
        waves=[waves] if waves else None,
        instruments=[instruments] if instruments else None,
        sites=[sites] if sites else None,
        identifiers=identified,
        items=items,
        escape_formulas=not keep_formulas,
    )
    with _study_session(study) as run:
        session = run.session
        try:
            plan = service.plan_export(session, run.study, actor, filters, secret=run.settings.secret_key)
        except ApiError as exc:
            raise _bad_parameter(exc) from None
        bar = tqdm(total=service.participants_in(session, plan), unit="participant", desc=f"export {shape}")
        complete = False
        part = output + ".part"
        try:
            with open(part, "wb") as fh:
                if shape == "odm":
                    from api.interop import odm

                    for chunk in odm.chunks(session, plan):
                        fh.write(chunk)
                    bar.update(plan.rows)
                elif shape == "redcap":
                    for chunk in csv_chunks(
                        session, plan, progress=lambda batch: bar.update(len({r[0] for r in batch}))
                    ):
                        fh.write(chunk)
                else:

                    def counted():
                        for df in service.iter_shape(session, plan, shape):
                            bar.update(int(df["participant"].nunique()) if len(df) else 0)
                            yield df

                    cols = service.columns(plan, shape)
                    dd = service.dictionary(plan, shape)
                    for chunk in writers.write(fmt, counted(), cols, dd, escape_formulas=not keep_formulas):
                        fh.write(chunk)
                    if dictionary:
                        with open(output + ".dictionary.json", "w", encoding="utf-8") as dfh:
                            _json.dump(dd, dfh, ensure_ascii=False, indent=1, default=str)
            os.replace(part, output)
            complete = True
        finally:
            bar.close()
            if not complete and os.path.exists(part):
                os.remove(part)
            with Session(run.engine) as audit_session:
                service.audit_export(
                    audit_session, plan, shape=shape, fmt="csv" if shape == "redcap" else fmt, complete=complete
                )  # (odm: fmt is "xml")
                audit_session.commit()
    typer.echo(f"{plan.rows} rows written to {output}")


def _export_over_http(url, token, study, shape, fmt, output, waves, instruments, sites, items, keep_formulas):
    from urllib.parse import urlencode

    from api.exports.download import IncompleteExport, download

    params = {"format": fmt, "waves": waves, "instruments": instruments, "sites": sites}
    if items:
        params["items"] = "true"
    if keep_formulas:
        params["escape_formulas"] = "false"
    path = f"/studies/{study}/exports/{shape}"  # redcap and odm have routes of their own, without a format
    query = urlencode(
        {k: v for k, v in params.items() if v is not None and not (shape in OTHER_SHAPES and k == "format")}
    )
    try:
        got = download(f"{url.rstrip('/')}{path}?{query}", output, token)
    except IncompleteExport as exc:
        _fail(f"export not saved: {exc}")
    typer.echo(f"{got.rows} rows, {got.bytes} bytes (sha256 {got.sha256}) verified and written to {output}")


@app.command("check-dates")
def check_dates_cmd(study: int = typer.Argument(..., help="study id")) -> None:
    """List dates stored in a study that the date policy would refuse today (e.g. entered before
    it existed): participant, field, value and rule. Exit status 1 when there are any."""
    from api.studies import dates

    with _study_session(study) as run:
        found = dates.stored_problems(run.session, run.study)
        run.session.rollback()
    for f in found:
        typer.echo(f"{f['participant']}\t{f['field']}\t{f['value']}\t{f['type']}")
    if found:
        _fail(f"{len(found)} implausible date(s) in study {study}; correct them (the audit trail keeps the old value)")
    typer.echo(f"study {study}: every stored date is in the plausible range")


@app.command("import-redcap")
def import_redcap_cmd(
    study: int = typer.Argument(..., help="study id"),
    records: str = typer.Option(..., "--records", help="REDCap flat records export (CSV)"),
    dictionary: str | None = typer.Option(None, "--dictionary", help="REDCap data dictionary"),
    event: list[str] = typer.Option(..., "--event", help="EVENT=WAVE, e.g. baseline_arm_1=baseline; *=WAVE for all"),
    site: str | None = typer.Option(None, "--site", help="site of new records without a DAG"),
    dry_run: bool = typer.Option(False, "--dry-run", help="validate and report only"),
) -> None:
    """Import REDCap data into a study (one transaction; prints the JSON report)."""
    import json as _json
    from pathlib import Path

    from api.auth.service import Actor
    from api.interop.service import import_redcap

    mapping = {}
    for pair in event:
        ev, sep, wave = pair.partition("=")
        if not sep or not wave:
            raise typer.BadParameter("expected EVENT=WAVE", param_hint="--event")
        mapping[ev] = wave
    with _study_session(study) as run:
        report = import_redcap(
            run.session,
            run.study,
            Actor.system(source="import"),
            records_csv=Path(records).read_bytes(),
            event_map=mapping,
            dictionary_csv=Path(dictionary).read_bytes() if dictionary else None,
            dry_run=dry_run,
            default_site=site,
        )
        if report.committed:
            run.session.commit()
    typer.echo(_json.dumps(report.as_dict(), indent=1))
    if not report.ok:
        raise typer.Exit(code=1)


# --- safety: status and backfill (same services as the API) ---------------------------------------

licensed_app = typer.Typer(
    help="Licensed instrument content: the licensee's item wording (PAM-13, HLS-EU) and PAM-13's calibration table."
)
app.add_typer(licensed_app, name="licensed")


def _licensed_upload(kind: str, instrument: str, path: Path, scale: str | None) -> None:
    from api.auth.service import Actor
    from api.errors import ApiError
    from api.licensed.service import upload

    try:
        data = path.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}")

    def change(session):
        try:
            row = upload(session, instrument, kind, data, Actor.system(), scale=scale)
        except ApiError as exc:
            raise ValueError(exc.errors[0]["msg"]) from None
        return f"stored {kind} of {instrument} ({row.rows} rows, sha256 {row.sha256[:12]}…) as upload {row.id}"

    _admin_change(change)


@licensed_app.command("wording")
def licensed_wording(
    instrument: str = typer.Argument(..., help="instrument code: pam13, hls_eu_q16, hls_eu_q6"),
    path: Path = typer.Argument(..., help="CSV with the columns item_code,text (UTF-8)"),
) -> None:
    """Store and apply the licensee's item wording: the participant form shows it from then on."""
    _licensed_upload("wording", instrument, path, None)


@licensed_app.command("calibration")
def licensed_calibration(
    instrument: str = typer.Argument(..., help="instrument code, e.g. pam13"),
    path: Path = typer.Argument(..., help="CSV with a raw-score column and an activation-score column"),
    scale: str | None = typer.Option(None, "--scale", help="the lookup scale, when there are several"),
) -> None:
    """Store and apply the licensee's raw-to-score table: scoring yields the activation score from then on."""
    _licensed_upload("calibration", instrument, path, scale)


@licensed_app.command("list")
def licensed_list() -> None:
    """Uploaded licensed content (the newest of each instrument and kind applies)."""
    from sqlmodel import Session

    from api.auth.service import Actor
    from api.licensed.service import list_content

    engine = _engine()
    try:
        with Session(engine) as session:
            rows = list_content(session, Actor.system())
    finally:
        engine.dispose()
    for r in rows:
        typer.echo(f"{r.id:>4}  {r.instrument:<12} {r.kind:<12} {r.scale or '-':<18} {r.rows:>5} rows  {r.sha256[:12]}")


safety_app = typer.Typer(help="Safety monitoring: what needs attention, alerts for answers stored earlier.")
app.add_typer(safety_app, name="safety")


@safety_app.command("status")
def safety_status(study: int = typer.Argument(..., help="study id")) -> None:
    """Open and overdue alerts, overdue serious events, undelivered messages and set-up warnings;
    exits 1 when there is a warning (for a cron check)."""
    from api.auth.service import Actor
    from api.db import utcnow
    from api.safety.reports import status

    with _study_session(study) as run:
        out = status(run.session, run.study, Actor.system(), utcnow())
        run.session.rollback()  # a read
    for key, value in out.items():
        if key != "warnings":
            typer.echo(f"{key}: {value}")
    for w in out["warnings"]:
        typer.echo(f"warning: {w}")
    if out["warnings"]:
        raise typer.Exit(code=1)


@safety_app.command("backfill")
def safety_backfill(
    study: int = typer.Argument(..., help="study id"),
    dry_run: bool = typer.Option(False, "--dry-run", help="count the alerts, raise none"),
) -> None:
    """Raise alerts for stored answers that meet the rules in force now (answers stored before an
    upgrade or before a study rule was added); each alert is audited and its contacts are told."""
    from api.auth.service import Actor
    from api.safety.backfill import backfill

    with _study_session(study) as run:
        counts = backfill(run.session, run.study, Actor.system(source="system"))
        if dry_run:
            run.session.rollback()
        else:
            run.session.commit()
    verb = "would raise" if dry_run else "raised"
    typer.echo(f"{counts['responses']} responses checked; {verb} {counts['alerts']} alert(s)")


# --- delivery: forum-activity import and dose (same services as the API) ------------------------

delivery_app = typer.Typer(help="Process evaluation: forum-activity import, dose per participant.")
app.add_typer(delivery_app, name="delivery")


@delivery_app.command("import-forum")
def delivery_import_forum(
    study: int = typer.Argument(..., help="study id"),
    csv_path: str = typer.Argument(
        ..., metavar="CSV", help="study_code, week_start (a Monday), posts, replies, logins"
    ),
) -> None:
    """Import weekly forum activity (all or nothing; audited as one event)."""
    from pathlib import Path

    from api.auth.service import Actor
    from api.delivery.sessions import import_forum
    from api.errors import ApiError
    from api.inputguard import decode_upload

    with _study_session(study) as run:
        try:
            text = decode_upload(Path(csv_path).read_bytes(), ["body", "file"])
            out = import_forum(run.session, run.study, text, Actor.system(source="import"))
        except ApiError as exc:
            err = exc.errors[0]
            where = ", ".join(str(x) for x in err["loc"] if x != "body")
            _fail(f"{csv_path}: {where}: {err['msg']}" if where else f"{csv_path}: {err['msg']}")
        run.session.commit()
    typer.echo(f"{out.rows} rows: {out.created} new weeks, {out.updated} replaced")


@delivery_app.command("dose")
def delivery_dose(
    study: int = typer.Argument(..., help="study id"),
    by_wave: bool = typer.Option(False, "--by-wave", help="one row per participant and wave interval"),
) -> None:
    """Dose and adherence per participant as CSV on standard output (derived from the records)."""
    import csv
    import sys

    from api.delivery.dose import COLUMNS, participant_dose

    with _study_session(study) as run:
        rows = participant_dose(run.session, run.study.id, by_wave=by_wave)
        run.session.rollback()  # a read
    w = csv.DictWriter(sys.stdout, fieldnames=list(COLUMNS), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)


# --- the statistical analysis plan and unblinding (same services as the API) -----------------------

sap_app = typer.Typer(help="The statistical analysis plan: draft, lock (hash recorded), show with deviations.")
app.add_typer(sap_app, name="sap")


def _plan_json(row) -> str:
    import json

    return json.dumps(
        {
            "version": row.version,
            "status": row.status,
            "content_hash": row.content_hash,
            "locked_at": row.locked_at.isoformat() if row.locked_at else None,
            "content": row.content,
        },
        indent=2,
        sort_keys=True,
    )


@sap_app.command("draft")
def sap_draft(
    study: int = typer.Argument(..., help="study id"),
    file: str = typer.Argument(..., help="the plan as JSON (the body of POST /studies/{id}/analysis-plans)"),
    version: int | None = typer.Option(None, help="replace this draft version instead of drafting a new one"),
) -> None:
    """Draft a new version of the plan, or replace a draft (``--version``)."""
    import json
    from pathlib import Path

    from pydantic import ValidationError

    from api.auth.service import Actor
    from api.errors import ApiError
    from api.sap import service
    from api.sap.schemas import PlanContent

    try:
        content = PlanContent.model_validate(json.loads(Path(file).read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            e = exc.errors()[0]
            raise typer.BadParameter(f"{'.'.join(map(str, e['loc']))}: {e['msg']}", param_hint="FILE") from None
        raise typer.BadParameter(f"cannot read the plan: {exc}", param_hint="FILE") from None
    with _study_session(study) as run:
        actor = Actor.system(source="system")
        try:
            if version is None:
                row = service.create_draft(run.session, run.study, content, actor)
            else:
                row = service.update_draft(run.session, run.study, version, content, actor)
        except ApiError as exc:
            raise _bad_parameter(exc, {"version": "--version"}) from None
        out = _plan_json(row)
        run.session.commit()
    typer.echo(out)


@sap_app.command("lock")
def sap_lock(
    study: int = typer.Argument(..., help="study id"),
    version: int | None = typer.Option(None, help="the draft to lock (default: the open draft)"),
    confirm_hash: str | None = typer.Option(None, "--hash", help="refuse unless the draft still hashes to this"),
) -> None:
    """Lock a draft: its SHA-256 is recorded (and printed) and it can no longer change."""
    from api.auth.service import Actor
    from api.errors import ApiError
    from api.sap import service

    with _study_session(study) as run:
        if version is None:
            drafts = [p.version for p in service.list_plans(run.session, run.study) if p.status == "draft"]
            if not drafts:
                _fail("the study has no draft analysis plan to lock (peerlens sap draft STUDY FILE)")
            version = drafts[-1]
        try:
            row = service.lock(run.session, run.study, version, Actor.system(source="system"), confirm_hash)
        except ApiError as exc:
            raise _bad_parameter(exc, {"version": "--version", "confirm_hash": "--hash"}) from None
        digest, locked_at = row.content_hash, row.locked_at
        run.session.commit()
    typer.echo(f"analysis plan version {version} locked at {locked_at.isoformat() if locked_at else ''}")
    typer.echo(f"sha256 {digest}")


@sap_app.command("show")
def sap_show(
    study: int = typer.Argument(..., help="study id"),
    version: int | None = typer.Option(None, help="a version (default: the locked plan, else the latest)"),
) -> None:
    """Print a version of the plan with its hash, and its deviations from the locked plan."""
    from api.errors import ApiError
    from api.sap import blinding, service

    with _study_session(study) as run:
        plans = service.list_plans(run.session, run.study)
        if not plans:
            _fail("the study has no analysis plan yet (peerlens sap draft STUDY FILE)")
        locked = service.current_plan(run.session, run.study.id)
        chosen = version or (locked.version if locked else plans[-1].version)
        try:
            row = service.get_plan(run.session, run.study, chosen)
            devs = service.version_deviations(run.session, run.study, chosen)
        except ApiError as exc:
            raise _bad_parameter(exc, {"version": "--version"}) from None
        text = _plan_json(row)
        versions = ", ".join(f"{p.version} ({p.status})" for p in plans)
        unblinded = blinding.unblinding(run.session, run.study.id)
        when = unblinded.unblinded_at.isoformat() if unblinded else None
        run.session.rollback()  # a read
    typer.echo(text)
    typer.echo(f"versions: {versions}")
    typer.echo(f"locked plan: version {locked.version}, sha256 {locked.hash}" if locked else "locked plan: none")
    for d in devs["deviations"]:
        typer.echo(f"deviation: {d['field']}: planned {d['planned']!r}, now {d['actual']!r}")
    typer.echo(f"unblinded at {when}" if when else "blinded: analysts read arms as A, B, C…")


@app.command("unblind")
def unblind(
    study: int = typer.Argument(..., help="study id"),
    reason: str = typer.Option(..., help="why the study is unblinded now (recorded in the audit trail)"),
    yes: bool = typer.Option(False, "--yes", help="confirm: unblinding cannot be undone"),
) -> None:
    """Unblind the study: analysts see the real arms from now on (audited, irreversible)."""
    from api.auth.service import Actor
    from api.errors import ApiError
    from api.sap import blinding
    from api.studies.models import Arm
    from api.studies.service import list_children

    if not yes:
        _fail("unblinding cannot be undone; add --yes to confirm")
    if not reason.strip() or "\n" in reason or "\r" in reason:
        raise typer.BadParameter("a reason on one line is required", param_hint="--reason")
    with _study_session(study) as run:
        try:
            row = blinding.unblind(run.session, run.study, Actor.system(source="system"), reason.strip())
        except ApiError as exc:
            raise _bad_parameter(exc) from None
        at = row.unblinded_at
        key = blinding.neutral_labels(run.session, run.study.id)
        codes = {a.id: a.code for a in list_children(run.session, Arm, run.study, Actor.system())}
        run.session.commit()
    typer.echo(f"study {study} unblinded at {at.isoformat()}")
    for arm_id, label in sorted(key.items(), key=lambda kv: kv[1]):
        typer.echo(f"{label} = {codes.get(arm_id)}")


def main() -> None:
    """Console-script entry point (``peerlens``)."""
    app()


if __name__ == "__main__":
    main()
