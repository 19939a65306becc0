"""Safety monitoring: settings and site safety contacts, alerts raised by answers, adverse events and
their follow-ups, and the staff side of the outbox (safety messages to study staff).

Downgrade refuses while any of these tables holds rows (migrations.policy): safety records are never
dropped; on a database without them it drops the tables.

Revision ID: a7d3e5f19c42
Revises: 5e1a8b3c9d47
Create Date: 2026-12-01 15:32:56.685103
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from migrations.policy import refuse_downgrade_if_data

revision = "a7d3e5f19c42"
down_revision = "5e1a8b3c9d47"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "safety_settings",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("pi_user_id", sa.Integer(), nullable=True),
        sa.Column("escalate_after_hours", sa.Float(), nullable=False),
        sa.Column("sae_follow_up_days", sa.Integer(), nullable=False),
        sa.Column("support_message", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("crisis_numbers", sa.JSON(), nullable=False),
        sa.Column("site_support", sa.JSON(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["pi_user_id"], ["app_user.id"], name=op.f("fk_safety_settings_pi_user_id_app_user")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_safety_settings_study_id_study")),
        sa.PrimaryKeyConstraint("study_id", name=op.f("pk_safety_settings")),
    )
    op.create_table(
        "safety_contact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_safety_contact_site_id_site")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_safety_contact_study_id_study")),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.id"], name=op.f("fk_safety_contact_user_id_app_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_safety_contact")),
        sa.UniqueConstraint("site_id", "user_id", name=op.f("uq_safety_contact_site_id_user_id")),
    )
    with op.batch_alter_table("safety_contact", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_safety_contact_study_id"), ["study_id"], unique=False)

    op.create_table(
        "staff_notification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("topic", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("ref_entity", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("ref_id", sa.Integer(), nullable=False),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("body", sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("cancel_reason", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("message_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_staff_notification_site_id_site")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_staff_notification_study_id_study")),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.id"], name=op.f("fk_staff_notification_user_id_app_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_notification")),
        sa.UniqueConstraint("message_id", name=op.f("uq_staff_notification_message_id")),
        sa.UniqueConstraint("topic", "user_id", name=op.f("uq_staff_notification_topic_user_id")),
    )
    with op.batch_alter_table("staff_notification", schema=None) as batch_op:
        batch_op.create_index("ix_staff_notification_status_due_at", ["status", "due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_staff_notification_study_id"), ["study_id"], unique=False)

    op.create_table(
        "safety_alert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("response_id", sa.Integer(), nullable=False),
        sa.Column("wave_id", sa.Integer(), nullable=False),
        sa.Column("instrument", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("rule_code", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("rule_label", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("rule_kind", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("rule_op", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
        sa.Column("rule_value", sa.Float(), nullable=False),
        sa.Column("observed", sa.Float(), nullable=False),
        sa.Column("response_mode", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("routing", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.Integer(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.Integer(), nullable=True),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=True),
        sa.Column("resolution_note", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["acknowledged_by"], ["app_user.id"], name=op.f("fk_safety_alert_acknowledged_by_app_user")
        ),
        sa.ForeignKeyConstraint(["owner_id"], ["app_user.id"], name=op.f("fk_safety_alert_owner_id_app_user")),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participant.id"], name=op.f("fk_safety_alert_participant_id_participant")
        ),
        sa.ForeignKeyConstraint(["resolved_by"], ["app_user.id"], name=op.f("fk_safety_alert_resolved_by_app_user")),
        sa.ForeignKeyConstraint(["response_id"], ["response.id"], name=op.f("fk_safety_alert_response_id_response")),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_safety_alert_site_id_site")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_safety_alert_study_id_study")),
        sa.ForeignKeyConstraint(["wave_id"], ["wave.id"], name=op.f("fk_safety_alert_wave_id_wave")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_safety_alert")),
        sa.UniqueConstraint("response_id", "rule_code", name=op.f("uq_safety_alert_response_id_rule_code")),
    )
    with op.batch_alter_table("safety_alert", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_safety_alert_participant_id"), ["participant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_safety_alert_study_id"), ["study_id"], unique=False)

    op.create_table(
        "adverse_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
        sa.Column("onset_date", sa.Date(), nullable=False),
        sa.Column("resolution_date", sa.Date(), nullable=True),
        sa.Column("seriousness", sa.JSON(), nullable=False),
        sa.Column("serious", sa.Boolean(), nullable=False),
        sa.Column("severity", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("relatedness", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("expectedness", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("action_taken", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("reporter", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("peer_supporter_involved", sa.Boolean(), nullable=False),
        sa.Column("peer_supporter_id", sa.Integer(), nullable=True),
        sa.Column("group_session_involved", sa.Boolean(), nullable=False),
        sa.Column("delivery_session_id", sa.Integer(), nullable=True),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reported_by", sa.Integer(), nullable=True),
        sa.Column("last_follow_up_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["alert_id"], ["safety_alert.id"], name=op.f("fk_adverse_event_alert_id_safety_alert")),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participant.id"], name=op.f("fk_adverse_event_participant_id_participant")
        ),
        sa.ForeignKeyConstraint(["reported_by"], ["app_user.id"], name=op.f("fk_adverse_event_reported_by_app_user")),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_adverse_event_site_id_site")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_adverse_event_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adverse_event")),
    )
    with op.batch_alter_table("adverse_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_adverse_event_participant_id"), ["participant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_adverse_event_study_id"), ["study_id"], unique=False)

    op.create_table(
        "adverse_event_follow_up",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("adverse_event_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=True),
        sa.Column("resolution_date", sa.Date(), nullable=True),
        sa.Column("entered_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["adverse_event_id"],
            ["adverse_event.id"],
            name=op.f("fk_adverse_event_follow_up_adverse_event_id_adverse_event"),
        ),
        sa.ForeignKeyConstraint(
            ["entered_by"], ["app_user.id"], name=op.f("fk_adverse_event_follow_up_entered_by_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adverse_event_follow_up")),
    )
    with op.batch_alter_table("adverse_event_follow_up", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_adverse_event_follow_up_adverse_event_id"), ["adverse_event_id"], unique=False
        )


def downgrade() -> None:
    refuse_downgrade_if_data(
        "a7d3e5f19c42",
        [
            "adverse_event_follow_up",
            "adverse_event",
            "safety_alert",
            "staff_notification",
            "safety_contact",
            "safety_settings",
        ],
        "safety alerts, adverse events and their follow-ups, safety messages and the safety set-up",
    )
    with op.batch_alter_table("adverse_event_follow_up", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_adverse_event_follow_up_adverse_event_id"))

    op.drop_table("adverse_event_follow_up")
    with op.batch_alter_table("adverse_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_adverse_event_study_id"))
        batch_op.drop_index(batch_op.f("ix_adverse_event_participant_id"))

    op.drop_table("adverse_event")
    with op.batch_alter_table("safety_alert", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_safety_alert_study_id"))
        batch_op.drop_index(batch_op.f("ix_safety_alert_participant_id"))

    op.drop_table("safety_alert")
    with op.batch_alter_table("staff_notification", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_staff_notification_study_id"))
        batch_op.drop_index("ix_staff_notification_status_due_at")

    op.drop_table("staff_notification")
    with op.batch_alter_table("safety_contact", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_safety_contact_study_id"))

    op.drop_table("safety_contact")
    op.drop_table("safety_settings")
