"""The ``peerlens`` command.

This module holds the application object and the helpers every command uses; the commands live
by concern in the package's other modules (:mod:`api.cli.ops` set-up and serving,
:mod:`api.cli.accounts` users and the audit trail, :mod:`api.cli.data` exports and imports,
:mod:`api.cli.analysis` analyses and reports, :mod:`api.cli.process` safety, delivery, the analysis
plan and unblinding). A domain that needs a command adds one decorated function to the module of its
concern.

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

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
