"""Process evaluation (delivery): delivery plans and TIDieR descriptions per arm, peer supporters and
their identifier vault, training programmes, modules and records, peer groups and memberships,
delivery sessions and attendance, one-to-one contacts, forum activity; and the foreign keys of
``adverse_event.peer_supporter_id`` and ``adverse_event.delivery_session_id``.

Before this revision those two adverse-event columns were plain ids with no table to point at; an
id set there cannot name a record (the tables are new), so the upgrade clears it (the
``peer_supporter_involved`` and ``group_session_involved`` flags stay) and says how many it cleared.

Downgrade refuses while any of the new tables holds rows (migrations.policy).

Revision ID: d5c8e1f4a7b2
Revises: d4f8a2c61e93
Create Date: 2026-12-01 18:36:43.523048
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
import sqlmodel
from alembic import op

from migrations.policy import refuse_downgrade_if_data

TABLES = [
    "session_attendance",
    "forum_activity",
    "peer_contact",
    "group_membership",
    "training_record",
    "peer_supporter_contact",
    "delivery_session",
    "training_module",
    "tidier_description",
    "peer_group",
    "peer_supporter",
    "delivery_plan",
    "training_programme",
]

revision = "d5c8e1f4a7b2"
down_revision = "d4f8a2c61e93"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "training_programme",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=True),
        sa.Column("trainers", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_training_programme_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_programme")),
        sa.UniqueConstraint("study_id", "code", name=op.f("uq_training_programme_study_id_code")),
    )
    with op.batch_alter_table("training_programme", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_training_programme_study_id"), ["study_id"], unique=False)

    op.create_table(
        "delivery_plan",
        sa.Column("arm_id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("planned_sessions", sa.Integer(), nullable=False),
        sa.Column("session_minutes", sa.Integer(), nullable=False),
        sa.Column("frequency_days", sa.Integer(), nullable=True),
        sa.Column("adherence_kind", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("adherence_threshold", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["arm_id"], ["arm.id"], name=op.f("fk_delivery_plan_arm_id_arm")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_delivery_plan_study_id_study")),
        sa.PrimaryKeyConstraint("arm_id", name=op.f("pk_delivery_plan")),
    )
    with op.batch_alter_table("delivery_plan", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_delivery_plan_study_id"), ["study_id"], unique=False)

    op.create_table(
        "peer_group",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("arm_id", sa.Integer(), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("mode", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("supporter_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["arm_id"], ["arm.id"], name=op.f("fk_peer_group_arm_id_arm")),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_peer_group_site_id_site")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_peer_group_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_peer_group")),
        sa.UniqueConstraint("study_id", "code", name=op.f("uq_peer_group_study_id_code")),
    )
    with op.batch_alter_table("peer_group", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_peer_group_site_id"), ["site_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_peer_group_study_id"), ["study_id"], unique=False)

    op.create_table(
        "peer_supporter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("arm_id", sa.Integer(), nullable=True),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("condition", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("years_since_diagnosis", sa.Float(), nullable=True),
        sa.Column("prior_role", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("gender", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("age_band", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("ethnicity", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("status_reason", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["arm_id"], ["arm.id"], name=op.f("fk_peer_supporter_arm_id_arm")),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_peer_supporter_site_id_site")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_peer_supporter_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_peer_supporter")),
        sa.UniqueConstraint("study_id", "code", name=op.f("uq_peer_supporter_study_id_code")),
    )
    with op.batch_alter_table("peer_supporter", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_peer_supporter_site_id"), ["site_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_peer_supporter_study_id"), ["study_id"], unique=False)

    op.create_table(
        "tidier_description",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("arm_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["arm_id"], ["arm.id"], name=op.f("fk_tidier_description_arm_id_arm")),
        sa.ForeignKeyConstraint(
            ["created_by"], ["app_user.id"], name=op.f("fk_tidier_description_created_by_app_user")
        ),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_tidier_description_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tidier_description")),
        sa.UniqueConstraint("arm_id", "version", name=op.f("uq_tidier_description_arm_id_version")),
    )
    with op.batch_alter_table("tidier_description", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tidier_description_study_id"), ["study_id"], unique=False)

    op.create_table(
        "training_module",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("programme_id", sa.Integer(), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("objectives", sa.JSON(), nullable=False),
        sa.Column("hours", sa.Float(), nullable=False),
        sa.Column("format", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("materials", sa.JSON(), nullable=False),
        sa.Column("theory", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["training_programme.id"], name=op.f("fk_training_module_programme_id_training_programme")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_module")),
        sa.UniqueConstraint("programme_id", "code", name=op.f("uq_training_module_programme_id_code")),
    )
    with op.batch_alter_table("training_module", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_training_module_programme_id"), ["programme_id"], unique=False)

    op.create_table(
        "delivery_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("arm_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("supporter_id", sa.Integer(), nullable=True),
        sa.Column("number", sa.Integer(), nullable=True),
        sa.Column("planned_date", sa.Date(), nullable=False),
        sa.Column("delivered_on", sa.Date(), nullable=True),
        sa.Column("duration_minutes", sa.Integer(), nullable=True),
        sa.Column("mode", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("topic", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column("curriculum_module", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("cancel_reason", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["arm_id"], ["arm.id"], name=op.f("fk_delivery_session_arm_id_arm")),
        sa.ForeignKeyConstraint(["group_id"], ["peer_group.id"], name=op.f("fk_delivery_session_group_id_peer_group")),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_delivery_session_site_id_site")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_delivery_session_study_id_study")),
        sa.ForeignKeyConstraint(
            ["supporter_id"], ["peer_supporter.id"], name=op.f("fk_delivery_session_supporter_id_peer_supporter")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_session")),
    )
    with op.batch_alter_table("delivery_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_delivery_session_group_id"), ["group_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_delivery_session_study_id"), ["study_id"], unique=False)

    op.create_table(
        "forum_activity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("week_start", sa.Date(), nullable=False),
        sa.Column("posts", sa.Integer(), nullable=False),
        sa.Column("replies", sa.Integer(), nullable=False),
        sa.Column("logins", sa.Integer(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participant.id"], name=op.f("fk_forum_activity_participant_id_participant")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_forum_activity_site_id_site")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_forum_activity_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forum_activity")),
        sa.UniqueConstraint("participant_id", "week_start", name=op.f("uq_forum_activity_participant_id_week_start")),
    )
    with op.batch_alter_table("forum_activity", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_forum_activity_study_id"), ["study_id"], unique=False)

    op.create_table(
        "group_membership",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("joined_on", sa.Date(), nullable=False),
        sa.Column("left_on", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["peer_group.id"], name=op.f("fk_group_membership_group_id_peer_group")),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participant.id"], name=op.f("fk_group_membership_participant_id_participant")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_group_membership")),
    )
    with op.batch_alter_table("group_membership", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_group_membership_group_id"), ["group_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_group_membership_participant_id"), ["participant_id"], unique=False)

    op.create_table(
        "peer_contact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("supporter_id", sa.Integer(), nullable=True),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("on_date", sa.Date(), nullable=False),
        sa.Column("duration_minutes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participant.id"], name=op.f("fk_peer_contact_participant_id_participant")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_peer_contact_site_id_site")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_peer_contact_study_id_study")),
        sa.ForeignKeyConstraint(
            ["supporter_id"], ["peer_supporter.id"], name=op.f("fk_peer_contact_supporter_id_peer_supporter")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_peer_contact")),
    )
    with op.batch_alter_table("peer_contact", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_peer_contact_participant_id"), ["participant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_peer_contact_study_id"), ["study_id"], unique=False)

    op.create_table(
        "peer_supporter_contact",
        sa.Column("supporter_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
        sa.Column("phone", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("date_of_birth", sa.Date(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["supporter_id"],
            ["peer_supporter.id"],
            name=op.f("fk_peer_supporter_contact_supporter_id_peer_supporter"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("supporter_id", name=op.f("pk_peer_supporter_contact")),
    )
    op.create_table(
        "training_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("supporter_id", sa.Integer(), nullable=False),
        sa.Column("module_id", sa.Integer(), nullable=True),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("on_date", sa.Date(), nullable=False),
        sa.Column("hours", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("assessor", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["module_id"], ["training_module.id"], name=op.f("fk_training_record_module_id_training_module")
        ),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_training_record_study_id_study")),
        sa.ForeignKeyConstraint(
            ["supporter_id"], ["peer_supporter.id"], name=op.f("fk_training_record_supporter_id_peer_supporter")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_record")),
    )
    with op.batch_alter_table("training_record", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_training_record_study_id"), ["study_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_training_record_supporter_id"), ["supporter_id"], unique=False)

    op.create_table(
        "session_attendance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participant.id"], name=op.f("fk_session_attendance_participant_id_participant")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["delivery_session.id"], name=op.f("fk_session_attendance_session_id_delivery_session")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_attendance")),
        sa.UniqueConstraint(
            "session_id", "participant_id", name=op.f("uq_session_attendance_session_id_participant_id")
        ),
    )
    with op.batch_alter_table("session_attendance", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_session_attendance_participant_id"), ["participant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_session_attendance_session_id"), ["session_id"], unique=False)

    bind = op.get_bind()
    cleared = bind.execute(
        sa.text(
            "UPDATE adverse_event SET peer_supporter_id = NULL, delivery_session_id = NULL "
            "WHERE peer_supporter_id IS NOT NULL OR delivery_session_id IS NOT NULL"
        )
    ).rowcount
    if cleared:
        logging.getLogger("alembic").warning(
            "d5c8e1f4a7b2: cleared peer_supporter_id/delivery_session_id of %d adverse events (no records to name)",
            cleared,
        )
    with op.batch_alter_table("adverse_event", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_adverse_event_delivery_session_id_delivery_session"),
            "delivery_session",
            ["delivery_session_id"],
            ["id"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_adverse_event_peer_supporter_id_peer_supporter"),
            "peer_supporter",
            ["peer_supporter_id"],
            ["id"],
        )


def downgrade() -> None:
    refuse_downgrade_if_data(
        "d5c8e1f4a7b2",
        TABLES,
        "peer supporters, training, groups, sessions, attendance, contacts, forum activity and delivery plans",
    )
    # A downgrade never deletes data: before dropping tables or columns that may hold rows, call
    # migrations.policy.refuse_downgrade_if_data(revision, [tables], "what they hold"). Say in
    # CHANGELOG.md whether this revision can be downgraded with data.
    with op.batch_alter_table("adverse_event", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_adverse_event_peer_supporter_id_peer_supporter"), type_="foreignkey")
        batch_op.drop_constraint(
            batch_op.f("fk_adverse_event_delivery_session_id_delivery_session"), type_="foreignkey"
        )

    with op.batch_alter_table("session_attendance", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_session_attendance_session_id"))
        batch_op.drop_index(batch_op.f("ix_session_attendance_participant_id"))

    op.drop_table("session_attendance")
    with op.batch_alter_table("training_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_training_record_supporter_id"))
        batch_op.drop_index(batch_op.f("ix_training_record_study_id"))

    op.drop_table("training_record")
    op.drop_table("peer_supporter_contact")
    with op.batch_alter_table("peer_contact", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_peer_contact_study_id"))
        batch_op.drop_index(batch_op.f("ix_peer_contact_participant_id"))

    op.drop_table("peer_contact")
    with op.batch_alter_table("group_membership", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_group_membership_participant_id"))
        batch_op.drop_index(batch_op.f("ix_group_membership_group_id"))

    op.drop_table("group_membership")
    with op.batch_alter_table("forum_activity", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_forum_activity_study_id"))

    op.drop_table("forum_activity")
    with op.batch_alter_table("delivery_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_session_study_id"))
        batch_op.drop_index(batch_op.f("ix_delivery_session_group_id"))

    op.drop_table("delivery_session")
    with op.batch_alter_table("training_module", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_training_module_programme_id"))

    op.drop_table("training_module")
    with op.batch_alter_table("tidier_description", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tidier_description_study_id"))

    op.drop_table("tidier_description")
    with op.batch_alter_table("peer_supporter", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_peer_supporter_study_id"))
        batch_op.drop_index(batch_op.f("ix_peer_supporter_site_id"))

    op.drop_table("peer_supporter")
    with op.batch_alter_table("peer_group", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_peer_group_study_id"))
        batch_op.drop_index(batch_op.f("ix_peer_group_site_id"))

    op.drop_table("peer_group")
    with op.batch_alter_table("delivery_plan", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_plan_study_id"))

    op.drop_table("delivery_plan")
    with op.batch_alter_table("training_programme", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_training_programme_study_id"))

    op.drop_table("training_programme")
