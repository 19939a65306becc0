"""Withdrawal kinds and voiding of participants, the participant-facing study title, licensed content.

``participant`` gains the date and reason of each kind of withdrawal (intervention stopped,
follow-up stopped, consent for use of data withdrawn) and the "entered in error" void; ``study``
gains ``public_title``; ``wave`` gains ``staff_instruments``; ``licensed_content`` holds uploaded
licensed wordings and calibration tables.

Revision ID: d4f8a2c61e93
Revises: e4b8c1d7f2a6
Create Date: 2026-12-01 19:00:00
"""

from __future__ import annotations

import json

import sqlalchemy as sa
import sqlmodel
from alembic import op

from migrations.policy import DowngradeRefused, refuse_downgrade_if_data

revision = "d4f8a2c61e93"
down_revision = "e4b8c1d7f2a6"
branch_labels = None
depends_on = None

_KINDS = ("intervention_stopped", "follow_up_stopped", "consent_withdrawn")


def upgrade() -> None:
    with op.batch_alter_table("participant") as batch_op:
        for kind in _KINDS:
            batch_op.add_column(sa.Column(f"{kind}_on", sa.Date(), nullable=True))
            batch_op.add_column(
                sa.Column(f"{kind}_reason", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True)
            )
        batch_op.add_column(sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("void_reason", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True))
    with op.batch_alter_table("study") as batch_op:
        batch_op.add_column(sa.Column("public_title", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True))
    with op.batch_alter_table("wave") as batch_op:
        batch_op.add_column(sa.Column("staff_instruments", sa.JSON(), nullable=True))
    op.create_table(
        "licensed_content",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instrument", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("scale", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("uploaded_by", sa.Integer(), nullable=True),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["uploaded_by"], ["app_user.id"], name=op.f("fk_licensed_content_uploaded_by_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licensed_content")),
    )
    op.create_index("ix_licensed_content_instrument_kind", "licensed_content", ["instrument", "kind"], unique=False)


def downgrade() -> None:
    # Refused while any participant carries a withdrawal or void, a study a public title, or
    # licensed content was uploaded: dropping them would lose what the audit trail refers to.
    refuse_downgrade_if_data("d4f8a2c61e93", ["licensed_content"], "uploaded licensed content")
    bind = op.get_bind()
    held = bind.execute(
        sa.text(
            "SELECT COUNT(*) FROM participant WHERE voided_at IS NOT NULL OR "
            + " OR ".join(f"{k}_on IS NOT NULL" for k in _KINDS)
        )
    ).scalar_one()
    titled = bind.execute(sa.text("SELECT COUNT(*) FROM study WHERE public_title IS NOT NULL")).scalar_one()
    staffed = sum(
        1
        for (v,) in bind.execute(sa.text("SELECT staff_instruments FROM wave WHERE staff_instruments IS NOT NULL"))
        if v and (json.loads(v) if isinstance(v, str) else v)
    )
    if held or titled or staffed:
        raise DowngradeRefused(
            "d4f8a2c61e93",
            {"participant": int(held), "study": int(titled), "wave": staffed},
            f"revision d4f8a2c61e93 cannot be downgraded: {held} participant(s) carry a withdrawal or void, "
            f"{titled} study(ies) a public title and {staffed} wave(s) staff-administered instruments; "
            "restore the backup taken before the upgrade instead",
        )
    op.drop_index("ix_licensed_content_instrument_kind", table_name="licensed_content")
    op.drop_table("licensed_content")
    with op.batch_alter_table("wave") as batch_op:
        batch_op.drop_column("staff_instruments")
    with op.batch_alter_table("study") as batch_op:
        batch_op.drop_column("public_title")
    with op.batch_alter_table("participant") as batch_op:
        batch_op.drop_column("void_reason")
        batch_op.drop_column("voided_at")
        for kind in reversed(_KINDS):
            batch_op.drop_column(f"{kind}_reason")
            batch_op.drop_column(f"{kind}_on")
