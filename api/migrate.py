"""Running Alembic from code: ``peerlens migrate``, the demo and the test fixtures.

The configuration is built here rather than read from ``alembic.ini`` so that it works from any
working directory and from an installed package.

Examples
--------
>>> upgrade("sqlite:///./peerlens.db")  # doctest: +SKIP
"""

from __future__ import annotations

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
    command.downgrade(alembic_config(url), revision)
