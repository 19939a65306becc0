"""Personal form links: one hashed token per participant and wave (participant_link).

The audit trail's append-only guards (PostgreSQL trigger function, SQLite triggers) are
installed by 0001; this revision adds no audit change.

Revision ID: b7e2f4c1a9d0
Revises: 0001
Create Date: 2026-11-25 14:06:14.431154
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from migrations.policy import refuse_downgrade_if_data

revision = "b7e2f4c1a9d0"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "participant_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("wave_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["created_by"], ["app_user.id"], name=op.f("fk_participant_link_created_by_app_user")),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participant.id"],
            name=op.f("fk_participant_link_participant_id_participant"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_participant_link_site_id_site")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_participant_link_study_id_study")),
        sa.ForeignKeyConstraint(["wave_id"], ["wave.id"], name=op.f("fk_participant_link_wave_id_wave")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_participant_link")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_participant_link_token_hash")),
    )
    with op.batch_alter_table("participant_link", schema=None) as batch_op:
        batch_op.create_index("ix_participant_link_participant_wave", ["participant_id", "wave_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_participant_link_study_id"), ["study_id"], unique=False)


def downgrade() -> None:
    refuse_downgrade_if_data(
        "b7e2f4c1a9d0",
        ["participant_link"],
        "participants' personal form links",
    )
    with op.batch_alter_table("participant_link", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_participant_link_study_id"))
        batch_op.drop_index("ix_participant_link_participant_wave")

    op.drop_table("participant_link")
