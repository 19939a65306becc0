"""Statistical analysis plan versions (analysis_plan) and the study's unblinding (study_unblinding).

Downgrade refuses while either table holds rows (migrations.policy): a locked plan and the record
of unblinding are part of the trial's history; on a database without them it drops the tables.

Revision ID: e4b8c1d7f2a6
Revises: 7a3c5e9b2d14
Create Date: 2026-12-01 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from migrations.policy import refuse_downgrade_if_data

revision = "e4b8c1d7f2a6"
down_revision = "7a3c5e9b2d14"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "analysis_plan",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("content_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("locked_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_analysis_plan_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analysis_plan")),
        sa.UniqueConstraint("study_id", "version", name=op.f("uq_analysis_plan_study_id_version")),
    )
    with op.batch_alter_table("analysis_plan", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_analysis_plan_study_id"), ["study_id"], unique=False)
    op.create_table(
        "study_unblinding",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("unblinded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unblinded_by", sa.Integer(), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_study_unblinding_study_id_study")),
        sa.PrimaryKeyConstraint("study_id", name=op.f("pk_study_unblinding")),
    )


def downgrade() -> None:
    refuse_downgrade_if_data(
        "e4b8c1d7f2a6",
        ["analysis_plan", "study_unblinding"],
        "analysis plan versions and the record of unblinding",
    )
    op.drop_table("study_unblinding")
    with op.batch_alter_table("analysis_plan", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_analysis_plan_study_id"))
    op.drop_table("analysis_plan")
