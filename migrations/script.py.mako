"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    # A downgrade never deletes data: before dropping tables or columns that may hold rows, call
    # migrations.policy.refuse_downgrade_if_data(revision, [tables], "what they hold"). Say in
    # CHANGELOG.md whether this revision can be downgraded with data.
    ${downgrades if downgrades else "pass"}
