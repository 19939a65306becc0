"""Shared fixtures.

Database fixtures are lazy: only tests that ask for ``db_url`` (directly or through ``client``)
get a database, so the library suites (instruments, analysis, qualitative) never pay for one.

``db_url`` is parametrised over ``sqlite`` (a temporary file) and ``postgresql`` (a fresh
``peerlens_test_<random>`` database on 127.0.0.1:5432, created per test module and dropped
afterwards). Both are migrated with Alembic, as production is: once per backend per pytest
process into a template, which each module's database is then copied from (SQLite: the file,
PostgreSQL: ``CREATE DATABASE ... TEMPLATE``); ``empty_db_url`` stays empty for the tests that
migrate it themselves. When PostgreSQL does not answer,
the postgresql half fails if ``PEERLENS_REQUIRE_POSTGRES=1`` (``make test`` sets it) and is
skipped with a reason otherwise.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_HOST = os.environ.get("PEERLENS_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("PEERLENS_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("PEERLENS_TEST_PG_USER", "postgres")
BACKENDS = ("sqlite", "postgresql")


def _pg_admin_conninfo() -> str:
    return f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname=postgres connect_timeout=3"


def _pg_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        import psycopg

        with psycopg.connect(_pg_admin_conninfo(), autocommit=True) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}".strip()


def pg_url(dbname: str) -> str:
    return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{dbname}"


def create_pg_database(template: str | None = None) -> str:
    """Create an empty ``peerlens_test_<random>`` database (or a copy of ``template``) and return its name."""
    import psycopg

    reason = _pg_available()
    if reason is not None:
        message = f"PostgreSQL at {PG_HOST}:{PG_PORT} is required for the postgresql backend ({reason})"
        if os.environ.get("PEERLENS_REQUIRE_POSTGRES") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    name = f"peerlens_test_{secrets.token_hex(6)}"
    with psycopg.connect(_pg_admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        # Test data need not survive a power cut; skipping the WAL flush keeps the suite fast.
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    return name


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(_pg_admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pytest_collection_modifyitems(config, items):
    """Every test run on the PostgreSQL backend carries the ``postgres`` marker, so that
    ``-m "not postgres"`` runs the SQLite half alone (e.g. on a machine without the server)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("backend") == "postgresql":
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request) -> str:
    """The database backend of this module's run: ``sqlite`` or ``postgresql``."""
    return request.param


@pytest.fixture(scope="module")
def empty_db_url(backend, tmp_path_factory) -> Iterator[str]:
    """A URL to an empty database of ``backend`` (not migrated)."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("db") / "peerlens.db"
        yield f"sqlite:///{path}"
        return
    name = create_pg_database()
    try:
        yield pg_url(name)
    finally:
        drop_pg_database(name)


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory) -> Iterator[Callable[[str], str]]:
    """``template(backend)``: a database of ``backend`` migrated to head with Alembic, made once in
    this process on first use (each xdist worker has its own) and never connected to afterwards,
    so that PostgreSQL can copy it. SQLite: the file's path; PostgreSQL: the database's name."""
    made: dict[str, str] = {}

    def template(backend: str) -> str:
        if backend not in made:
            from api.migrate import upgrade

            if backend == "sqlite":
                path = tmp_path_factory.mktemp("template") / "peerlens.db"
                upgrade(f"sqlite:///{path}")
                made[backend] = str(path)
            else:
                name = create_pg_database()
                try:
                    upgrade(pg_url(name))
                except BaseException:
                    drop_pg_database(name)
                    raise
                made[backend] = name
        return made[backend]

    yield template
    if "postgresql" in made:
        drop_pg_database(made["postgresql"])


def _copy_sqlite(source_path: str | Path, target_path: str | Path) -> None:
    """Copy a SQLite database with the backup API (consistent even if it was left in WAL mode)."""
    import sqlite3

    source = sqlite3.connect(source_path)
    target = sqlite3.connect(target_path)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


@contextlib.contextmanager
def copied_database(backend: str, template: str, tmp_path_factory) -> Iterator[str]:
    """A URL to a new database of ``backend`` copied from ``template`` (a SQLite file's path or a
    PostgreSQL database nobody is connected to), dropped on exit."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("db") / "peerlens.db"
        _copy_sqlite(template, path)
        yield f"sqlite:///{path}"
        return
    name = create_pg_database(template=template)
    try:
        yield pg_url(name)
    finally:
        drop_pg_database(name)


