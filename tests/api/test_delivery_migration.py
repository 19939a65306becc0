"""The delivery revision: adverse-event ids that named no record are cleared on upgrade (the flags
stay), and the downgrade refuses while delivery records exist (migrations.policy)."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from api.db import make_engine
from api.migrate import downgrade, upgrade
from migrations.policy import DowngradeRefused

REVISION = "d5c8e1f4a7b2"


def _previous() -> str:
    from alembic.script import ScriptDirectory

    from api.migrate import alembic_config

    rev = ScriptDirectory.from_config(alembic_config()).get_revision(REVISION)
    assert rev is not None and isinstance(rev.down_revision, str)
    return rev.down_revision


def _seed(conn) -> tuple[int, int]:
    conn.execute(
        text(
            "INSERT INTO study (title, design, blinding, time_zone, status, randomisation_seed, created_at, "
            "updated_at) VALUES ('s', 'rct', 'none', 'UTC', 'planning', 'x', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        )
    )
    sid = conn.execute(text("SELECT MAX(id) FROM study")).scalar()
    conn.execute(
        text("INSERT INTO site (study_id, code, name, created_at) VALUES (:s, 'a', 'A', CURRENT_TIMESTAMP)"),
        {"s": sid},
    )
    site = conn.execute(text("SELECT MAX(id) FROM site")).scalar()
    return sid, site


def test_upgrade_clears_dangling_ids_and_downgrade_refuses_with_records(empty_db_url):
    upgrade(empty_db_url, _previous())
    engine = make_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            sid, site = _seed(conn)
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
                    "peer_supporter_involved, peer_supporter_id, group_session_involved, delivery_session_id, "
                    "reported_at, version, created_at, updated_at) VALUES (:s, :site, :p, 'x', '2026-01-02', '[]', "
                    "false, 'mild', 'not_related', 'expected', 'none', 'unknown', 'participant', true, 12, true, 7, "
                    "CURRENT_TIMESTAMP, 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"s": sid, "site": site, "p": pid},
            )
    finally:
        engine.dispose()
    upgrade(empty_db_url, REVISION)
    engine = make_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            row = conn.execute(
                text(
                    "SELECT peer_supporter_id, delivery_session_id, peer_supporter_involved, group_session_involved "
                    "FROM adverse_event"
                )
            ).one()
            assert (row[0], row[1], bool(row[2]), bool(row[3])) == (None, None, True, True)
            conn.execute(
                text(
                    "INSERT INTO peer_supporter (study_id, site_id, code, prior_role, start_date, status, created_at, "
                    "updated_at) VALUES (:s, :site, 'PS', 'none', '2026-01-01', 'active', CURRENT_TIMESTAMP, "
                    "CURRENT_TIMESTAMP)"
                ),
                {"s": 1, "site": 1},
            )
    finally:
        engine.dispose()
    with pytest.raises(DowngradeRefused, match=r"revision d5c8e1f4a7b2.*peer_supporter \(1 row\)"):
        downgrade(empty_db_url, _previous())
    engine = make_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM peer_supporter"))
    finally:
        engine.dispose()
    downgrade(empty_db_url, _previous())
    engine = make_engine(empty_db_url)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            assert not {"peer_supporter", "delivery_session", "session_attendance"} & tables
            assert "adverse_event" in tables
    finally:
        engine.dispose()
