"""The downgrade policy: a downgrade never deletes study data; where it would, it refuses.

A revision whose ``downgrade()`` drops tables (or columns) that hold data calls
:func:`refuse_downgrade_if_data` first. On a database where those tables are empty the downgrade
proceeds; otherwise it raises :class:`DowngradeRefused`, whose message names the revision, the
tables and their row counts, and the way back (restore the backup taken before the upgrade). The
migrations run in one transaction (on SQLite too, see ``migrations/env.py``), so the whole downgrade
is rolled back and the database stays at the revision it had.

README.md ("Upgrades and downgrades") and CHANGELOG.md list, per revision, whether it can be
downgraded with data.

Examples
--------
In a revision file::

    from migrations.policy import refuse_downgrade_if_data

    def downgrade() -> None:
        refuse_downgrade_if_data("3b8461b8f832", ["transcript", "coding"], "transcripts and codings")
        op.drop_table("coding")
        ...
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


class DowngradeRefused(RuntimeError):
    """A downgrade that would delete data; the database is left at its revision."""

    def __init__(self, revision: str, held: dict[str, int], message: str):
        super().__init__(message)
        self.revision = revision
        self.held = held  # table -> rows that stand in the way


def row_counts(tables: Sequence[str]) -> dict[str, int]:
    """Rows in each of ``tables`` on the migration's connection (a missing table counts 0)."""
    bind = op.get_bind()
    present = set(sa.inspect(bind).get_table_names())
    return {
        t: (bind.execute(sa.text(f'SELECT COUNT(*) FROM "{t}"')).scalar_one() if t in present else 0) for t in tables
    }


def refuse_downgrade_if_data(revision: str, tables: Sequence[str], what: str) -> None:
    """Raise :class:`DowngradeRefused` when any of ``tables`` holds rows.

    Parameters
    ----------
    revision : str
        The revision being downgraded (named in the message).
    tables : sequence of str
        Tables the downgrade would drop (or whose columns it would drop).
    what : str
        What those tables hold, in the words of a data manager ("transcripts and codings").
    """
    held = {t: n for t, n in row_counts(tables).items() if n}
    if not held:
        return
    listing = ", ".join(f"{t} ({n} row{'s' if n != 1 else ''})" for t, n in held.items())
    raise DowngradeRefused(
        revision,
        held,
        f"refusing to downgrade revision {revision}: it would delete {what}, and these tables hold data: "
        f"{listing}. The downgrade was rolled back: the database is still at the revision it had. To go back to "
        "an earlier release, restore the backup taken before the upgrade (peerlens restore), or delete those rows "
        "first if they are truly not needed.",
    )