@pytest.fixture(scope="module")
def db_url(backend, tmp_path_factory, migrated_templates) -> Iterator[str]:
    """A database of ``backend`` migrated to head with Alembic (a copy of this process's template)."""
    with copied_database(backend, migrated_templates(backend), tmp_path_factory) as url:
        yield url


def _shared_dir(tmp_path_factory) -> Path:
    """A folder of this run shared by the xdist workers (and the controller): the parent of a
    worker's base temporary folder, or the base folder itself without xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


DEMO_PG_NAMES = "demo-postgresql-*.name"


@pytest.fixture(scope="session")
def demo_database(tmp_path_factory, migrated_templates):
    """``demo_database(backend, n, seed)``: a context manager giving ``(url, DemoResult)`` of a new
    database of ``backend`` holding ``load_demo(url, n_participants=n, seed=seed)`` on a migrated
    database, and nothing else.

    The demo is loaded once per run for each (backend, n, seed), by whichever xdist worker asks
    first (the others wait on a file lock), into a template that each caller gets a copy of, with
    the :class:`~api.demo.DemoResult` of that load (tokens and passwords included: they are in the
    copied rows). PostgreSQL templates are dropped at the end of the run (``pytest_sessionfinish``).
    """
    import pickle

    shared = _shared_dir(tmp_path_factory)

    @contextlib.contextmanager
    def demo_database_(backend: str, n: int, seed: int) -> Iterator[tuple[str, object]]:
        stem = shared / f"demo-{backend}-{n}-{seed}"
        with _file_lock(stem.with_suffix(".lock")):
            saved = stem.with_suffix(".pickle")
            if not saved.exists():
                from api.demo import load_demo

                if backend == "sqlite":
                    template = str(stem.with_suffix(".db"))
                    _copy_sqlite(migrated_templates("sqlite"), template)
                    url = f"sqlite:///{template}"
                else:
                    template = create_pg_database(template=migrated_templates("postgresql"))
                    stem.with_suffix(".name").write_text(template)  # dropped at the end of the run
                    url = pg_url(template)
                result = load_demo(url, n_participants=n, seed=seed)
                saved.write_bytes(pickle.dumps((template, result)))
            template, result = pickle.loads(saved.read_bytes())
            copy = copied_database(backend, template, tmp_path_factory)
            url = copy.__enter__()
        try:
            yield url, result
        finally:
            copy.__exit__(None, None, None)

    return demo_database_


def demo_copy_fixture(n: int, seed: int):
    """A module fixture ``demo_copy``: ``(url, DemoResult)`` of this module's copy of
    ``load_demo(n_participants=n, seed=seed)`` on its backend (loaded once per run by
    :func:`demo_database`). Use as ``demo_copy = demo_copy_fixture(60, 20261125)``, with
    ``db_url`` returning ``demo_copy[0]``."""

    @pytest.fixture(scope="module")
    def demo_copy(backend, demo_database):
        with demo_database(backend, n, seed) as copy:
            yield copy

    return demo_copy


def pytest_sessionfinish(session, exitstatus):
    """The controller (or the only process) drops the PostgreSQL demo templates of the run."""
    if hasattr(session.config, "workerinput"):
        return
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    try:
        shared = factory.getbasetemp()
    except Exception:  # noqa: BLE001 - no temporary folder was made: nothing to drop
        return
    for marker in shared.glob(DEMO_PG_NAMES):
        try:
            drop_pg_database(marker.read_text().strip())
        except Exception:  # noqa: BLE001 - the server may be gone; the name is in the marker file
            pass


@pytest.fixture(scope="module")
def settings(db_url, tmp_path_factory):
    from api.config import Settings

    # Generated plots go to a temporary folder, never into the working tree.
    return Settings(
        DATABASE_URL=db_url,
        PEERLENS_SECRET_KEY="test-secret",
        PEERLENS_MAX_BODY_BYTES=64_000,
        PEERLENS_ARTIFACT_DIR=str(tmp_path_factory.mktemp("artifacts")),
    )


@pytest.fixture(scope="module")
def engine(settings):
    from api.db import engine_from_settings

    eng = engine_from_settings(settings)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def app(settings, engine):
    from api.main import create_app

    return create_app(settings, engine=engine)


@pytest.fixture(scope="module")
def client(app):
    """A TestClient on the app, bound to this module's database."""
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@dataclass
class UserHandle:
    id: int
    role: str
    token: str
    site_ids: list[int]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def make_user(engine) -> Callable[..., UserHandle]:
    """``make_user(role, site_ids=(), expires_at=None) -> UserHandle`` with a fresh token."""
    from sqlmodel import Session

    from api.auth.service import create_user, issue_token

    def _make(role: str, site_ids=(), expires_at=None) -> UserHandle:
        with Session(engine) as s:
            user = create_user(s, f"{role}-{uuid.uuid4().hex[:10]}@test.peerlens.org", role, list(site_ids))
            token = issue_token(s, user, expires_at=expires_at)
            s.commit()
            return UserHandle(user.id, role, token, list(site_ids))

    return _make


