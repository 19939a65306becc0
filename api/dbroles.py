"""PostgreSQL roles: migrations run as the owner of the tables, the service as a role that is not.

The owner (``PEERLENS_MIGRATION_DATABASE_URL``) creates and alters tables; the service role (the
user of ``DATABASE_URL``) gets only what the application needs. On the audit trail that is
SELECT and INSERT: no UPDATE, DELETE or TRUNCATE, and — not being the owner — no ALTER TABLE, no
DISABLE TRIGGER, no DROP. ``peerlens migrate`` applies :func:`grant_service_role` after every
upgrade, so tables added by later revisions are covered too.

Examples
--------
>>> grants("peerlens_app")[0]
'GRANT USAGE ON SCHEMA public TO "peerlens_app"'
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import make_url

# Written once, never changed: the service may read and append, nothing else.
APPEND_ONLY = ("audit_event", "audit_seal")
READ_ONLY = ("alembic_version",)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def grants(role: str) -> list[str]:
    """The statements giving ``role`` what the service needs (and not more)."""
    r = _quote(role)
    out = [
        f"GRANT USAGE ON SCHEMA public TO {r}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {r}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {r}",
    ]
    for table in APPEND_ONLY:
        out.append(f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {table} FROM {r}")
    for table in READ_ONLY:
        out.append(f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {table} FROM {r}")
    return out


def service_role(database_url: str) -> str | None:
    """The role the service connects as (the user of its URL)."""
    return make_url(database_url).username


def grant_service_role(owner_url: str, role: str) -> None:
    """Apply :func:`grants` for ``role`` on the database at ``owner_url`` (as its owner)."""
    from api.db import make_engine

    engine = make_engine(owner_url, pool_size=1, max_overflow=0)
    try:
        with engine.begin() as conn:
            owner = conn.execute(text("SELECT current_user")).scalar_one()
            if owner == role:
                raise ValueError(
                    "DATABASE_URL and PEERLENS_MIGRATION_DATABASE_URL use the same role: the service must not "
                    "own the tables"
                )
            for stmt in grants(role):
                conn.execute(text(stmt))
    finally:
        engine.dispose()
