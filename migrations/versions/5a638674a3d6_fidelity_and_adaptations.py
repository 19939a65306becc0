"""Fidelity and adaptations: study fidelity checklists (versioned definitions), ratings of delivered
sessions by independent evaluators, and the FRAME adaptation log per arm.

Downgrade refuses while any of these tables holds rows (migrations.policy).

Revision ID: 5a638674a3d6
Revises: d5c8e1f4a7b2
Create Date: 2026-12-01 18:43:57.526027
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from migrations.policy import refuse_downgrade_if_data

TABLES = ["fidelity_rating", "adaptation", "fidelity_checklist"]

revision = "5a638674a3d6"
down_revision = "d5c8e1f4a7b2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fidelity_checklist",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["app_user.id"], name=op.f("fk_fidelity_checklist_created_by_app_user")
        ),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_fidelity_checklist_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fidelity_checklist")),
        sa.UniqueConstraint("study_id", "code", "version", name=op.f("uq_fidelity_checklist_study_id_code_version")),
    )
    with op.batch_alter_table("fidelity_checklist", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fidelity_checklist_study_id"), ["study_id"], unique=False)

    op.create_table(
        "adaptation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("arm_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("adapted_on", sa.Date(), nullable=False),
        sa.Column("phase", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("what", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("context_aspect", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("level", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("nature", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("planned", sa.Boolean(), nullable=False),
        sa.Column("decided_by", sa.JSON(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("goal", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=True),
        sa.Column("fidelity", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("component", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=True),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("reason_detail", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("recorded_by", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["arm_id"], ["arm.id"], name=op.f("fk_adaptation_arm_id_arm")),
        sa.ForeignKeyConstraint(["group_id"], ["peer_group.id"], name=op.f("fk_adaptation_group_id_peer_group")),
        sa.ForeignKeyConstraint(["recorded_by"], ["app_user.id"], name=op.f("fk_adaptation_recorded_by_app_user")),
        sa.ForeignKeyConstraint(
            ["session_id"], ["delivery_session.id"], name=op.f("fk_adaptation_session_id_delivery_session")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_adaptation_site_id_site")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_adaptation_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adaptation")),
    )
    with op.batch_alter_table("adaptation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_adaptation_arm_id"), ["arm_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_adaptation_study_id"), ["study_id"], unique=False)

    op.create_table(
        "fidelity_rating",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("arm_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("supporter_id", sa.Integer(), nullable=True),
        sa.Column("checklist_id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=True),
        sa.Column("method", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("rated_on", sa.Date(), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("total", sa.Float(), nullable=True),
        sa.Column("core", sa.Float(), nullable=True),
        sa.Column("form", sa.Float(), nullable=True),
        sa.Column("core_full", sa.Float(), nullable=True),
        sa.Column("items_answered", sa.Integer(), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["arm_id"], ["arm.id"], name=op.f("fk_fidelity_rating_arm_id_arm")),
        sa.ForeignKeyConstraint(
            ["checklist_id"], ["fidelity_checklist.id"], name=op.f("fk_fidelity_rating_checklist_id_fidelity_checklist")
        ),
        sa.ForeignKeyConstraint(["rater_id"], ["app_user.id"], name=op.f("fk_fidelity_rating_rater_id_app_user")),
        sa.ForeignKeyConstraint(
            ["session_id"], ["delivery_session.id"], name=op.f("fk_fidelity_rating_session_id_delivery_session")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_fidelity_rating_site_id_site")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_fidelity_rating_study_id_study")),
        sa.ForeignKeyConstraint(
            ["supporter_id"], ["peer_supporter.id"], name=op.f("fk_fidelity_rating_supporter_id_peer_supporter")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fidelity_rating")),
        sa.UniqueConstraint(
            "session_id", "checklist_id", "rater_id", name=op.f("uq_fidelity_rating_session_id_checklist_id_rater_id")
        ),
    )
    with op.batch_alter_table("fidelity_rating", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fidelity_rating_session_id"), ["session_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_fidelity_rating_study_id"), ["study_id"], unique=False)


def downgrade() -> None:
    refuse_downgrade_if_data(revision, TABLES, "fidelity checklists, fidelity ratings and the adaptation log")
    with op.batch_alter_table("fidelity_rating", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fidelity_rating_study_id"))
        batch_op.drop_index(batch_op.f("ix_fidelity_rating_session_id"))

    op.drop_table("fidelity_rating")
    with op.batch_alter_table("adaptation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_adaptation_study_id"))
        batch_op.drop_index(batch_op.f("ix_adaptation_arm_id"))

    op.drop_table("adaptation")
    with op.batch_alter_table("fidelity_checklist", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fidelity_checklist_study_id"))

    op.drop_table("fidelity_checklist")
