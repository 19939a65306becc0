"""Migrations on databases that hold data: the downgrade policy, SQLite table rebuilds, the CHANGELOG.

* Walking a populated database down from head one revision at a time, every step either keeps
  every row of every table that stays, or refuses (``DowngradeRefused``) naming the tables that
  hold data, and then leaves the database exactly as it was. The revisions of release 0.1.0 behave
  as README.md's table says.
* On SQLite, a batch migration that rebuilds a table other rows reference keeps those rows, and a
  migration that would leave a reference dangling is rolled back whole.
* CHANGELOG.md names every revision (and so says whether it can be downgraded with data).
"""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from api.db import make_engine
from api.migrate import SCRIPT_LOCATION, alembic_config, current_revision, downgrade, head_revision, upgrade
from migrations.policy import DowngradeRefused
from tests.api.upgrade_support import PINNED, diff_rows, populate, read_rows

ROOT = Path(__file__).resolve().parents[2]

#: Revisions of release 0.1.0: True = can be downgraded with data, False = refuses when its tables
#: hold rows (README.md, "Upgrades and downgrades").
RELEASE_0_1_0 = {
    "5e1a8b3c9d47": True,
    "4c7d2e9a1b05": True,
    "3b8461b8f832": False,
    "368dc61a8df4": False,
    "c3a91d5e7f20": False,
    "b7e2f4c1a9d0": False,
    "0001": False,
}


def _revisions() -> list[str]:
    from alembic.script import ScriptDirectory

    return [s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()]


def _current(url: str) -> str | None:
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            return current_revision(conn)
    finally:
        engine.dispose()


def _delete_rows(url: str, tables: list[str]) -> None:
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        md = sa.MetaData()
        md.reflect(engine)
        with engine.begin() as conn:
            for table in reversed(md.sorted_tables):
                if table.name in tables:
                    conn.execute(table.delete())
    finally:
        engine.dispose()


def test_empty_database_downgrades_to_base_and_upgrades_again(empty_db_url):
    upgrade(empty_db_url)
    downgrade(empty_db_url, "base")
    assert set(read_rows(empty_db_url)) == set()
    upgrade(empty_db_url)
    assert _current(empty_db_url) == head_revision()


@pytest.fixture(scope="module")
def populated_url(backend, tmp_path_factory):
    """A second database of this module's backend, populated with the 0.1.0 data set at head."""
    from tests.conftest import create_pg_database, drop_pg_database, pg_url

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('populated') / 'peerlens.db'}"
        populate(url)
        upgrade(url, "head")
        yield url
        return
    name = create_pg_database()
    try:
        populate(pg_url(name))
        upgrade(pg_url(name), "head")
        yield pg_url(name)
    finally:
        drop_pg_database(name)


@pytest.mark.slow
def test_downgrading_with_data_keeps_every_row_or_refuses(populated_url):
    url = populated_url
    original = read_rows(url)
    outcomes: dict[str, bool] = {}
    before = original
    for revision in _revisions():
        assert _current(url) == revision
        try:
            downgrade(url, "-1")
        except DowngradeRefused as exc:
            assert exc.revision == revision
            assert exc.held and all(before[t] for t in exc.held), exc.held
            message = str(exc)
            assert f"revision {revision}" in message and "peerlens restore" in message
            for table, n in exc.held.items():
                assert f"{table} ({n} row" in message
            # Rolled back whole: same revision, same rows.
            assert _current(url) == revision
            assert diff_rows(before, read_rows(url)) == []
            outcomes[revision] = False
            if "audit_event" in exc.held:
                break  # the audit trail cannot be deleted, so nothing goes below this
            _delete_rows(url, list(exc.held))
            before = read_rows(url)
            downgrade(url, "-1")
        else:
            outcomes.setdefault(revision, True)
        after = read_rows(url)
        # Tables that stay keep every row and every value (a column the revision added may go).
        kept = {t: rows for t, rows in before.items() if t in after or rows}
        problems = [p for p in diff_rows(kept, after) if "column" not in p or "gone" not in p]
        assert problems == [], f"downgrading {revision}:\n" + "\n".join(problems)
        before = after
    assert {r: outcomes.get(r) for r in RELEASE_0_1_0} == RELEASE_0_1_0
    assert _current(url) == "0001"
    # Upgrading again keeps what the walk left: every response, score and audit event of the data set.
    upgrade(url, "head")
    again = read_rows(url, ["response", "score", "audit_event", "participant"])
    for table in ("response", "score", "participant"):
        assert again[table] == original[table], table
    assert set(original["audit_event"]) <= set(again["audit_event"])


