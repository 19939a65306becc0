"""``peerlens backup`` and ``peerlens restore``: consistent copies of a running trial database.

A backup is one file in the backend's own format plus a manifest beside it
(``<file>.manifest.json``: the Peerlens version, the schema revision, the row count of every table,
the file's size and SHA-256; no study data):

* **SQLite**: the online backup API copies the database from one read transaction, so writers
  carry on (WAL mode) and the copy is the database as of that transaction's start. The copy is
  checked (``integrity_check``, ``foreign_key_check``) and made self-contained (rollback journal
  mode: no ``-wal`` file needed).
* **PostgreSQL**: ``pg_dump --format=custom`` on a snapshot exported from a ``REPEATABLE READ``
  transaction (``--snapshot``), so the dump and the manifest's row counts describe the same instant.
  Run it as a role that can read every table (README.md, "Backups": a ``peerlens_backup`` login in
  ``pg_read_all_data``, or the owner).

Both are written under a temporary name with mode 0600 and renamed when complete; an existing file
is never overwritten. ``on_snapshot(connection)`` runs on a connection that sees exactly what the
backup holds (after the copy, before the snapshot ends), for checks or counts of one's own; it must
not commit or roll back.

:mod:`api.restore` restores such a file into an empty database.

Examples
--------
>>> m = backup("sqlite:///./peerlens.db", "backups/peerlens.sqlite")  # doctest: +SKIP
>>> m.rows  # doctest: +SKIP
4624
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.pool import StaticPool

from api.migrate import current_revision
from api.release import version

MANIFEST_FORMAT = "peerlens-backup/1"
SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"


class BackupError(RuntimeError):
    """A backup or restore that cannot be done; the message says why and what to do."""


@dataclass
class Manifest:
    """What a backup file holds (written beside it as ``<file>.manifest.json``)."""

    kind: str  # "sqlite" | "postgresql"
    file: str
    created_at: str
    peerlens_version: str
    schema_revision: str | None
    tables: dict[str, int]
    bytes: int = 0
    sha256: str = ""
    source: str = ""
    tool: str | None = None
    format: str = MANIFEST_FORMAT
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(self.tables.values())

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: Path) -> Manifest:
        data = json.loads(path.read_text())
        if data.get("format") != MANIFEST_FORMAT:
            raise BackupError(f"{path} is not a Peerlens backup manifest")
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def manifest_path(path: str | Path) -> Path:
    return Path(str(path) + ".manifest.json")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def backend_of(url: str) -> str:
    """``"sqlite"`` or ``"postgresql"`` for a SQLAlchemy URL (anything else is refused)."""
    name = make_url(url).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise BackupError(f"backups support SQLite and PostgreSQL, not {name}")
    return name


def sqlite_path(url: str) -> Path:
    """The file of a SQLite URL."""
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up or restored into")
    return Path(database)


def libpq_uri(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection URI without the password, and the environment carrying it."""
    u: URL = make_url(url)
    env = dict(os.environ)
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    plain = u.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def client_program(name: str, explicit: str | None) -> str:
    """The path of a PostgreSQL client program (``pg_dump``, ``pg_restore``), or a clear error."""
    found = shutil.which(explicit or name)
    if not found:
        raise BackupError(
            f"{explicit or name} not found: install the PostgreSQL client programs "
            f"(Debian: postgresql-client-15) or give the path with --{name.replace('_', '-')}"
        )
    return found


def new_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 (backups hold identifiers); never overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)


def table_counts(conn: Connection) -> dict[str, int]:
    """Rows in every table of the connection's default schema."""
    names = sorted(sa.inspect(conn).get_table_names())
    return {t: conn.execute(sa.text(f'SELECT COUNT(*) FROM "{t}"')).scalar_one() for t in names}


def _redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


# ---- backup ----------------------------------------------------------------------------------


