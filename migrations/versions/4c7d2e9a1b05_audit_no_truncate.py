"""Refuse TRUNCATE on the audit trail too (row triggers do not fire for it on PostgreSQL).

Revision ID: 4c7d2e9a1b05
Revises: 3b8461b8f832
Create Date: 2026-11-25 14:45:00
"""

from __future__ import annotations

from alembic import op

revision = "4c7d2e9a1b05"
down_revision = "3b8461b8f832"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite has no TRUNCATE (DELETE without WHERE already hits the row trigger).
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
            FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()""")


def downgrade() -> None:
    # Allowed with data: only the trigger goes; no row is touched.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event")
