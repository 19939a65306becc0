"""``peerlens restore``: a backup into an empty database, checked against its manifest.

The file is checked against its manifest (SHA-256) and its kind against the target's backend
before anything is written; a target that holds any table is refused. SQLite: the online backup API
into a temporary file renamed over the target when complete. PostgreSQL: ``pg_restore
--exit-on-error --single-transaction`` (all or nothing). The restored row counts and schema revision
are then compared with the manifest.

Examples
--------
>>> restore("backups/peerlens.sqlite", "sqlite:///./drill.db").verified  # doctest: +SKIP
True
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from api.backup import (
    PGDUMP_MAGIC,
    SQLITE_MAGIC,
    BackupError,
    Manifest,
    backend_of,
    client_program,
    libpq_uri,
    manifest_path,
    new_private_file,
    sha256_of,
    sqlite_path,
    table_counts,
)
from api.migrate import current_revision


@dataclass
class RestoreResult:
    kind: str
    tables: dict[str, int]
    schema_revision: str | None
    verified: bool  # row counts checked against a manifest


# ---- restore ---------------------------------------------------------------------------------


def _kind_of(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PGDUMP_MAGIC):
        return "postgresql"
    raise BackupError(f"{path} is neither a SQLite database nor a pg_dump custom-format archive")


def existing_objects(url: str) -> list[str]:
    """Tables (first), then views and sequences already in the database at ``url`` (empty list: empty)."""
    from api.db import make_engine

    if backend_of(url) == "sqlite":
        path = sqlite_path(url)
        if not path.exists() or path.stat().st_size == 0:
            return []
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                query = (
                    "SELECT type <> 'table', name FROM sqlite_master "
                    "WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'"
                )
            else:
                query = (
                    "SELECT c.relkind NOT IN ('r', 'p'), c.relname FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') "
                    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'"
                )
            rows = conn.execute(sa.text(query))
            return [name for _, name in sorted((bool(other), name) for other, name in rows)]
    except sa.exc.OperationalError as exc:
        raise BackupError(
            f"cannot connect to the target database ({str(exc.orig).strip().splitlines()[0]}); "
            "create it empty first (PostgreSQL: createdb -O <owner role> <name>)"
        ) from exc
    finally:
        engine.dispose()


def restore(
    path: str | Path,
    url: str,
    *,
    pg_restore: str | None = None,
    no_owner: bool = False,
    role: str | None = None,
) -> RestoreResult:
    """Restore the backup at ``path`` into the empty database at ``url``.

    Parameters
    ----------
    path : path
        A file written by :func:`backup` (or by ``pg_dump --format=custom`` by hand: it then has no
        manifest and its row counts are reported, not checked).
    url : str
        The target: a SQLite file that does not exist yet (or is empty), or an existing empty
        PostgreSQL database.
    pg_restore : str, optional
        PostgreSQL: the ``pg_restore`` program.
    no_owner, role : optional
        PostgreSQL: ``pg_restore --no-owner`` (objects owned by the restoring role instead of the
        original owners) and ``--role`` (``SET ROLE`` before restoring).

    Raises
    ------
    BackupError
        The target is not empty, the backup does not match its manifest or the target's backend,
        or the restored row counts differ from the manifest.
    """
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"no backup file at {path}")
    kind = _kind_of(path)
    target_kind = backend_of(url)
    if kind != target_kind:
        raise BackupError(f"{path} is a {kind} backup; restore it into a {kind} database, not {target_kind}")
    mpath = manifest_path(path)
    manifest = Manifest.read(mpath) if mpath.exists() else None
    if manifest is not None and sha256_of(path) != manifest.sha256:
        raise BackupError(f"{path} does not match its manifest (SHA-256 differs): the file is damaged or was altered")
    present = existing_objects(url)
    if present:
        shown = ", ".join(present[:8]) + (", ..." if len(present) > 8 else "")
        raise BackupError(
            f"refusing to restore into a database that is not empty ({len(present)} tables and other objects: "
            f"{shown}); restore into a new, empty database"
        )
    if kind == "sqlite":
        _restore_sqlite(path, url)
    else:
        _restore_postgresql(path, url, pg_restore, no_owner, role)
    from api.db import make_engine

    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            tables = table_counts(conn)
            revision = current_revision(conn)
    finally:
        engine.dispose()
    if manifest is not None:
        wrong = {t: (n, tables.get(t)) for t, n in manifest.tables.items() if tables.get(t) != n}
        if wrong or revision != manifest.schema_revision:
            detail = "; ".join(f"{t}: {n} in the backup, {m} restored" for t, (n, m) in list(wrong.items())[:5])
            raise BackupError(f"the restored database does not match the manifest: {detail or 'schema revision'}")
    return RestoreResult(kind=kind, tables=tables, schema_revision=revision, verified=manifest is not None)


def _restore_sqlite(path: Path, url: str) -> None:
    target_path = sqlite_path(url)
    partial = target_path.with_name(target_path.name + ".partial")
    partial.unlink(missing_ok=True)
    new_private_file(partial)
    try:
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        target = sqlite3.connect(str(partial), isolation_level=None)
        try:
            source.backup(target)
            if [r[0] for r in target.execute("PRAGMA integrity_check").fetchall()] != ["ok"]:
                raise BackupError("the backup failed SQLite's integrity check; nothing was restored")
        finally:
            source.close()
            target.close()
        os.replace(partial, target_path)  # the target appears whole or not at all
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _restore_postgresql(path: Path, url: str, pg_restore: str | None, no_owner: bool, role: str | None) -> None:
    program = client_program("pg_restore", pg_restore)
    uri, env = libpq_uri(url)
    args = [program, "--exit-on-error", "--single-transaction", "--no-password", f"--dbname={uri}"]
    if no_owner:
        args.append("--no-owner")
    if role:
        args.append(f"--role={role}")
    done = subprocess.run([*args, str(path)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"pg_restore failed (nothing was restored): {done.stderr.strip()[-2000:]}")
