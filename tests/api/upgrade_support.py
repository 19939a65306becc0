"""A populated trial database at a fixed earlier revision, and row-by-row / export comparisons.

The data set in ``tests/api/data/upgrade_5e1a8b3c9d47/`` was written once by release 0.1.0 (schema
revision ``5e1a8b3c9d47``): the demo study (12 participants, 262 responses with scores) plus
participants with contact details, randomised allocations, REST submissions with idempotency keys,
amendments, a withdrawal, personal links (live, revoked, used through the web form), reminder plans
and an outbox with sent messages, an unsubscribe, export settings, two transcripts with their
originals, a codebook with history, codings, memos, suggestions, an instrument imported from REDCap,
users with live, expired and revoked tokens, and 350+ audit events.

:func:`populate` migrates an empty database to that revision and inserts the rows with SQLAlchemy
Core into the *reflected* tables, so it never depends on today's ORM models. :func:`read_rows`
reads every row of every table back in a canonical form (UTC ISO date-times, sorted JSON) that is
comparable across revisions and backends.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

#: ``{table: {primary key tuple: {column: canonical value}}}``
Rows = dict[str, dict[tuple, dict[str, Any]]]

PINNED = "5e1a8b3c9d47"
FIXTURE = Path(__file__).parent / "data" / f"upgrade_{PINNED}"

#: Exports compared before and after: file name -> (token role, shape, query, key columns).
EXPORTS = {
    "analyst-long.csv": ("analyst", "long", {}, ("participant", "wave", "instrument", "scale")),
    "analyst-wide.csv": ("analyst", "wide", {"items": "true"}, ("participant", "wave")),
    "analyst-items.csv": ("analyst", "items", {}, ("participant", "wave", "instrument", "item")),
    "admin-wide.csv": ("admin", "wide", {"items": "true", "identifiers": "true"}, ("participant", "wave")),
}


def meta() -> dict[str, Any]:
    """Tokens, link tokens, the secret key and ids recorded when the data set was written."""
    return json.loads((FIXTURE / "meta.json").read_text())


def fixture_rows() -> dict[str, dict[str, Any]]:
    """``{table: {"columns": [...], "rows": [[...], ...]}}`` as written by release 0.1.0."""
    return json.loads((FIXTURE / "rows.json").read_text())


def golden_export(name: str) -> bytes:
    return (FIXTURE / "exports" / name).read_bytes()


# ---- loading ---------------------------------------------------------------------------------


def _bind_value(column: sa.Column, value: Any, dialect: str) -> Any:
    if value is None:
        return None
    if isinstance(column.type, sa.DateTime):
        dt = datetime.fromisoformat(value)
        dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
        return dt.replace(tzinfo=None) if dialect == "sqlite" else dt
    if isinstance(column.type, sa.Date):
        return date.fromisoformat(value)
    return value


def populate(url: str) -> Rows:
    """Migrate the empty database at ``url`` to :data:`PINNED` and load the data set.

    Returns the loaded rows in :func:`read_rows` form (keyed by the reflected primary keys), so a
    caller can check that the database holds exactly the data set.
    """
    from api.db import make_engine
    from api.migrate import upgrade

    upgrade(url, PINNED)
    data = fixture_rows()
    engine = make_engine(url, pool_size=1, max_overflow=0)
    expected: Rows = {}
    try:
        md = sa.MetaData()
        md.reflect(engine)
        with engine.begin() as conn:
            for table in md.sorted_tables:
                if table.name not in data:
                    continue
                spec = data[table.name]
                cols = [table.c[name] for name in spec["columns"]]
                rows = [
                    {c.name: _bind_value(c, v, engine.dialect.name) for c, v in zip(cols, row, strict=True)}
                    for row in spec["rows"]
                ]
                if rows:
                    conn.execute(table.insert(), rows)
                pk = [c.name for c in table.primary_key.columns]
                expected[table.name] = {tuple(r[k] for k in pk): {k: canonical(v) for k, v in r.items()} for r in rows}
            if engine.dialect.name == "postgresql":
                # Explicit ids leave the serial sequences behind; move them past the loaded rows.
                for table in md.sorted_tables:
                    if "id" in table.c and table.c.id.primary_key and len(table.primary_key.columns) == 1:
                        conn.execute(
                            sa.text(
                                f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', 'id'), "
                                f'COALESCE((SELECT MAX(id) FROM "{table.name}"), 0) + 1, false)'
                            )
                        )
    finally:
        engine.dispose()
    return expected


# ---- reading back ----------------------------------------------------------------------------


def canonical(value: Any) -> Any:
    """A value as comparable text-like data: UTC ISO date-times, sorted JSON, floats as floats."""
    if value is None:
        return None
    if isinstance(value, datetime):
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def read_rows(url: str, tables: Iterable[str] | None = None) -> Rows:
    """``{table: {primary key: {column: canonical value}}}`` for every (or the named) table."""
    from api.db import make_engine

    engine = make_engine(url, pool_size=1, max_overflow=0)
    out: Rows = {}
    try:
        md = sa.MetaData()
        md.reflect(engine)
        wanted = set(tables) if tables is not None else None
        with engine.connect() as conn:
            for table in md.sorted_tables:
                if table.name == "alembic_version" or (wanted is not None and table.name not in wanted):
                    continue
                pk = [c.name for c in table.primary_key.columns]
                rows = {}
                for row in conn.execute(sa.select(table)).mappings():
                    rows[tuple(row[k] for k in pk)] = {k: canonical(v) for k, v in row.items()}
                out[table.name] = rows
    finally:
        engine.dispose()
    return out


def _show(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def diff_rows(
    before: Rows, after: Rows, *, declared: dict[tuple[str, str | None], Any] | None = None, limit: int = 25
) -> list[str]:
    """What did not survive: one readable line per lost table, lost row or changed value.

    ``declared`` maps ``(table, column)`` (column None: the whole table) to an object with
    ``expected(before_row) -> value`` (or ``dropped = True``) for changes a revision makes on purpose.
    """
    declared = declared or {}
    problems: list[str] = []
    for table, rows in before.items():
        if table not in after:
            d = declared.get((table, None))
            if not (d and getattr(d, "dropped", False)):
                problems.append(f"table {table}: gone after the upgrade ({len(rows)} rows lost)")
            continue
        now = after[table]
        missing = [k for k in rows if k not in now]
        if missing:
            shown = ", ".join(map(str, missing[:5]))
            problems.append(f"table {table}: {len(missing)} of {len(rows)} rows lost, e.g. primary key {shown}")
        changed: dict[str, list[str]] = {}
        gone_columns: set[str] = set()
        for key, old in rows.items():
            new = now.get(key)
            if new is None:
                continue
            for column, value in old.items():
                d = declared.get((table, column))
                if column not in new:
                    if not (d and getattr(d, "dropped", False)):
                        gone_columns.add(column)
                    continue
                expected = d.expected(old) if d is not None and not getattr(d, "dropped", False) else value
                if new[column] != expected:
                    changed.setdefault(column, []).append(
                        f"row {key}: before {_show(value)}, after {_show(new[column])}"
                        + (f" (expected {_show(expected)})" if expected != value else "")
                    )
        for column in sorted(gone_columns):
            problems.append(f"table {table}, column {column}: gone after the upgrade")
        for column, lines in sorted(changed.items()):
            problems.append(f"table {table}, column {column}: {len(lines)} row(s) changed; " + "; ".join(lines[:3]))
    if len(problems) > limit:
        problems = problems[:limit] + [f"... and {len(problems) - limit} more"]
    return problems


# ---- exports ---------------------------------------------------------------------------------


def parse_csv(data: bytes) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    header = next(reader)
    return header, [dict(zip(header, row, strict=True)) for row in reader]


def diff_exports(
    name: str,
    before: bytes,
    after: bytes,
    keys: tuple[str, ...],
    limit: int = 10,
    declared: dict[tuple[str | None, str], Any] | None = None,
) -> list[str]:
    """Differences between two CSV exports in the columns both have, rows matched on ``keys``.

    ``declared`` maps ``(file name or None for every file, column)`` to an object whose
    ``expected(before_value) -> after_value`` says how a release changes that column on purpose.
    """
    declared = declared or {}
    h1, rows1 = parse_csv(before)
    h2, rows2 = parse_csv(after)
    common = [c for c in h1 if c in h2]
    problems = [f"{name}: column {c} is gone" for c in h1 if c not in h2]
    index1 = {tuple(r[k] for k in keys): r for r in rows1}
    index2 = {tuple(r[k] for k in keys): r for r in rows2}
    if len(index1) != len(rows1) or len(index2) != len(rows2):
        problems.append(f"{name}: the key {keys} does not identify rows ({len(rows1)} / {len(rows2)} rows)")

    def label(key):
        return " ".join(f"{k}={v}" for k, v in zip(keys, key, strict=True))

    lost = [k for k in index1 if k not in index2]
    extra = [k for k in index2 if k not in index1]
    if lost:
        problems.append(f"{name}: {len(lost)} row(s) missing after, e.g. {label(lost[0])}")
    if extra:
        problems.append(f"{name}: {len(extra)} row(s) new after, e.g. {label(extra[0])}")
    for key, r1 in index1.items():
        r2 = index2.get(key)
        if r2 is None:
            continue
        for c in common:
            d = declared.get((name, c)) or declared.get((None, c))
            expected = d.expected(r1[c]) if d is not None else r1[c]
            if r2[c] != expected:
                problems.append(f"{name}: row {label(key)}, column {c}: before {r1[c]!r}, after {r2[c]!r}")
                if len(problems) >= limit:
                    return problems + ["..."]
    return problems
