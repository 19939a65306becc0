"""``peerlens backup`` / ``peerlens restore`` on SQLite and PostgreSQL.

* A populated trial database (the 0.1.0 data set upgraded to head) is backed up and restored
  through the command line into an empty database: every row of every table and every export is
  the same, and the row counts match the manifest.
* Restore refuses a database that is not empty, a damaged file and the wrong backend; a backup
  never overwrites a file.
* Acceptance: a backup taken while 8 clients submit responses over HTTP restores to the database as
  it was at the backup's instant. That instant is witnessed by ``on_snapshot``, which runs on a
  connection that sees exactly what the backup holds; the "source at that instant" is rebuilt
  independently from a copy of the source taken once the clients have stopped, minus every row
  created after the witness. Exports of the two must be byte for byte equal, and no restored
  response may lack a score or its audit event.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.backup import BackupError, Manifest, backup, manifest_path
from api.cli import app as cli
from api.restore import restore
from tests.api.upgrade_support import EXPORTS, diff_rows, meta, populate, read_rows
from tests.conftest import create_pg_database, drop_pg_database, pg_url

META = meta()


@contextlib.contextmanager
def new_database(backend: str, folder: Path, name: str = "db") -> Iterator[str]:
    """An empty database of ``backend`` (a SQLite file that does not exist yet), dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / (name + '.db')}"
        return
    dbname = create_pg_database()
    try:
        yield pg_url(dbname)
    finally:
        drop_pg_database(dbname)


def _app(url: str, tmp: Path):
    from api.config import Settings
    from api.main import create_app

    return create_app(
        Settings(DATABASE_URL=url, PEERLENS_SECRET_KEY=META["secret_key"], PEERLENS_ARTIFACT_DIR=str(tmp))
    )


def exports(url: str, tmp: Path, study_id: int, tokens: dict[str, str]) -> dict[str, bytes]:
    """The exports of :data:`EXPORTS` read through the API of an app on ``url``."""
    import instruments

    app = _app(url, tmp)
    out = {}
    try:
        with TestClient(app) as client:
            for name, (role, shape, query, _) in EXPORTS.items():
                r = client.get(
                    f"/studies/{study_id}/exports/{shape}",
                    params={"format": "csv", **query},
                    headers={"Authorization": f"Bearer {tokens[role]}"},
                )
                assert r.status_code == 200, r.text
                out[name] = r.content
    finally:
        app.state.engine.dispose()
        instruments.unregister("wellbeing_rc")
    return out


def _run(*args: str):
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


# ---- a populated database, backed up and restored through the command line ---------------------


@pytest.fixture(scope="module")
def source(empty_db_url):
    populate(empty_db_url)
    from api.migrate import upgrade

    upgrade(empty_db_url, "head")
    return empty_db_url


@pytest.fixture(scope="module")
def backed_up(source, tmp_path_factory):
    folder = tmp_path_factory.mktemp("backups")
    code, out = _run("backup", "--database-url", source, "-o", str(folder / "trial.bak"))
    assert code == 0, out
    assert "backup written" in out and "manifest" in out
    return folder / "trial.bak"


def test_backup_file_and_manifest(source, backed_up, backend):
    m = Manifest.read(manifest_path(backed_up))
    assert m.kind == backend and m.file == "trial.bak"
    assert backed_up.stat().st_mode & 0o777 == 0o600  # backups hold identifiers
    assert manifest_path(backed_up).stat().st_mode & 0o777 == 0o600
    counts = {t: len(rows) for t, rows in read_rows(source).items()}
    assert {t: n for t, n in m.tables.items() if t != "alembic_version"} == counts
    assert m.rows > 1000 and m.schema_revision is not None


