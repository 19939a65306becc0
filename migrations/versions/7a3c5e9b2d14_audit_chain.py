"""Tamper-evident audit trail: a keyed MAC on every row and a hash chain (audit_seal).

Existing rows get their MAC and are sealed into the chain here, with the key the service uses
(PEERLENS_AUDIT_KEY, else derived from PEERLENS_SECRET_KEY), so `peerlens audit verify` passes on
an upgraded database. The append-only guard is lifted for the backfill only, inside this
migration's transaction.

A downgrade never deletes data: once rows carry MACs or the chain has links, the column and the
table stay where they are (an earlier release ignores them) and the next upgrade completes them —
MACs for rows written in between, and their links at the chain's end. On an empty trail the
downgrade removes both.

Revision ID: 7a3c5e9b2d14
Revises: a7d3e5f19c42
Create Date: 2026-12-01 16:30:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "7a3c5e9b2d14"
down_revision = "a7d3e5f19c42"
branch_labels = None
depends_on = None

_EVENT = sa.table(
    "audit_event",
    sa.column("id", sa.Integer),
    sa.column("at", sa.DateTime(timezone=True)),
    sa.column("actor_id", sa.Integer),
    sa.column("actor_role", sa.String),
    sa.column("action", sa.String),
    sa.column("entity", sa.String),
    sa.column("entity_id", sa.String),
    sa.column("study_id", sa.Integer),
    sa.column("site_id", sa.Integer),
    sa.column("before", sa.JSON),
    sa.column("after", sa.JSON),
    sa.column("reason", sa.String),
    sa.column("request_id", sa.String),
    sa.column("source", sa.String),
    sa.column("mac", sa.String),
)


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if "mac" not in {c["name"] for c in inspector.get_columns("audit_event")}:
        op.add_column("audit_event", sa.Column("mac", sa.String(length=100), nullable=True))
        op.create_index("uq_audit_event_mac", "audit_event", ["mac"], unique=True)
    if "audit_seal" not in inspector.get_table_names():
        _create_seal_table(bind)
    _backfill(bind)


def _create_seal_table(bind) -> None:
    op.create_table(
        "audit_seal",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("chain", sa.String(length=64), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_seal")),
        sa.UniqueConstraint("event_id", name=op.f("uq_audit_seal_event_id")),
    )
    if bind.dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION audit_seal_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_seal is append-only';
            END $$""")
        op.execute("""
            CREATE TRIGGER audit_seal_append_only BEFORE UPDATE OR DELETE ON audit_seal
            FOR EACH ROW EXECUTE FUNCTION audit_seal_append_only()""")
        op.execute("""
            CREATE TRIGGER audit_seal_no_truncate BEFORE TRUNCATE ON audit_seal
            FOR EACH STATEMENT EXECUTE FUNCTION audit_seal_append_only()""")
    else:
        for when in ("UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER audit_seal_no_{when.lower()} BEFORE {when} ON audit_seal
                BEGIN SELECT RAISE(ABORT, 'audit_seal is append-only'); END""")


_SEAL = sa.table(
    "audit_seal",
    sa.column("seq", sa.Integer),
    sa.column("event_id", sa.Integer),
    sa.column("chain", sa.String),
    sa.column("sealed_at", sa.DateTime(timezone=True)),
)


def _backfill(bind) -> None:
    """MAC the rows without one, then seal every unsealed row at the chain's end, in id order, in
    one sealing round."""
    from api.audit import chain

    key = chain.audit_key()
    postgres = bind.dialect.name == "postgresql"
    rows = bind.execute(sa.select(_EVENT).where(_EVENT.c.mac.is_(None)).order_by(_EVENT.c.id)).mappings().all()
    macs = {}
    for r in rows:
        row = dict(r)
        if row["at"] is not None and row["at"].tzinfo is None:
            row["at"] = row["at"].replace(tzinfo=UTC)  # SQLite keeps UTC without an offset
        macs[row["id"]] = chain.row_mac(key, row)
    if macs:
        if postgres:
            op.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
        else:
            op.execute("DROP TRIGGER IF EXISTS audit_event_no_update")
        bind.execute(
            _EVENT.update().where(_EVENT.c.id == sa.bindparam("b_id")).values(mac=sa.bindparam("b_mac")),
            [{"b_id": i, "b_mac": m} for i, m in macs.items()],
        )
        if postgres:
            op.execute("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only")
        else:
            op.execute("""
                CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event
                BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END""")
    head = bind.execute(sa.select(_SEAL.c.seq, _SEAL.c.chain).order_by(_SEAL.c.seq.desc()).limit(1)).first()
    previous, seq = (head.chain, head.seq) if head is not None else (chain.GENESIS, 0)
    sealed = sa.select(_SEAL.c.event_id)
    unsealed = bind.execute(
        sa.select(_EVENT.c.id, _EVENT.c.mac).where(_EVENT.c.id.not_in(sealed)).order_by(_EVENT.c.id)
    ).all()
    now = datetime.now(UTC)
    if not postgres:
        now = now.replace(tzinfo=None)
    links = []
    for event_id, mac in unsealed:
        seq += 1
        previous = chain.link(key, previous, seq, event_id, mac)
        links.append({"seq": seq, "event_id": event_id, "chain": previous, "sealed_at": now})
    if links:
        bind.execute(_SEAL.insert(), links)


def downgrade() -> None:
    bind = op.get_bind()
    held = (
        bind.execute(sa.select(sa.func.count()).select_from(_SEAL)).scalar_one()
        or bind.execute(sa.select(sa.func.count()).select_from(_EVENT).where(_EVENT.c.mac.is_not(None))).scalar_one()
    )
    if held:
        # Data stays (the MACs and chain are the trail's evidence of integrity); the earlier release
        # ignores both, and upgrading again completes them.
        return
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_seal_no_truncate ON audit_seal")
        op.execute("DROP TRIGGER IF EXISTS audit_seal_append_only ON audit_seal")
        op.execute("DROP FUNCTION IF EXISTS audit_seal_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_seal_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_seal_no_delete")
    op.drop_table("audit_seal")
    op.drop_index("uq_audit_event_mac", table_name="audit_event")
    # A plain ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35): a batch copy would lose the table's triggers.
    op.execute("ALTER TABLE audit_event DROP COLUMN mac")
