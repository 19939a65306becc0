"""The initial migration creates exactly what the models describe, on SQLite and PostgreSQL.

Downgrades, and upgrades of a database that holds data, are tested in test_migration_policy.py and
test_upgrade_with_data.py.
"""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

import api.models  # noqa: F401
from api.db import make_engine, metadata
from api.migrate import upgrade


def test_upgrade_head_on_empty_database_matches_models(empty_db_url):
    upgrade(empty_db_url)
    engine = make_engine(empty_db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
            tables = set(inspect(conn).get_table_names())
        assert diff == []
        assert set(metadata.tables) <= tables
        assert "alembic_version" in tables
    finally:
        engine.dispose()


def test_audit_events_are_append_only(empty_db_url):
    upgrade(empty_db_url)
    engine = make_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO audit_event (at, actor_role, action, entity, entity_id, source) "
                    "VALUES (CURRENT_TIMESTAMP, 'system', 'create', 'x', '1', 'system')"
                )
            )
        for stmt in ("UPDATE audit_event SET action = 'delete'", "DELETE FROM audit_event"):
            with pytest.raises(DBAPIError):
                with engine.begin() as conn:
                    conn.execute(text(stmt))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT action FROM audit_event")).scalars().all() == ["create"]
    finally:
        engine.dispose()


def test_naming_convention_is_shared_with_alembic():
    from api.db import NAMING_CONVENTION

    assert metadata.naming_convention == NAMING_CONVENTION
    uq = {c.name for t in metadata.tables.values() for c in t.constraints if c.name}
    assert "uq_response_participant_id_wave_id_instrument" in uq