def test_restore_into_an_empty_database_gives_the_same_rows_and_exports(
    source, backed_up, backend, tmp_path, tmp_path_factory
):
    with new_database(backend, tmp_path, "restored") as target:
        code, out = _run("restore", str(backed_up), "--database-url", target)
        assert code == 0, out
        assert "row counts match the manifest" in out
        before, after = read_rows(source), read_rows(target)
        assert set(before) == set(after)
        assert diff_rows(before, after) == [] and diff_rows(after, before) == []
        m = Manifest.read(manifest_path(backed_up))
        assert {t: len(r) for t, r in after.items()} == {t: n for t, n in m.tables.items() if t != "alembic_version"}
        tmp = tmp_path_factory.mktemp("art")
        assert exports(target, tmp, META["study_id"], META["tokens"]) == exports(
            source, tmp, META["study_id"], META["tokens"]
        )
        # the restored database takes new data (sequences and triggers came along)
        app = _app(target, tmp)
        try:
            with TestClient(app) as client:
                r = client.post(
                    f"/participants/{META['contact_participants'][2]}/responses",
                    json={"wave": "diary", "instrument": "gad7", "answers": {f"gad7_{k}": 2 for k in range(1, 8)}},
                    headers={"Authorization": f"Bearer {META['tokens']['admin']}"},
                )
                assert r.status_code == 201, r.text
        finally:
            app.state.engine.dispose()
        engine = sa.create_engine(target)
        try:
            with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
                conn.execute(sa.text("DELETE FROM audit_event"))  # still append-only
        finally:
            engine.dispose()


def test_restore_refuses_a_database_that_is_not_empty(source, backed_up):
    counts = {t: len(r) for t, r in read_rows(source).items()}
    code, out = _run("restore", str(backed_up), "--database-url", source)
    assert code == 1
    # The message names the objects found (the first few, alphabetically), whatever tables exist.
    assert "refusing to restore into a database that is not empty (" in out and "tables and other objects: a" in out
    assert "Traceback" not in out
    assert {t: len(r) for t, r in read_rows(source).items()} == counts


