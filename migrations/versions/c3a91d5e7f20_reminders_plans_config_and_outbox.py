"""Reminders: per-study configuration (pause, quiet hours, SMS webhook), plans per wave and the
reminder outbox (unique per participant, wave and step; claimed by workers via status and due time).

Revision ID: c3a91d5e7f20
Revises: b7e2f4c1a9d0
Create Date: 2026-11-25 14:07:53.990662
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from migrations.policy import refuse_downgrade_if_data

revision = "c3a91d5e7f20"
down_revision = "b7e2f4c1a9d0"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reminder_config",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("quiet_start_minute", sa.Integer(), nullable=True),
        sa.Column("quiet_end_minute", sa.Integer(), nullable=True),
        sa.Column("sms_webhook_url", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_reminder_config_study_id_study")),
        sa.PrimaryKeyConstraint("study_id", name=op.f("pk_reminder_config")),
    )
    op.create_table(
        "reminder_plan",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("wave_id", sa.Integer(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("body", sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
        sa.Column("sms_body", sqlmodel.sql.sqltypes.AutoString(length=480), nullable=True),
        sa.Column("form_url", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_reminder_plan_study_id_study")),
        sa.ForeignKeyConstraint(["wave_id"], ["wave.id"], name=op.f("fk_reminder_plan_wave_id_wave")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminder_plan")),
        sa.UniqueConstraint("study_id", "wave_id", name=op.f("uq_reminder_plan_study_id_wave_id")),
    )
    with op.batch_alter_table("reminder_plan", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reminder_plan_study_id"), ["study_id"], unique=False)

    op.create_table(
        "reminder",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("wave_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_opens_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("cancel_reason", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("message_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("provider_ref", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participant.id"], name=op.f("fk_reminder_participant_id_participant")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_reminder_site_id_site")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_reminder_study_id_study")),
        sa.ForeignKeyConstraint(["wave_id"], ["wave.id"], name=op.f("fk_reminder_wave_id_wave")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminder")),
        sa.UniqueConstraint("message_id", name=op.f("uq_reminder_message_id")),
        sa.UniqueConstraint("participant_id", "wave_id", "step", name=op.f("uq_reminder_participant_id_wave_id_step")),
    )
    with op.batch_alter_table("reminder", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reminder_participant_id"), ["participant_id"], unique=False)
        batch_op.create_index("ix_reminder_status_due_at", ["status", "due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_reminder_study_id"), ["study_id"], unique=False)


def downgrade() -> None:
    refuse_downgrade_if_data(
        "c3a91d5e7f20",
        ["reminder", "reminder_plan", "reminder_config"],
        "reminder plans and the reminder outbox",
    )
    with op.batch_alter_table("reminder", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reminder_study_id"))
        batch_op.drop_index("ix_reminder_status_due_at")
        batch_op.drop_index(batch_op.f("ix_reminder_participant_id"))

    op.drop_table("reminder")
    with op.batch_alter_table("reminder_plan", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reminder_plan_study_id"))

    op.drop_table("reminder_plan")
    op.drop_table("reminder_config")
