"""Transcripts (de-identified) and their identifier vault, codebook with history, codings, memos and
auto-coding suggestions.

Revision ID: 3b8461b8f832
Revises: 368dc61a8df4
Create Date: 2026-11-25 14:19:26.120129
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from migrations.policy import refuse_downgrade_if_data

revision = "3b8461b8f832"
down_revision = "368dc61a8df4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("inclusion", sa.Text(), nullable=False),
        sa.Column("exclusion", sa.Text(), nullable=False),
        sa.Column("example", sa.Text(), nullable=False),
        sa.Column("color", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("patterns", sa.JSON(), nullable=False),
        sa.Column("codable", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["parent_id"], ["code.id"], name=op.f("fk_code_parent_id_code")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_code_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_code")),
        sa.UniqueConstraint("study_id", "key", name=op.f("uq_code_study_id_key")),
    )
    with op.batch_alter_table("code", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_code_study_id"), ["study_id"], unique=False)

    op.create_table(
        "code_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("code_id", sa.Integer(), nullable=False),
        sa.Column("code_key", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("by", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_code_history_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_code_history")),
    )
    with op.batch_alter_table("code_history", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_code_history_study_id"), ["study_id"], unique=False)

    op.create_table(
        "memo",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("start", sa.Integer(), nullable=True),
        sa.Column("end", sa.Integer(), nullable=True),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_memo_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memo")),
    )
    with op.batch_alter_table("memo", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_memo_study_id"), ["study_id"], unique=False)

    op.create_table(
        "transcript",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("wave_id", sa.Integer(), nullable=True),
        sa.Column("participant_id", sa.Integer(), nullable=True),
        sa.Column("participant_ids", sa.JSON(), nullable=False),
        sa.Column("participant_codes", sa.JSON(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("source_format", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("turns", sa.JSON(), nullable=False),
        sa.Column("ner", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("ner_model", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("replacement_counts", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participant.id"], name=op.f("fk_transcript_participant_id_participant")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_transcript_site_id_site")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_transcript_study_id_study")),
        sa.ForeignKeyConstraint(["wave_id"], ["wave.id"], name=op.f("fk_transcript_wave_id_wave")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transcript")),
    )
    with op.batch_alter_table("transcript", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_transcript_participant_id"), ["participant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_transcript_study_id"), ["study_id"], unique=False)

    op.create_table(
        "coding",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("transcript_id", sa.Integer(), nullable=False),
        sa.Column("code_id", sa.Integer(), nullable=False),
        sa.Column("start", sa.Integer(), nullable=False),
        sa.Column("end", sa.Integer(), nullable=False),
        sa.Column("coder", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("coder_id", sa.Integer(), nullable=True),
        sa.Column("memo", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["code_id"], ["code.id"], name=op.f("fk_coding_code_id_code")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_coding_study_id_study")),
        sa.ForeignKeyConstraint(["transcript_id"], ["transcript.id"], name=op.f("fk_coding_transcript_id_transcript")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coding")),
    )
    with op.batch_alter_table("coding", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_coding_code_id"), ["code_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_coding_study_id"), ["study_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_coding_transcript_id"), ["transcript_id"], unique=False)

    op.create_table(
        "transcript_original",
        sa.Column("transcript_id", sa.Integer(), nullable=False),
        sa.Column("filename", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("replacements", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["transcript_id"],
            ["transcript.id"],
            name=op.f("fk_transcript_original_transcript_id_transcript"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("transcript_id", name=op.f("pk_transcript_original")),
    )
    op.create_table(
        "suggestion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("transcript_id", sa.Integer(), nullable=False),
        sa.Column("code_id", sa.Integer(), nullable=False),
        sa.Column("start", sa.Integer(), nullable=False),
        sa.Column("end", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("coding_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["code_id"], ["code.id"], name=op.f("fk_suggestion_code_id_code")),
        sa.ForeignKeyConstraint(["coding_id"], ["coding.id"], name=op.f("fk_suggestion_coding_id_coding")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_suggestion_study_id_study")),
        sa.ForeignKeyConstraint(
            ["transcript_id"], ["transcript.id"], name=op.f("fk_suggestion_transcript_id_transcript")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suggestion")),
        sa.UniqueConstraint(
            "transcript_id", "code_id", "start", "end", name=op.f("uq_suggestion_transcript_id_code_id_start_end")
        ),
    )
    with op.batch_alter_table("suggestion", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_suggestion_study_id"), ["study_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_suggestion_transcript_id"), ["transcript_id"], unique=False)


def downgrade() -> None:
    refuse_downgrade_if_data(
        "3b8461b8f832",
        ["transcript", "transcript_original", "code", "code_history", "coding", "memo", "suggestion"],
        "transcripts, the codebook, codings, memos and suggestions",
    )
    with op.batch_alter_table("suggestion", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_suggestion_transcript_id"))
        batch_op.drop_index(batch_op.f("ix_suggestion_study_id"))

    op.drop_table("suggestion")
    op.drop_table("transcript_original")
    with op.batch_alter_table("coding", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_coding_transcript_id"))
        batch_op.drop_index(batch_op.f("ix_coding_study_id"))
        batch_op.drop_index(batch_op.f("ix_coding_code_id"))

    op.drop_table("coding")
    with op.batch_alter_table("transcript", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transcript_study_id"))
        batch_op.drop_index(batch_op.f("ix_transcript_participant_id"))

    op.drop_table("transcript")
    with op.batch_alter_table("memo", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_memo_study_id"))

    op.drop_table("memo")
    with op.batch_alter_table("code_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_code_history_study_id"))

    op.drop_table("code_history")
    with op.batch_alter_table("code", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_code_study_id"))

    op.drop_table("code")