def test_restore_refuses_a_damaged_backup(backed_up, backend, tmp_path):
    damaged = tmp_path / "damaged.bak"
    data = bytearray(backed_up.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    shutil.copy(manifest_path(backed_up), manifest_path(damaged))
    with new_database(backend, tmp_path, "never") as target:
        with pytest.raises(BackupError, match="does not match its manifest"):
            restore(damaged, target)
        if backend == "sqlite":
            assert not Path(target.removeprefix("sqlite:///")).exists()


def test_restore_refuses_the_other_backend(backed_up, backend, tmp_path):
    other = "postgresql+psycopg://postgres@127.0.0.1:5432/never" if backend == "sqlite" else "sqlite:///x.db"
    with pytest.raises(BackupError, match=f"is a {backend} backup"):
        restore(backed_up, other)


def test_backup_never_overwrites(source, backed_up):
    before = backed_up.read_bytes()
    code, out = _run("backup", "--database-url", source, "-o", str(backed_up))
    assert code == 1 and "never overwritten" in out
    assert backed_up.read_bytes() == before


def test_postgresql_backup_role_reads_everything_and_others_are_told_why_not(source, backend, tmp_path):
    """The README's backup role (a login in pg_read_all_data) can back up; a role without it gets a clear error."""
    if backend != "postgresql":
        pytest.skip("database roles are PostgreSQL's")
    import psycopg

    from tests.conftest import PG_HOST, PG_PORT, _pg_admin_conninfo

    suffix = os.urandom(4).hex()
    reader, nobody = f"peerlens_backup_{suffix}", f"peerlens_nobody_{suffix}"
    with psycopg.connect(_pg_admin_conninfo(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {reader} LOGIN IN ROLE pg_read_all_data")
        conn.execute(f"CREATE ROLE {nobody} LOGIN")
    dbname = source.rsplit("/", 1)[1]
    try:
        as_reader = f"postgresql+psycopg://{reader}@{PG_HOST}:{PG_PORT}/{dbname}"
        m = backup(as_reader, tmp_path / "by-reader.dump")
        assert m.tables["response"] == len(read_rows(source, ["response"])["response"])
        code, out = _run("backup", "--database-url", as_reader.replace(reader, nobody), "-o", str(tmp_path / "x.dump"))
        assert code == 1 and "permission denied" in out and "pg_read_all_data" in out, out
        assert not (tmp_path / "x.dump").exists() and not (tmp_path / "x.dump.partial").exists()
    finally:
        with psycopg.connect(_pg_admin_conninfo(), autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {reader}")
            conn.execute(f"DROP ROLE IF EXISTS {nobody}")


# ---- acceptance: a backup while 8 clients submit ----------------------------------------------

CLIENTS = 8
PER_CLIENT = 24  # submissions per client: 3 participants x 4 waves x 2 instruments
BACKUP_AFTER = 70  # acknowledged submissions before the backup starts


def _serve(app):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "test server did not start"
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{port}"


def _set_up_study(url: str) -> tuple[dict[str, str], int, list[int]]:
    """A study with 8 x 3 participants, and admin and analyst tokens, written through the services."""
    from sqlmodel import Session

    from api.auth.service import Actor, create_user, issue_token
    from api.db import make_engine
    from api.participants import service as participants
    from api.studies import service as studies
    from api.studies.schemas import ArmCreate, SiteCreate, StudyCreate, WaveCreate

    engine = make_engine(url, pool_size=1, max_overflow=0)
    actor = Actor.system()
    try:
        with Session(engine, expire_on_commit=False) as s:
            st = studies.create_study(s, StudyCreate(title="Backup under load", design="rct", time_zone="UTC"), actor)
            for code in ("north", "south"):
                studies.create_site(s, st, SiteCreate(code=code, name=code), actor)
            for code, kind in (("group", "intervention"), ("usual_care", "control")):
                studies.create_arm(s, st, ArmCreate(code=code, name=code, kind=kind), actor)
            for code, offset in (("baseline", 0), ("m1", 30), ("m3", 90), ("m6", 180)):
                studies.create_wave(
                    s,
                    st,
                    WaveCreate(code=code, offset_days=offset, window_after_days=14, instruments=["phq9", "gad7"]),
                    actor,
                )
            people = []
            from datetime import date

            for i in range(CLIENTS * 3):
                p = participants.enrol(
                    s,
                    study=st,
                    site_code=("north", "south")[i % 2],
                    enrolled_on=date(2026, 1, 5),
                    consent_date=date(2026, 1, 5),
                    consent_version="v1",
                    arm_code=None,
                    study_code=None,
                    actor=actor,
                )
                people.append(p.id)
            tokens = {}
            for role in ("admin", "analyst"):
                user = create_user(s, f"{role}@load.test", role, [])
                tokens[role] = issue_token(s, user)
            s.commit()
            return tokens, st.id, people
    finally:
        engine.dispose()


def _submissions(people: list[int]) -> list[tuple[int, dict]]:
    out = []
    for pid in people:
        for w, (wave, day) in enumerate((("baseline", "01-06"), ("m1", "02-05"), ("m3", "04-06"), ("m6", "07-05"))):
            out.append(
                (
                    pid,
                    {
                        "wave": wave,
                        "instrument": "phq9",
                        "answers": {f"phq9_{k}": (k + pid + w) % 4 for k in range(1, 10)},
                        "completed_at": f"2026-{day}T10:00:00Z",
                    },
                )
            )
            out.append(
                (
                    pid,
                    {
                        "wave": wave,
                        "instrument": "gad7",
                        "answers": {f"gad7_{k}": (k * pid + w) % 4 for k in range(1, 8)},
                        "completed_at": f"2026-{day}T10:05:00Z",
                    },
                )
            )
    return out


def _copy_database(backend: str, url: str, folder: Path) -> contextlib.AbstractContextManager[str]:
    """A copy of a quiescent database made without peerlens backup (file copy / CREATE DATABASE TEMPLATE)."""

    @contextlib.contextmanager
    def _copy():
        if backend == "sqlite":
            path = Path(url.removeprefix("sqlite:///"))
            con = sqlite3.connect(path)
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            con.close()
            dest = folder / "copy.db"
            shutil.copyfile(path, dest)
            yield f"sqlite:///{dest}"
            return
        import psycopg

        from tests.conftest import _pg_admin_conninfo

        src = url.rsplit("/", 1)[1]
        name = src + "_copy"
        with psycopg.connect(_pg_admin_conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{src}"')
        try:
            yield pg_url(name)
        finally:
            drop_pg_database(name)

    return _copy()


@pytest.mark.slow
def test_backup_while_8_clients_submit_restores_the_instant_of_the_backup(backend, tmp_path):
    from api.migrate import upgrade

    with new_database(backend, tmp_path, "live") as url:
        upgrade(url, "head")
        tokens, study_id, people = _set_up_study(url)
        app = _app(url, tmp_path / "art")
        server, thread, base = _serve(app)
        acks: list[tuple[int, float, float]] = []  # response id, request start, acknowledgement
        lock = threading.Lock()
        admin = {"Authorization": f"Bearer {tokens['admin']}"}

        def client(n: int):
            mine = _submissions(people[n * 3 : n * 3 + 3])
            with httpx.Client(base_url=base, timeout=60) as c:
                for i, (pid, body) in enumerate(mine):
                    started = time.monotonic()
                    r = c.post(
                        f"/participants/{pid}/responses",
                        json=body,
                        headers={**admin, "Idempotency-Key": f"client-{n}-{i}"},
                    )
                    assert r.status_code == 201, r.text
                    with lock:
                        acks.append((r.json()["id"], started, time.monotonic()))

        witness: dict[str, set[int]] = {}

        def on_snapshot(conn):
            # Rows written with each submission (safety alerts and their messages too).
            for table in ("response", "score", "audit_event", "idempotency_key", "safety_alert", "staff_notification"):
                witness[table] = set(conn.execute(sa.text(f"SELECT id FROM {table}")).scalars())

        dest = tmp_path / "under-load.bak"
        try:
            with ThreadPoolExecutor(CLIENTS) as pool:
                futures = [pool.submit(client, n) for n in range(CLIENTS)]
                while len(acks) < BACKUP_AFTER:
                    assert not any(f.done() and f.exception() for f in futures)
                    time.sleep(0.01)
                t0 = time.monotonic()
                manifest = backup(url, dest, on_snapshot=on_snapshot)
                t1 = time.monotonic()
                for f in futures:
                    f.result()
        finally:
            server.should_exit = True
            thread.join(10)
            app.state.engine.dispose()

        final = read_rows(
            url, ["response", "score", "audit_event", "idempotency_key", "safety_alert", "staff_notification"]
        )
        total = CLIENTS * PER_CLIENT
        assert len(final["response"]) == total
        # The backup was taken while clients were writing: some responses before it, some after.
        assert 0 < len(witness["response"]) < total, len(witness["response"])
        during = sum(1 for _, s, a in acks if s < t1 and a > t0)
        print(
            f"\n{backend}: backup {t1 - t0:.2f}s, {len(witness['response'])} of {total} responses in it, "
            f"{during} submissions in flight during it"
        )
        assert manifest.tables["response"] == len(witness["response"])

        with new_database(backend, tmp_path, "restored") as target:
            restore(dest, target)
            restored = read_rows(target)
            # Exactly the witnessed instant: the same responses, scores, audit events, keys.
            ids = {table: {key[0] for key in restored[table]} for table in restored}
            for table in ("response", "score", "audit_event", "idempotency_key"):
                assert ids[table] == witness[table], table
            acked_before = {rid for rid, _, a in acks if a < t0}
            started_after = {rid for rid, s, _ in acks if s > t1}
            assert acked_before <= ids["response"]
            assert not started_after & ids["response"]
            # No torn rows: each restored response has all its scores (as the source holds them
            # now) and its one audit event.
            scores_of: dict[int, list] = {}
            for (sid,), row in final["score"].items():
                scores_of.setdefault(row["response_id"], []).append(sid)
            created = {}
            for row in restored["audit_event"].values():
                if row["entity"] == "response" and row["action"] == "create":
                    created[int(row["entity_id"])] = created.get(int(row["entity_id"]), 0) + 1
            for rid in ids["response"]:
                assert sorted(k for (k,), r in restored["score"].items() if r["response_id"] == rid) == sorted(
                    scores_of[rid]
                ), rid
                assert created.get(rid) == 1, rid

            # The source at the backup's instant, rebuilt from a copy of the quiescent source.
            with _copy_database(backend, url, tmp_path) as copy:
                engine = sa.create_engine(copy)
                try:
                    with engine.begin() as conn:
                        for table, column in (
                            ("staff_notification", "id"),
                            ("safety_alert", "id"),
                            ("idempotency_key", "id"),
                            ("score", "id"),
                            ("response", "id"),
                        ):
                            keep = witness[table]
                            for (key,) in [k for k in final[table] if k[0] not in keep]:
                                conn.execute(sa.text(f"DELETE FROM {table} WHERE {column} = :k"), {"k": key})
                finally:
                    engine.dispose()
                rebuilt = read_rows(copy)
                for table in rebuilt:
                    if table == "audit_event":
                        continue  # append-only: the copy keeps the later events, which no export reads
                    assert set(rebuilt[table]) == set(restored[table]), table
                    assert diff_rows({table: rebuilt[table]}, {table: restored[table]}) == [], table
                art = tmp_path / "exports"
                assert exports(target, art, study_id, tokens) == exports(copy, art, study_id, tokens)