def backup(
    url: str,
    dest: str | Path,
    *,
    on_snapshot: Callable[[Connection], None] | None = None,
    pg_dump: str | None = None,
    role: str | None = None,
) -> Manifest:
    """Back up the database at ``url`` into ``dest`` (must not exist) and write its manifest.

    Parameters
    ----------
    url : str
        SQLAlchemy URL of the database (the service may be running).
    dest : path
        The backup file; ``<dest>.manifest.json`` is written beside it.
    on_snapshot : callable, optional
        Called with a connection that sees exactly the backed-up state.
    pg_dump : str, optional
        PostgreSQL: the ``pg_dump`` program (default: the one on ``PATH``).
    role : str, optional
        PostgreSQL: ``SET ROLE`` to this role for the dump (``pg_dump --role``).

    Raises
    ------
    BackupError
        The destination exists, the source is missing, or the copy failed its checks.
    """
    dest = Path(dest)
    if dest.exists() or manifest_path(dest).exists():
        raise BackupError(f"{dest} exists; backups are never overwritten, choose another file name")
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        partial.unlink()
    new_private_file(partial)
    try:
        if backend_of(url) == "sqlite":
            manifest = _backup_sqlite(url, partial, on_snapshot)
        else:
            manifest = _backup_postgresql(url, partial, on_snapshot, pg_dump, role)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    manifest.file = dest.name
    manifest.bytes = partial.stat().st_size
    manifest.sha256 = sha256_of(partial)
    manifest.source = _redacted(url)
    os.replace(partial, dest)
    mpath = manifest_path(dest)
    manifest.write(mpath)
    os.chmod(mpath, 0o600)
    return manifest


def _backup_sqlite(url: str, partial: Path, on_snapshot) -> Manifest:
    path = sqlite_path(url)
    if not path.is_file():
        raise BackupError(f"no SQLite database at {path}")
    # The connection on_snapshot receives is set up first: SQLAlchemy ends any transaction while it
    # initialises a new connection, which would otherwise end the snapshot.
    engine = sa.create_engine(
        "sqlite://",
        creator=lambda: sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False),
        poolclass=StaticPool,
    )
    target = sqlite3.connect(str(partial), isolation_level=None)
    try:
        with engine.connect() as conn:
            source = conn.connection.driver_connection
            # One read transaction: the copy and on_snapshot see the database as of its first read,
            # while the service's writers carry on (WAL).
            source.execute("BEGIN")
            source.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            source.backup(target)
            if on_snapshot is not None:
                on_snapshot(conn)
                if not source.in_transaction:
                    raise BackupError("on_snapshot ended the backup's read transaction")
            source.execute("ROLLBACK")
    except BaseException:
        target.close()
        raise
    finally:
        engine.dispose()
    try:
        target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        problems = [r[0] for r in target.execute("PRAGMA integrity_check").fetchall()]
        if problems != ["ok"]:
            raise BackupError(f"the copy failed SQLite's integrity check: {problems[:3]}")
        if target.execute("PRAGMA foreign_key_check").fetchall():
            raise BackupError("the copy holds references to missing rows (foreign_key_check)")
    finally:
        target.close()
    engine = sa.create_engine(f"sqlite:///{partial}", poolclass=StaticPool)
    try:
        with engine.connect() as conn:
            tables = table_counts(conn)
            revision = current_revision(conn)
    finally:
        engine.dispose()
    return Manifest(
        kind="sqlite",
        file="",
        created_at=datetime.now(UTC).isoformat(),
        peerlens_version=version(),
        schema_revision=revision,
        tables=tables,
        tool=f"sqlite {sqlite3.sqlite_version} online backup API",
    )


def _backup_postgresql(url: str, partial: Path, on_snapshot, pg_dump: str | None, role: str | None) -> Manifest:
    from api.db import make_engine

    program = client_program("pg_dump", pg_dump)
    uri, env = libpq_uri(url)
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect().execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True) as conn:
            if role:
                conn.exec_driver_sql(f'SET LOCAL ROLE "{role}"')
            snapshot = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
            tables = table_counts(conn)
            revision = current_revision(conn)
            args = [program, "--format=custom", "--no-password", f"--snapshot={snapshot}", f"--file={partial}"]
            if role:
                args.append(f"--role={role}")
            done = subprocess.run([*args, f"--dbname={uri}"], env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise BackupError(f"pg_dump failed: {done.stderr.strip()[-2000:]}")
            if on_snapshot is not None:
                on_snapshot(conn)
            conn.rollback()
    except sa.exc.DBAPIError as exc:
        first = str(exc.orig).strip().splitlines()[0]
        raise BackupError(
            f"cannot read the database as this role ({first}); back up as the owner or a role in pg_read_all_data"
        ) from exc
    finally:
        engine.dispose()
    tool = subprocess.run([program, "--version"], capture_output=True, text=True).stdout.strip()
    return Manifest(
        kind="postgresql",
        file="",
        created_at=datetime.now(UTC).isoformat(),
        peerlens_version=version(),
        schema_revision=revision,
        tables=tables,
        tool=f"{tool} --format=custom",
        notes={"snapshot": snapshot, "role": role},
    )
