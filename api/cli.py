"""The ``peerlens`` command.

Each command is one function; a domain that needs a command (``worker``, ``export``,
``analyze``) adds one decorated function below the marked line.

Examples
--------
.. code-block:: console

    $ peerlens migrate
    $ peerlens demo --participants 120
    $ peerlens users create ana@example.org --role coordinator --site north
    $ peerlens serve --port 8000
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

import typer

app = typer.Typer(help="Peerlens: data capture and analysis of peer-support evaluations.", no_args_is_help=True,
                  add_completion=False)
users_app = typer.Typer(help="Manage users and their API tokens.", no_args_is_help=True)
app.add_typer(users_app, name="users")


def _settings():
    from api.config import get_settings

    return get_settings()


@app.command()
def migrate(revision: str = typer.Argument("head", help="target revision")) -> None:
    """Apply database migrations (alembic upgrade) to DATABASE_URL."""
    from api.migrate import upgrade

    upgrade(_settings().database_url, revision)
    typer.echo(f"database at revision {revision}")


@app.command()
def serve(host: str = typer.Option("127.0.0.1", help="interface to bind"),
          port: int = typer.Option(8000, help="port"),
          workers: int = typer.Option(1, help="worker processes (PostgreSQL only)"),
          reload: bool = typer.Option(False, help="restart on code changes (development)")) -> None:
    """Serve the API (OpenAPI UI at /docs)."""
    import uvicorn

    uvicorn.run("api.main:create_app", factory=True, host=host, port=port, workers=workers, reload=reload,
                log_level="info")


@app.command()
def demo(participants: int = typer.Option(60, "--participants", "-n", min=3, help="synthetic participants"),
         seed: int = typer.Option(20261125, help="seed of the synthetic cohort")) -> None:
    """Load the demo study (idempotent) and print API tokens for a demo admin, coordinator and analyst."""
    from api.demo import load_demo

    result = load_demo(_settings().database_url, n_participants=participants, seed=seed)
    typer.echo(result.summary())


@users_app.command("create")
def users_create(email: str = typer.Argument(..., help="the user's email (their login name)"),
                 role: str = typer.Option(..., "--role", help="admin | coordinator | analyst"),
                 site: Optional[list[str]] = typer.Option(None, "--site",
                                                          help="site code (or STUDY_ID:CODE); repeat for more"),
                 expires: Optional[datetime] = typer.Option(None, "--expires",
                                                            help="token expiry, e.g. 2027-01-31 (UTC)")) -> None:
    """Create a user and print a new API token (shown once; only its hash is stored)."""
    from sqlmodel import Session

    from api.auth.models import ROLES
    from api.db import engine_from_settings
    from api.users import create_with_token

    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}", param_hint="--role")
    if role == "coordinator" and not site:
        raise typer.BadParameter("a coordinator needs at least one --site", param_hint="--site")
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=timezone.utc)
    engine = engine_from_settings(_settings())
    try:
        with Session(engine) as session:
            try:
                token = create_with_token(session, email, role, site or [], expires_at=expires)
            except ValueError as exc:
                raise typer.BadParameter(str(exc))
            session.commit()
    finally:
        engine.dispose()
    typer.echo(token)


@users_app.command("token")
def users_token(email: str = typer.Argument(..., help="an existing user's email"),
                expires: Optional[datetime] = typer.Option(None, "--expires", help="token expiry (UTC)")) -> None:
    """Issue another API token for an existing user."""
    from sqlmodel import Session

    from api.db import engine_from_settings
    from api.users import new_token_for

    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=timezone.utc)
    engine = engine_from_settings(_settings())
    try:
        with Session(engine) as session:
            try:
                token = new_token_for(session, email, expires_at=expires)
            except ValueError as exc:
                raise typer.BadParameter(str(exc))
            session.commit()
    finally:
        engine.dispose()
    typer.echo(token)


# ---- commands of other domains (worker, export, analyze): one function each, below -------------


@app.command()
def worker(interval: float = typer.Option(60.0, "--interval", min=0.1, help="seconds between rounds"),
           once: bool = typer.Option(False, "--once", help="one round (plan, then send all that is due), then exit"),
           plan: bool = typer.Option(True, "--plan/--no-plan", help="run the planner before dispatching"),
           batch: int = typer.Option(50, "--batch", min=1, max=1000, help="reminders claimed per transaction"),
           worker_id: Optional[str] = typer.Option(None, "--worker-id", help="name in claimed_by (default host:pid)"),
           study: Optional[list[int]] = typer.Option(None, "--study", help="send only for this study id; repeatable"),
           quiet: bool = typer.Option(False, "--quiet", help="no per-round summary")) -> None:
    """Plan and send due reminders (any number of workers may share one PostgreSQL database)."""
    import logging

    from api.db import engine_from_settings
    from api.reminders.dispatcher import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings()
    engine = engine_from_settings(settings)
    try:
        run_worker(engine, settings, interval=interval, once=once, plan=plan, batch=batch, worker_id=worker_id,
                   study_ids=study or None, echo=None if quiet else typer.echo)
    except KeyboardInterrupt:
        pass
    finally:
        engine.dispose()


def main() -> None:
    """Console-script entry point (``peerlens``)."""
    app()


if __name__ == "__main__":
    main()
