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
        compare_type=True,
        render_item=render_item,
        literal_binds=url is not None,
    )


def run_migrations_offline() -> None:
    _configure(url=_url())
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url(), pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            _configure(connection=conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
