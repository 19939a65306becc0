"""Initial schema: studies, sites, arms, waves, participants and contacts, randomisation,
responses and scores, idempotency keys, users and tokens, and the append-only audit trail.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 13:58:59.911505
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from migrations.policy import refuse_downgrade_if_data

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_user")),
        sa.UniqueConstraint("email", name=op.f("uq_app_user_email")),
    )
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_role", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("entity", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("entity_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=True),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index("ix_audit_event_entity", ["entity", "entity_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_event_study_id"), ["study_id"], unique=False)

    op.create_table(
        "study",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("design", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("blinding", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("planned_sample_size", sa.Integer(), nullable=True),
        sa.Column("power_assumptions", sa.JSON(), nullable=True),
        sa.Column("time_zone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("randomisation_seed", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study")),
    )
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("prefix", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name=op.f("fk_api_token_user_id_app_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_token_token_hash")),
    )
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_token_user_id"), ["user_id"], unique=False)

    op.create_table(
        "arm",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("allocation_ratio", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_arm_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_arm")),
        sa.UniqueConstraint("study_id", "code", name=op.f("uq_arm_study_id_code")),
    )
    with op.batch_alter_table("arm", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_arm_study_id"), ["study_id"], unique=False)

    op.create_table(
        "site",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_site_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_site")),
        sa.UniqueConstraint("study_id", "code", name=op.f("uq_site_study_id_code")),
    )
    with op.batch_alter_table("site", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_site_study_id"), ["study_id"], unique=False)

    op.create_table(
        "wave",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("offset_days", sa.Integer(), nullable=False),
        sa.Column("window_before_days", sa.Integer(), nullable=False),
        sa.Column("window_after_days", sa.Integer(), nullable=False),
        sa.Column("instruments", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_wave_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wave")),
        sa.UniqueConstraint("study_id", "code", name=op.f("uq_wave_study_id_code")),
    )
    with op.batch_alter_table("wave", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_wave_study_id"), ["study_id"], unique=False)

    op.create_table(
        "allocation_stratum",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("allocated", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_allocation_stratum_site_id_site")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_allocation_stratum_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocation_stratum")),
        sa.UniqueConstraint("study_id", "site_id", name=op.f("uq_allocation_stratum_study_id_site_id")),
    )
    op.create_table(
        "participant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("arm_id", sa.Integer(), nullable=True),
        sa.Column("study_code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("enrolled_on", sa.Date(), nullable=False),
        sa.Column("consent_date", sa.Date(), nullable=False),
        sa.Column("consent_version", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("randomised", sa.Boolean(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("status_date", sa.Date(), nullable=True),
        sa.Column("status_reason", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["arm_id"], ["arm.id"], name=op.f("fk_participant_arm_id_arm")),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_participant_site_id_site")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_participant_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_participant")),
        sa.UniqueConstraint("study_id", "study_code", name=op.f("uq_participant_study_id_study_code")),
    )
    with op.batch_alter_table("participant", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_participant_site_id"), ["site_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_participant_study_id"), ["study_id"], unique=False)

    op.create_table(
        "user_site",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_user_site_site_id_site"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name=op.f("fk_user_site_user_id_app_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "site_id", name=op.f("pk_user_site")),
    )
    op.create_table(
        "allocation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("stratum_id", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("block", sa.Integer(), nullable=False),
        sa.Column("block_size", sa.Integer(), nullable=False),
        sa.Column("arm_id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("allocated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["arm_id"], ["arm.id"], name=op.f("fk_allocation_arm_id_arm")),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participant.id"], name=op.f("fk_allocation_participant_id_participant")
        ),
        sa.ForeignKeyConstraint(
            ["stratum_id"], ["allocation_stratum.id"], name=op.f("fk_allocation_stratum_id_allocation_stratum")
        ),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_allocation_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocation")),
        sa.UniqueConstraint("participant_id", name=op.f("uq_allocation_participant_id")),
        sa.UniqueConstraint("stratum_id", "sequence", name=op.f("uq_allocation_stratum_id_sequence")),
    )
    with op.batch_alter_table("allocation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_allocation_study_id"), ["study_id"], unique=False)

    op.create_table(
        "participant_contact",
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
        sa.Column("phone", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("date_of_birth", sa.Date(), nullable=True),
        sa.Column("preferred_channel", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("opt_out", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participant.id"],
            name=op.f("fk_participant_contact_participant_id_participant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("participant_id", name=op.f("pk_participant_contact")),
    )
    op.create_table(
        "response",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("wave_id", sa.Integer(), nullable=False),
        sa.Column("instrument", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("instrument_version", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("external_scores", sa.JSON(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("mode", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("entered_by", sa.Integer(), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("out_of_window", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["entered_by"], ["app_user.id"], name=op.f("fk_response_entered_by_app_user")),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participant.id"], name=op.f("fk_response_participant_id_participant")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_response_site_id_site")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_response_study_id_study")),
        sa.ForeignKeyConstraint(["wave_id"], ["wave.id"], name=op.f("fk_response_wave_id_wave")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_response")),
        sa.UniqueConstraint(
            "participant_id", "wave_id", "instrument", name=op.f("uq_response_participant_id_wave_id_instrument")
        ),
    )
    with op.batch_alter_table("response", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_response_participant_id"), ["participant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_response_study_id"), ["study_id"], unique=False)

    op.create_table(
        "idempotency_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("request_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("response_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participant.id"], name=op.f("fk_idempotency_key_participant_id_participant")
        ),
        sa.ForeignKeyConstraint(["response_id"], ["response.id"], name=op.f("fk_idempotency_key_response_id_response")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_key")),
        sa.UniqueConstraint("participant_id", "key", name=op.f("uq_idempotency_key_participant_id_key")),
    )
    op.create_table(
        "score",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("response_id", sa.Integer(), nullable=False),
        sa.Column("scale", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("band", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("level", sa.Integer(), nullable=True),
        sa.Column("items_answered", sa.Integer(), nullable=False),
        sa.Column("items_expected", sa.Integer(), nullable=False),
        sa.Column("prorated", sa.Boolean(), nullable=False),
        sa.Column("missing_reason", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["response_id"], ["response.id"], name=op.f("fk_score_response_id_response"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_score")),
        sa.UniqueConstraint("response_id", "scale", name=op.f("uq_score_response_id_scale")),
    )
    _append_only_audit()


def downgrade() -> None:
    refuse_downgrade_if_data(
        "0001",
        [
            "app_user",
            "audit_event",
            "study",
            "api_token",
            "arm",
            "site",
            "wave",
            "allocation_stratum",
            "participant",
            "user_site",
            "allocation",
            "participant_contact",
            "response",
            "idempotency_key",
            "score",
        ],
        "the whole study database (studies, participants, responses, users and the audit trail)",
    )
    _drop_audit_guards()
    op.drop_table("score")
    op.drop_table("idempotency_key")
    with op.batch_alter_table("response", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_response_study_id"))
        batch_op.drop_index(batch_op.f("ix_response_participant_id"))

    op.drop_table("response")
    op.drop_table("participant_contact")
    with op.batch_alter_table("allocation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_allocation_study_id"))

    op.drop_table("allocation")
    op.drop_table("user_site")
    with op.batch_alter_table("participant", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_participant_study_id"))
        batch_op.drop_index(batch_op.f("ix_participant_site_id"))

    op.drop_table("participant")
    op.drop_table("allocation_stratum")
    with op.batch_alter_table("wave", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wave_study_id"))

    op.drop_table("wave")
    with op.batch_alter_table("site", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_site_study_id"))

    op.drop_table("site")
    with op.batch_alter_table("arm", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_arm_study_id"))

    op.drop_table("arm")
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_token_user_id"))

    op.drop_table("api_token")
    op.drop_table("study")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_study_id"))
        batch_op.drop_index("ix_audit_event_entity")

    op.drop_table("audit_event")
    op.drop_table("app_user")


def _append_only_audit() -> None:
    """Make ``audit_event`` insert-only in the database itself (21 CFR 11.10(e), ICH E6(R3) 4.2)."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_event is append-only';
            END $$""")
        op.execute("""
            CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event
            FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()""")
    elif bind.dialect.name == "sqlite":
        for when in ("UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER audit_event_no_{when.lower()} BEFORE {when} ON audit_event
                BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END""")


def _drop_audit_guards() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_event_append_only ON audit_event")
        op.execute("DROP FUNCTION IF EXISTS audit_event_append_only()")
    elif bind.dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_delete")
