"""Screening log: people assessed for eligibility, the outcome, the reason, and the enrolled participant.

Downgrade refuses while the table holds rows (migrations.policy): a screening log is never dropped;
on a database without entries it drops the table.

Revision ID: d4f8a2c6e1b3
Revises: d4f8a2c6e913
Create Date: 2026-12-01 18:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from migrations.policy import refuse_downgrade_if_data

revision = "d4f8a2c6e1b3"
down_revision = "d4f8a2c6e913"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "screening_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("screened_on", sa.Date(), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.Column("participant_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participant.id"], name=op.f("fk_screening_entry_participant_id_participant")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_screening_entry_site_id_site")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_screening_entry_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_screening_entry")),
        sa.UniqueConstraint("participant_id", name=op.f("uq_screening_entry_participant_id")),
    )
    with op.batch_alter_table("screening_entry", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_screening_entry_site_id"), ["site_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_screening_entry_study_id"), ["study_id"], unique=False)


def downgrade() -> None:
    refuse_downgrade_if_data(revision, ["screening_entry"], "the screening log")
    with op.batch_alter_table("screening_entry", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_screening_entry_study_id"))
        batch_op.drop_index(batch_op.f("ix_screening_entry_site_id"))
    op.drop_table("screening_entry")
