"""Exports: per-study export settings (date mode, flagged free-text items) and custom instruments
imported from a REDCap data dictionary.

Revision ID: 368dc61a8df4
Revises: c3a91d5e7f20
Create Date: 2026-11-25 14:13:16.364114
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from migrations.policy import refuse_downgrade_if_data

revision = "368dc61a8df4"
down_revision = "c3a91d5e7f20"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_settings",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("date_mode", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("free_text_items", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_export_settings_study_id_study")),
        sa.PrimaryKeyConstraint("study_id", name=op.f("pk_export_settings")),
    )
    op.create_table(
        "study_instrument",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("dictionary_csv", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_study_instrument_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study_instrument")),
        sa.UniqueConstraint("code", name=op.f("uq_study_instrument_code")),
    )
    with op.batch_alter_table("study_instrument", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_study_instrument_study_id"), ["study_id"], unique=False)


def downgrade() -> None:
    refuse_downgrade_if_data(
        "368dc61a8df4",
        ["export_settings", "study_instrument"],
        "export settings and instruments imported from REDCap",
    )
    with op.batch_alter_table("study_instrument", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_study_instrument_study_id"))

    op.drop_table("study_instrument")
    op.drop_table("export_settings")
