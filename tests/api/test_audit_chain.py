"""The audit trail is tamper-evident, and on PostgreSQL the service cannot tamper with it at all.

(a) ``peerlens migrate`` with an owner URL grants the service role SELECT and INSERT on the audit
    tables only: connected as that role, ALTER / DISABLE TRIGGER / UPDATE / DELETE / TRUNCATE /
    DROP are refused by PostgreSQL, while the whole service (requests, exports, sealing,
    verification) works.
(b) Every row carries a keyed MAC and is sealed into a keyed hash chain; acting as the table owner
    (triggers disabled or dropped), the test alters, forges, back-dates and deletes rows and
    links, and cuts the chain's tail: ``verify`` names each, and passes again once undone.
    Existing rows are covered by the migration that adds the chain.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session

from api.audit import chain
from api.audit.chain import seal, verify
from tests.conftest import PG_HOST, PG_PORT, PG_USER, phq9_answers

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def activity(client, admin, make_study, enrol):
    """Some audited work: a study, participants, responses, an amendment."""
    study = make_study()
    people = [enrol(study, enrolled_on="2026-01-05", arm="group") for _ in range(3)]
    for p in people:
        r = client.post(
            f"/participants/{p['id']}/responses",
            headers=admin.headers,
            json={
                "wave": "baseline",
                "instrument": "phq9",
                "answers": phq9_answers(),
                "completed_at": "2026-01-06T10:00:00Z",
            },
        )
        assert r.status_code == 201, r.text
    return {"study": study, "people": people}


def _verify(engine, **kw):
    with Session(engine) as s:
        return verify(s, **kw)


class Owner:
    """The table owner (or a DBA) tampering: the append-only triggers are lifted while it works."""

    def __init__(self, engine, backend):
        self.engine, self.backend = engine, backend

    def run(self, *statements, params=None):
        with self.engine.begin() as conn:
            if self.backend == "postgresql":
                conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
                conn.execute(text("ALTER TABLE audit_seal DISABLE TRIGGER USER"))
            else:
                for t in ("audit_event", "audit_seal"):
                    for w in ("update", "delete"):
                        conn.execute(text(f"DROP TRIGGER IF EXISTS {t}_no_{w}"))
            out = [conn.execute(text(s), params or {}) for s in statements]
            if self.backend == "postgresql":
                conn.execute(text("ALTER TABLE audit_event ENABLE TRIGGER USER"))
                conn.execute(text("ALTER TABLE audit_seal ENABLE TRIGGER USER"))
            else:
                for t in ("audit_event", "audit_seal"):
                    for w in ("update", "delete"):
                        conn.execute(
                            text(
                                f"CREATE TRIGGER {t}_no_{w} BEFORE {w.upper()} ON {t} "
                                f"BEGIN SELECT RAISE(ABORT, '{t} is append-only'); END"
                            )
                        )
            return out


def test_rows_carry_macs_and_the_sealed_chain_verifies(engine, activity):
    with engine.connect() as conn:
        macs = conn.execute(text("SELECT mac FROM audit_event")).scalars().all()
    assert macs and all(m and m.startswith("v1:") for m in macs)
    assert seal(engine) > 0
    report = _verify(engine)
    assert report.ok, report.lines()
    assert report.rows == report.sealed and report.unsealed == 0 and report.head.startswith(f"{report.sealed}:")
    assert seal(engine) == 0  # nothing new


def test_tampering_is_detected_and_named(engine, backend, client, admin, activity):
    owner = Owner(engine, backend)
    seal(engine)
    with engine.connect() as conn:
        ids = conn.execute(text("SELECT id FROM audit_event ORDER BY id")).scalars().all()
        victim = ids[len(ids) // 2]
        original = conn.execute(text("SELECT * FROM audit_event WHERE id = :i"), {"i": victim}).mappings().one()
        original_seal = (
            conn.execute(text("SELECT * FROM audit_seal WHERE event_id = :i"), {"i": victim}).mappings().one()
        )
    after_json = original["after"] if isinstance(original["after"], str) else json.dumps(original["after"])

    # altered: a sealed row's content changed
    owner.run("UPDATE audit_event SET after = :a WHERE id = :i", params={"a": '{"title": "forged"}', "i": victim})
    report = _verify(engine)
    assert not report.ok and report.altered == [victim], report.lines()
    owner.run("UPDATE audit_event SET after = :a WHERE id = :i", params={"a": after_json, "i": victim})
    assert _verify(engine).ok

    # forged: rows inserted without the key, with a made-up MAC or none
    insert = (
        "INSERT INTO audit_event (at, actor_role, action, entity, entity_id, source, mac) "
        "VALUES (:at, 'admin', 'delete', 'participant', '1', 'api', :mac)"
    )
    at = datetime.now(UTC).replace(tzinfo=None) if backend == "sqlite" else datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(text(insert), {"at": at, "mac": "v1:0011223344556677:" + "ab" * 32})
        conn.execute(text(insert), {"at": at, "mac": None})
        forged = conn.execute(text("SELECT id FROM audit_event ORDER BY id DESC LIMIT 2")).scalars().all()
        # a copy of a genuine row (with its valid MAC) cannot go in a second time
        with pytest.raises(IntegrityError):
            with conn.begin_nested():
                conn.execute(text(insert), {"at": at, "mac": original["mac"]})
    report = _verify(engine)
    assert sorted(report.altered + report.forged) == sorted(forged), report.lines()
    owner.run("DELETE FROM audit_event WHERE id IN (:a, :b)", params={"a": forged[0], "b": forged[1]})
    assert _verify(engine).ok

    # deleted: a sealed row and its link removed together
    owner.run(
        "DELETE FROM audit_seal WHERE event_id = :i", "DELETE FROM audit_event WHERE id = :i", params={"i": victim}
    )
    report = _verify(engine)
    assert not report.ok and report.deleted, report.lines()
    # ... or only its link rewritten
    cols = ", ".join(original.keys())
    values = ", ".join(f":{k}" for k in original.keys())
    restore = {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in original.items()}
    owner.run(f"INSERT INTO audit_event ({cols}) VALUES ({values})", params=restore)
    seal_values = dict(original_seal)
    owner.run(
        "INSERT INTO audit_seal (seq, event_id, chain, sealed_at) VALUES (:seq, :event_id, :chain, :sealed_at)",
        params=seal_values,
    )
    assert _verify(engine).ok, _verify(engine).lines()
    owner.run("UPDATE audit_seal SET chain = :c WHERE seq = :s", params={"c": "0" * 64, "s": original_seal["seq"]})
    assert any("does not follow" in d for d in _verify(engine).deleted)
    owner.run(
        "UPDATE audit_seal SET chain = :c WHERE seq = :s",
        params={"c": original_seal["chain"], "s": original_seal["seq"]},
    )
    assert _verify(engine).ok

    # back-dated: a row with a valid MAC (written with the key) but a time a month before the last
    # sealing round, which did not see it
    key = chain.key_for(engine)
    month_ago = datetime.now(UTC) - timedelta(days=30)
    row = {
        "at": month_ago,
        "actor_id": None,
        "actor_role": "admin",
        "action": "update",
        "entity": "participant",
        "entity_id": "1",
        "study_id": None,
        "site_id": None,
        "before": None,
        "after": None,
        "reason": "back-dated",
        "request_id": None,
        "source": "api",
    }
    mac = chain.row_mac(key, row)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_event (at, actor_role, action, entity, entity_id, reason, source, mac) "
                "VALUES (:at, 'admin', 'update', 'participant', '1', 'back-dated', 'api', :mac)"
            ),
            {"at": month_ago.replace(tzinfo=None) if backend == "sqlite" else month_ago, "mac": mac},
        )
        late = conn.execute(text("SELECT id FROM audit_event WHERE mac = :m"), {"m": mac}).scalar_one()
    report = _verify(engine)
    assert report.backdated == [late] and not report.altered and not report.forged, report.lines()
    seal(engine)
    assert _verify(engine).backdated == [late]

    # truncated: the newest rows cut off the chain's end leave a consistent but shorter chain,
    # which only a head noted earlier reveals
    client.post("/studies", json={"title": "one more", "design": "rct"}, headers=admin.headers)
    seal(engine)
    noted = _verify(engine).head
    last_seq, _ = noted.split(":")
    with engine.connect() as conn:
        last_event = conn.execute(text("SELECT event_id FROM audit_seal WHERE seq = :s"), {"s": int(last_seq)}).scalar()
    owner.run(
        "DELETE FROM audit_seal WHERE seq = :s",
        "DELETE FROM audit_event WHERE id = :e",
        params={"s": int(last_seq), "e": last_event},
    )
    assert _verify(engine, expect_head=noted).truncated
    assert _verify(engine).truncated is None  # hence: keep the head somewhere else


def test_cli_verify_exits_1_on_tampering(db_url, engine, backend, activity):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERLENS_")}
    env.update(DATABASE_URL=db_url, PEERLENS_SECRET_KEY="test-secret", PYTHONPATH=str(ROOT))
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "api.cli", "audit", *a], env=env, capture_output=True, text=True, timeout=120
    )
    # (the back-dated row of the test above is still there: a huge --max-delay tolerates it)
    r = run("verify", "--seal", "--max-delay", "1e9")
    assert r.returncode == 0 and r.stdout.strip().endswith("intact"), r.stdout + r.stderr
    head = next(line for line in r.stdout.splitlines() if "head " in line).rsplit("head ", 1)[1]
    with engine.begin() as conn:  # a row written straight into the table, without the key
        conn.execute(
            text(
                "INSERT INTO audit_event (at, actor_role, action, entity, entity_id, source) "
                "VALUES (CURRENT_TIMESTAMP, 'admin', 'delete', 'participant', '9', 'api')"
            )
        )
    r = run("verify", "--head", head, "--max-delay", "1e9")
    assert r.returncode == 1 and "forged: 1 row(s)" in r.stdout and r.stdout.strip().endswith("tampered with")
    assert run("seal").stdout.strip() == "sealed 1 row(s)"
    Owner(engine, backend).run(
        "DELETE FROM audit_seal WHERE event_id = (SELECT max(id) FROM audit_event)",
        "DELETE FROM audit_event WHERE id = (SELECT max(id) FROM audit_event)",
    )


def test_migration_seals_existing_rows(backend, tmp_path):
    """A database with audit rows from before the chain upgrades with every row MAC'd and sealed."""
    from api.db import make_engine
    from api.migrate import downgrade, upgrade
    from tests.conftest import create_pg_database, drop_pg_database, pg_url

    name = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        name = create_pg_database()
        url = pg_url(name)
    try:
        upgrade(url, "5e1a8b3c9d47")
        engine = make_engine(url)
        with engine.begin() as conn:
            for i in range(5):
                conn.execute(
                    text(
                        "INSERT INTO audit_event (at, actor_role, action, entity, entity_id, before, after, source) "
                        "VALUES (:at, 'admin', 'update', 'study', :e, :b, :a, 'api')"
                    ),
                    {
                        "at": datetime(2026, 3, 1, 9, i, 7, 123456),
                        "e": str(i),
                        "b": json.dumps({"title": f"Old {i}", "n": [1, 2.5]}),
                        "a": json.dumps({"title": f"New {i}", "ünïcode": "é"}),
                    },
                )
        upgrade(url)
        report = _verify(engine)
        assert report.ok and report.rows == 5 and report.sealed == 5, report.lines()
        with engine.connect() as conn:  # still append-only after the backfill
            with pytest.raises(DBAPIError):
                with conn.begin():
                    conn.execute(text("UPDATE audit_event SET action = 'x'"))
        # Downgrading keeps the MACs and the chain (data is never deleted); rows the earlier
        # release writes meanwhile are MAC'd and sealed by the next upgrade.
        downgrade(url, _before_chain())
        with engine.begin() as conn:
            assert conn.execute(text("SELECT count(*) FROM audit_seal")).scalar_one() == 5
            conn.execute(
                text(
                    "INSERT INTO audit_event (at, actor_role, action, entity, entity_id, source) "
                    "VALUES (:at, 'admin', 'create', 'study', '9', 'api')"
                ),
                {"at": datetime.now(UTC).replace(tzinfo=None) if backend == "sqlite" else datetime.now(UTC)},
            )
        upgrade(url)
        report = _verify(engine)
        assert report.ok and report.rows == 6 and report.sealed == 6, report.lines()
        engine.dispose()
    finally:
        if name:
            drop_pg_database(name)


