"""Participant links keep the nonce their token is derived from, so a live link can be shown again.

Revision ID: 5e1a8b3c9d47
Revises: 4c7d2e9a1b05
Create Date: 2026-11-25 15:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "5e1a8b3c9d47"
down_revision = "4c7d2e9a1b05"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Links issued before this revision keep working; they just cannot be shown again.
    with op.batch_alter_table("participant_link") as batch_op:
        batch_op.add_column(sa.Column("nonce", sqlmodel.sql.sqltypes.AutoString(length=43), nullable=True))


def downgrade() -> None:
    # Allowed with data (see README, "Upgrades and downgrades"): every link keeps opening (its hash
    # stays); only the nonce that lets a live link be shown again is dropped.
    with op.batch_alter_table("participant_link") as batch_op:
        batch_op.drop_column("nonce")
