"""Meta-inferences of joint displays: one row per study, theme and scale (confirmation, expansion,
discordance or silence, with the team's note).

Downgrade refuses while the table holds rows (migrations.policy); on a database without them it
drops the table.

Revision ID: d4f8a2c6e913
Revises: e4b19c7d2a60
Create Date: 2026-12-01 19:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from migrations.policy import refuse_downgrade_if_data

revision = "d4f8a2c6e913"
down_revision = "e4b19c7d2a60"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meta_inference",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("theme", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("scale", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("inference", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("author", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_meta_inference_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meta_inference")),
        sa.UniqueConstraint("study_id", "theme", "scale", name=op.f("uq_meta_inference_study_id_theme_scale")),
    )
    op.create_index(op.f("ix_meta_inference_study_id"), "meta_inference", ["study_id"], unique=False)


def downgrade() -> None:
    refuse_downgrade_if_data("d4f8a2c6e913", ["meta_inference"], "the meta-inferences of joint displays")
    op.drop_index(op.f("ix_meta_inference_study_id"), table_name="meta_inference")
    op.drop_table("meta_inference")
