"""Alembic environment: the service's metadata, its naming convention and its engine settings."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

import api.models  # noqa: F401  (registers every table)
from api.db import UTCDateTime, make_engine, metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        from api.config import get_settings

        url = get_settings().database_url
    return url


def render_item(type_, obj, autogen_context):
    # Migrations use the plain column type; UTC handling is application code, not schema.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and obj.__class__.__module__.startswith("sqlmodel"):
        autogen_context.imports.add("import sqlmodel")
    return False


def _configure(connection=None, url=None):
    context.configure(
        connection=connection,
        url=url,
        target_metadata=metadata,
        render_as_batch=True,
        # One transaction for the whole run on SQLite too (Alembic's default there is none): a
        # failing or refused step then leaves the database exactly at the revision it had.
        transactional_ddl=True,
        compare_type=True,
        render_item=render_item,
        literal_binds=url is not None,
    )


def run_migrations_offline() -> None:
    _configure(url=_url())
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    """Run the migrations on ``connection`` in one transaction.

    SQLite: a batch migration (the only way to alter a column there) copies a table, drops the
    original and renames the copy; with foreign keys enforced, dropping a table that other rows
    reference fails (or cascades), so a migration that passes on an empty database would fail, or
    lose rows, on a trial's database. Following SQLite's documented procedure for schema changes,
    enforcement is switched off for the migration, every reference is checked before the commit
    (``PRAGMA foreign_key_check``; any dangling one aborts the whole upgrade), and enforcement is
    switched back on.
    """
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Outside any transaction: the pragma is a no-op inside one.
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
    try:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if dangling:
                    shown = ", ".join(f"{t} row {rowid} -> {parent}" for t, rowid, parent, _ in dangling[:10])
                    raise RuntimeError(
                        f"migration aborted: {len(dangling)} row(s) would reference missing rows ({shown})"
                    )
    finally:
        if sqlite:
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url(), pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
