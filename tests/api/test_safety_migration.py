"""The safety revision refuses to drop safety records on downgrade (migrations.policy), and goes when
there are none."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from api.db import make_engine
from api.migrate import downgrade, upgrade
from migrations.policy import DowngradeRefused

REVISION = "a7d3e5f19c42"


def _head() -> str:
    from alembic.script import ScriptDirectory

    from api.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def test_downgrade_refuses_while_alerts_or_adverse_events_exist(empty_db_url):
    upgrade(empty_db_url)
    engine = make_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO study (title, design, blinding, time_zone, status, randomisation_seed, created_at, "
                    "updated_at) VALUES ('s', 'rct', 'none', 'UTC', 'planning', 'x', CURRENT_TIMESTAMP, "
                    "CURRENT_TIMESTAMP)"
                )
            )
            sid = conn.execute(text("SELECT id FROM study")).scalar()
            conn.execute(
                text("INSERT INTO site (study_id, code, name, created_at) VALUES (:s, 'a', 'A', CURRENT_TIMESTAMP)"),
                {"s": sid},
            )
            site = conn.execute(text("SELECT id FROM site")).scalar()
            conn.execute(
                text(
                    "INSERT INTO participant (study_id, site_id, study_code, enrolled_on, consent_date, "
                    "consent_version, randomised, status, created_at, updated_at) VALUES (:s, :site, 'P1', "
                    "'2026-01-01', '2026-01-01', 'v1', false, 'active', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"s": sid, "site": site},
            )
            pid = conn.execute(text("SELECT id FROM participant")).scalar()
            conn.execute(
                text(
                    "INSERT INTO adverse_event (study_id, site_id, participant_id, description, onset_date, "
                    "seriousness, serious, severity, relatedness, expectedness, action_taken, outcome, reporter, "
                    "peer_supporter_involved, group_session_involved, reported_at, version, created_at, updated_at) "
                    "VALUES (:s, :site, :p, 'x', '2026-01-02', '[]', false, 'mild', 'not_related', 'expected', "
                    "'none', 'unknown', 'participant', false, false, CURRENT_TIMESTAMP, 1, CURRENT_TIMESTAMP, "
                    "CURRENT_TIMESTAMP)"
                ),
                {"s": sid, "site": site, "p": pid},
            )
    finally:
        engine.dispose()
    with pytest.raises(DowngradeRefused, match=r"revision a7d3e5f19c42.*adverse_event \(1 row\)"):
        downgrade(empty_db_url, "5e1a8b3c9d47")
    engine = make_engine(empty_db_url)
    try:
        with engine.connect() as conn:
            assert "adverse_event" in inspect(conn).get_table_names()
            # A refused downgrade changes nothing: the database stays at the head it was upgraded to.
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == _head()
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM adverse_event"))
    finally:
        engine.dispose()
    downgrade(empty_db_url, "5e1a8b3c9d47")
    engine = make_engine(empty_db_url)
    try:
        with engine.connect() as conn:
            assert not {"adverse_event", "safety_alert", "staff_notification"} & set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