@pytest.fixture(scope="module")
def admin(make_user) -> UserHandle:
    return make_user("admin")


@pytest.fixture(scope="module")
def analyst(make_user) -> UserHandle:
    return make_user("analyst")


@dataclass
class StudyHandle:
    id: int
    sites: dict[str, int]
    arms: dict[str, int]
    waves: dict[str, int]
    seed: str


@pytest.fixture(scope="module")
def make_study(client, admin) -> Callable[..., StudyHandle]:
    """Create a study with sites north/south, three arms and five waves through the API."""

    def _make(
        time_zone: str = "Europe/London",
        sites=("north", "south"),
        arms=(("group", "intervention", 1), ("online", "intervention", 1), ("usual_care", "control", 1)),
        waves=(
            ("baseline", 0, 0, 14, ["pam13", "phq9", "gad7"]),
            ("m1", 30, 7, 7, ["pam13", "phq9"]),
            ("m3", 90, 14, 14, ["pam13", "phq9"]),
            ("m6", 180, 21, 21, ["pam13", "phq9"]),
            ("m12", 365, 30, 30, ["pam13", "phq9"]),
        ),
        seed: str | None = None,
    ) -> StudyHandle:
        h = admin.headers
        body = {
            "title": f"Study {uuid.uuid4().hex[:6]}",
            "design": "rct",
            "time_zone": time_zone,
            "planned_sample_size": 120,
            "power_assumptions": {"alpha": 0.05, "power": 0.8},
        }
        if seed:
            body["randomisation_seed"] = seed
        r = client.post("/studies", json=body, headers=h)
        assert r.status_code == 201, r.text
        study = r.json()
        sid = study["id"]
        site_ids = {}
        for code in sites:
            r = client.post(f"/studies/{sid}/sites", json={"code": code, "name": code.title()}, headers=h)
            assert r.status_code == 201, r.text
            site_ids[code] = r.json()["id"]
        arm_ids = {}
        for code, kind, ratio in arms:
            r = client.post(
                f"/studies/{sid}/arms",
                json={"code": code, "name": code, "kind": kind, "allocation_ratio": ratio},
                headers=h,
            )
            assert r.status_code == 201, r.text
            arm_ids[code] = r.json()["id"]
        wave_ids = {}
        for code, off, before, after, insts in waves:
            r = client.post(
                f"/studies/{sid}/waves",
                json={
                    "code": code,
                    "offset_days": off,
                    "window_before_days": before,
                    "window_after_days": after,
                    "instruments": insts,
                },
                headers=h,
            )
            assert r.status_code == 201, r.text
            wave_ids[code] = r.json()["id"]
        return StudyHandle(sid, site_ids, arm_ids, wave_ids, study["randomisation_seed"])

    return _make


@pytest.fixture(scope="module")
def enrol(client, admin) -> Callable[..., dict]:
    """``enrol(study, site="north", enrolled_on="2026-01-05", headers=None, **extra) -> participant JSON``."""

    def _enrol(
        study: StudyHandle,
        site: str = "north",
        enrolled_on: str = "2026-01-05",
        headers=None,
        expect: int = 201,
        **extra,
    ) -> dict:
        body = {"site": site, "enrolled_on": enrolled_on, "consent": {"date": enrolled_on, "version": "v1"}, **extra}
        r = client.post(f"/studies/{study.id}/participants", json=body, headers=headers or admin.headers)
        assert r.status_code == expect, r.text
        return r.json()

    return _enrol


def phq9_answers(value: int = 1) -> dict[str, int]:
    return {f"phq9_{i}": value for i in range(1, 10)}


def pam13_answers(value: int = 3) -> dict[str, int]:
    return {f"pam13_{i}": value for i in range(1, 14)}
