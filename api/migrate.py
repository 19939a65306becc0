"""Running Alembic from code: ``peerlens migrate``, the demo and the test fixtures.

The configuration is built here rather than read from ``alembic.ini`` so that it works from any
working directory and from an installed package.

Examples
--------
>>> upgrade("sqlite:///./peerlens.db")  # doctest: +SKIP
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations

SCRIPT_LOCATION = Path(migrations.__file__).resolve().parent


def alembic_config(url: str | None = None) -> Config:
    """An Alembic :class:`~alembic.config.Config` for ``url`` (default: ``DATABASE_URL``)."""
    ini = SCRIPT_LOCATION.parent / "alembic.ini"
    cfg = Config(str(ini)) if ini.exists() else Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    cfg.attributes["configure_logger"] = False
    if url is not None:
        cfg.attributes["url"] = url
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    """Take the database at ``url`` down to ``revision`` (``-1``: one step).

    Raises
    ------
    migrations.policy.DowngradeRefused
        When a step would delete data; the whole downgrade is rolled back.
    """
    command.downgrade(alembic_config(url), revision)


@lru_cache
def head_revision() -> str:
    """The newest revision this code knows (what ``peerlens migrate`` upgrades to)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection) -> str | None:
    """The revision a database is at (None: not migrated), read on an open SQLAlchemy connection."""
    from alembic.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def schema_problem(url: str) -> str | None:
    """Why the database at ``url`` cannot be used as it is, in one line, or None when it is at head.

    A SQLite file that does not exist is reported, never created (connecting would create an empty
    file). Used by the command line before any command that needs the schema.
    """
    from alembic.script import ScriptDirectory
    from sqlalchemy import inspect, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from api.db import make_engine

    u = make_url(url)
    shown = u.render_as_string(hide_password=True)
    if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:"):
        if not Path(u.database).is_file():
            return f"no database file at {u.database}; run `peerlens migrate` first (or set DATABASE_URL)"
    heads = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return f"the database at {shown} has no Peerlens schema; run `peerlens migrate` first"
            current = set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except SQLAlchemyError as exc:
        return f"cannot open the database at {shown} ({type(getattr(exc, 'orig', None) or exc).__name__})"
    finally:
        engine.dispose()
    if current != heads:
        return (
            f"the database at {shown} is at revision {', '.join(sorted(current)) or 'none'} but this version "
            f"needs {', '.join(sorted(heads))}; run `peerlens migrate`"
        )
    return None