def _before_chain() -> str:
    """The revision the audit chain's revision follows."""
    from alembic.script import ScriptDirectory

    from api.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config()).get_revision("7a3c5e9b2d14").down_revision


# ---- (a) the service role cannot touch the audit trail -------------------------------------------


def _psql_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname=postgres", autocommit=True) as c:
        c.execute(sql)


@pytest.mark.postgres
def test_service_role_cannot_alter_or_disable_the_audit_trail(tmp_path):
    import psycopg
    from fastapi.testclient import TestClient

    from api.config import Settings
    from api.main import create_app
    from tests.conftest import _pg_available

    if _pg_available() is not None:
        if os.environ.get("PEERLENS_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL is required")
        pytest.skip("PostgreSQL not available")
    tag = uuid.uuid4().hex[:8]
    owner, app_role, db = f"peerlens_owner_{tag}", f"peerlens_app_{tag}", f"peerlens_roles_{tag}"
    _psql_admin(f'CREATE ROLE "{owner}" LOGIN')
    _psql_admin(f'CREATE ROLE "{app_role}" LOGIN')
    _psql_admin(f'CREATE DATABASE "{db}" OWNER "{owner}"')
    owner_url = f"postgresql://{owner}@{PG_HOST}:{PG_PORT}/{db}"
    app_url = f"postgresql://{app_role}@{PG_HOST}:{PG_PORT}/{db}"
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PEERLENS_")}
        env.update(
            DATABASE_URL=app_url,
            PEERLENS_MIGRATION_DATABASE_URL=owner_url,
            PEERLENS_SECRET_KEY="r" * 40,
            PYTHONPATH=str(ROOT),
        )
        r = subprocess.run(
            [sys.executable, "-m", "api.cli", "migrate"], env=env, capture_output=True, text=True, timeout=180
        )
        assert r.returncode == 0, r.stderr
        assert f"service role {app_role}" in r.stdout
        made = subprocess.run(
            [sys.executable, "-m", "api.cli", "users", "create", "root@example.org", "--role", "admin"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip().splitlines()[-1]

        conninfo = f"host={PG_HOST} port={PG_PORT} user={app_role} dbname={db}"
        refused = [
            "ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only",
            "ALTER TABLE audit_event DISABLE TRIGGER ALL",
            "ALTER TABLE audit_event ADD COLUMN note text",
            "UPDATE audit_event SET action = 'delete'",
            "DELETE FROM audit_event",
            "TRUNCATE audit_event",
            "DROP TABLE audit_event CASCADE",
            "DROP TRIGGER audit_event_append_only ON audit_event",
            "ALTER TABLE audit_seal DISABLE TRIGGER ALL",
            "UPDATE audit_seal SET chain = ''",
            "DELETE FROM audit_seal",
            "TRUNCATE audit_seal",
            "UPDATE alembic_version SET version_num = 'x'",
        ]
        with psycopg.connect(conninfo, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM audit_event").fetchone()[0] >= 2  # user + token
            for stmt in refused:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(stmt)
            # it may append, as the service must
            conn.execute(
                "INSERT INTO audit_event (at, actor_role, action, entity, entity_id, source) "
                "VALUES (now(), 'system', 'create', 'probe', '1', 'system')"
            )

        # ... and the whole service works as that role
        settings = Settings(DATABASE_URL=app_url, PEERLENS_SECRET_KEY="r" * 40, PEERLENS_ARTIFACT_DIR=str(tmp_path))
        app = create_app(settings)
        h = {"Authorization": f"Bearer {token}"}
        with TestClient(app) as c:
            sid = c.post("/studies", json={"title": "Roles", "design": "rct"}, headers=h).json()["id"]
            assert c.post(f"/studies/{sid}/sites", json={"code": "a", "name": "A"}, headers=h).status_code == 201
            arm = {"code": "peer", "name": "Peer", "kind": "intervention"}
            assert c.post(f"/studies/{sid}/arms", json=arm, headers=h).status_code == 201
            wave = {"code": "baseline", "offset_days": 0, "window_after_days": 14, "instruments": ["phq9"]}
            assert c.post(f"/studies/{sid}/waves", json=wave, headers=h).status_code == 201
            p = c.post(
                f"/studies/{sid}/participants",
                json={"site": "a", "enrolled_on": "2026-01-05", "consent": {"date": "2026-01-05", "version": "v1"}},
                headers=h,
            )
            assert p.status_code == 201, p.text
            resp = {
                "wave": "baseline",
                "instrument": "phq9",
                "answers": phq9_answers(),
                "completed_at": "2026-01-06T10:00:00Z",
            }
            assert c.post(f"/participants/{p.json()['id']}/responses", json=resp, headers=h).status_code == 201
            export = c.get(f"/studies/{sid}/exports/long", headers=h)
            assert export.status_code == 200 and "phq9" in export.text
        engine = app.state.engine
        assert seal(engine, key=chain.audit_key(settings)) > 0
        with Session(engine) as s:
            report = verify(s, key=chain.audit_key(settings))
        # the probe row above was inserted without a MAC: the service role can append, but not
        # append anything that passes as genuine
        assert len(report.forged) == 1 and not report.altered and not report.deleted
        engine.dispose()
    finally:
        _psql_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        _psql_admin(f'DROP ROLE IF EXISTS "{app_role}"')
        _psql_admin(f'DROP ROLE IF EXISTS "{owner}"')