def test_refused_downgrade_is_a_clear_command_line_error(populated_url, monkeypatch):
    from typer.testing import CliRunner

    from api.cli import app
    from api.config import get_settings

    upgrade(populated_url, "head")
    monkeypatch.setenv("DATABASE_URL", populated_url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["downgrade", "base"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert "refusing to downgrade revision" in result.output and "Traceback" not in result.output
    assert _current(populated_url) == head_revision()


# ---- SQLite table rebuilds -------------------------------------------------------------------


def _extra_revision(folder: Path, body: str) -> str:
    """Write a revision on top of the current head into ``folder``; its id."""
    rev = "t" + os.urandom(5).hex()
    (folder / f"{rev}_test.py").write_text(
        textwrap.dedent(f'''
        import sqlalchemy as sa
        from alembic import op

        revision = "{rev}"
        down_revision = "{head_revision()}"
        branch_labels = None
        depends_on = None


        def upgrade():
        ''')
        + textwrap.indent(textwrap.dedent(body), "    ")
        + "\n\ndef downgrade():\n    pass\n"
    )
    return rev


def _config_with(url: str, folder: Path):
    cfg = alembic_config(url)
    cfg.set_main_option("version_locations", os.pathsep.join([str(SCRIPT_LOCATION / "versions"), str(folder)]))
    return cfg


def test_sqlite_table_rebuild_keeps_rows_that_reference_it(tmp_path):
    from alembic import command

    url = f"sqlite:///{tmp_path / 'p.db'}"
    populate(url)
    upgrade(url, "head")
    before = read_rows(url)
    assert before["suggestion"] and before["coding"]  # suggestions reference codings
    folder = tmp_path / "versions"
    folder.mkdir()
    rev = _extra_revision(
        folder,
        """
        with op.batch_alter_table("coding", recreate="always") as batch:
            batch.alter_column("memo", existing_type=sa.Text(), nullable=True)
        """,
    )
    command.upgrade(_config_with(url, folder), rev)
    assert _current(url) == rev
    assert diff_rows(before, read_rows(url)) == []
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
    finally:
        engine.dispose()


def test_sqlite_migration_leaving_dangling_references_is_rolled_back(tmp_path):
    from alembic import command

    url = f"sqlite:///{tmp_path / 'p.db'}"
    populate(url)
    upgrade(url, "head")
    before = read_rows(url)
    folder = tmp_path / "versions"
    folder.mkdir()
    rev = _extra_revision(
        folder,
        """
        op.create_table("scratch", sa.Column("id", sa.Integer(), primary_key=True))
        op.execute("DELETE FROM transcript_original")
        op.execute("DELETE FROM transcript WHERE id = 1")
        """,
    )
    with pytest.raises(RuntimeError, match=r"migration aborted: \d+ row\(s\) would reference missing rows"):
        command.upgrade(_config_with(url, folder), rev)
    assert _current(url) == head_revision()
    after = read_rows(url)
    assert "scratch" not in after
    assert diff_rows(before, after) == []


# ---- the CHANGELOG ---------------------------------------------------------------------------


def test_changelog_names_every_revision_and_whether_it_can_be_downgraded():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    missing = [r for r in _revisions() if not re.search(rf"`{re.escape(r)}`", changelog)]
    assert not missing, (
        f"CHANGELOG.md does not name revision(s) {missing}: add each under 'Unreleased' > Schema with "
        "whether it can be downgraded with data"
    )
    assert PINNED in changelog
