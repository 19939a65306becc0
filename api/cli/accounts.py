"""Users, their tokens and passwords, and the audit trail's hash chain."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    pass

from api.cli.core import _admin_change, _engine, audit_app, users_app


@users_app.command("create")
def users_create(
    email: str = typer.Argument(..., help="the user's email (their login name)"),
    role: str = typer.Option(..., "--role", help="admin | coordinator | analyst | evaluator"),
    site: list[str] | None = typer.Option(None, "--site", help="site code (or STUDY_ID:CODE); repeat for more"),
    expires: datetime | None = typer.Option(None, "--expires", help="token expiry, e.g. 2027-01-31 (UTC)"),
) -> None:
    """Create a user and print a new API token (shown once; only its hash is stored)."""
    from api.auth.policy import ROLES
    from api.users import create_with_token

    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}", param_hint="--role")
    if role == "coordinator" and not site:
        raise typer.BadParameter("a coordinator needs at least one --site", param_hint="--site")
    _print_token(
        lambda session, expires_at: create_with_token(session, email, role, site or [], expires_at=expires_at), expires
    )


def _print_token(issue, expires: datetime | None) -> None:
    """Run ``issue(session, expires_at)`` in one transaction and print the token it returns."""
    from sqlmodel import Session

    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    engine = _engine()
    try:
        with Session(engine) as session:
            try:
                token = issue(session, expires)
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from None
            session.commit()
    finally:
        engine.dispose()
    typer.echo(token)


@users_app.command("token")
def users_token(
    email: str = typer.Argument(..., help="an existing user's email"),
    expires: datetime | None = typer.Option(None, "--expires", help="token expiry (UTC)"),
    redcap: bool = typer.Option(
        False, "--redcap", help="REDCap's format (32 hex characters) for REDCap clients such as PyCap"
    ),
) -> None:
    """Issue another API token for an existing user."""
    from api.users import new_token_for

    _print_token(
        lambda session, expires_at: new_token_for(session, email, expires_at=expires_at, redcap=redcap), expires
    )


@users_app.command("list")
def users_list(as_json: bool = typer.Option(False, "--json", help="one JSON document instead of a table")) -> None:
    """List users: role, sites, active state and their tokens (prefix and state only)."""
    import json as _json

    from sqlmodel import Session

    from api.users import list_users

    engine = _engine()
    try:
        with Session(engine) as session:
            rows = list_users(session)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(_json.dumps([r.model_dump(mode="json") for r in rows], indent=1))
        return
    typer.echo(f"{'id':>4}  {'email':<32} {'role':<12} {'active':<6}  {'tokens (live/all)':<18} sites")
    for r in rows:
        live = sum(t.state == "live" for t in r.tokens)
        typer.echo(
            f"{r.id:>4}  {r.email:<32} {r.role:<12} {'yes' if r.active else 'no':<6}  "
            f"{f'{live}/{len(r.tokens)}':<18} {', '.join(r.sites) or '-'}"
        )
        for t in r.tokens:
            typer.echo(f"{'':>6}token {t.id}: {t.prefix}…  {t.state}")


@users_app.command("revoke")
def users_revoke(
    user: str = typer.Argument(..., help="email or id"),
    token: str | None = typer.Option(None, "--token", help="token id or prefix (plk_…); default: every live token"),
    reason: str | None = typer.Option(None, "--reason", help="recorded in the audit trail"),
) -> None:
    """Revoke a user's token (or all of them); the next request with it gets 401."""
    from api.auth.service import Actor
    from api.users import revoke_tokens

    def change(session):
        ids = revoke_tokens(session, user, Actor.system(), token=token, reason=reason)
        return f"revoked {len(ids)} token(s)" + (f": {', '.join(map(str, ids))}" if ids else "")

    _admin_change(change)


@users_app.command("password")
def users_password(
    user: str = typer.Argument(..., help="the user's email"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="read the password from standard input"),
) -> None:
    """Set a user's console password (argon2id hash; at least 12 characters). Prompts twice unless --password-stdin."""
    import sys

    from api.auth.service import Actor
    from api.console.auth import find_user, set_password
    from api.errors import ApiError

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Console password", hide_input=True, confirmation_prompt=True)

    def change(session):
        found = find_user(session, user)
        if found is None:
            raise LookupError(f"no user {user}")
        try:
            set_password(session, found, password, Actor.system())
        except ApiError as exc:
            raise ValueError(str(exc)) from None
        return f"console password set for {found.email}"

    _admin_change(change)


@users_app.command("totp")
def users_totp(user: str = typer.Argument(..., help="the user's email")) -> None:
    """Turn on the console's second factor for a user: prints a new TOTP secret and its otpauth:// URI
    (enter either in an authenticator app). A new secret replaces the old one."""
    from api.auth.service import Actor
    from api.console.auth import enable_totp, find_user, provisioning_uri
    from api.errors import ApiError

    def change(session):
        found = find_user(session, user)
        if found is None:
            raise LookupError(f"no user {user}")
        try:
            secret = enable_totp(session, found, Actor.system())
        except ApiError as exc:
            raise ValueError(str(exc)) from None
        return f"secret: {secret}\nuri: {provisioning_uri(secret, found.email)}"

    _admin_change(change)


@users_app.command("deactivate")
def users_deactivate(
    user: str = typer.Argument(..., help="email or id"),
    reason: str | None = typer.Option(None, "--reason", help="recorded in the audit trail"),
) -> None:
    """Deactivate a user: all their tokens stop working at once (reversible with `activate`)."""
    from api.auth.service import Actor
    from api.users import set_active

    _admin_change(lambda s: f"deactivated {set_active(s, user, Actor.system(), False, reason=reason).email}")


@users_app.command("activate")
def users_activate(
    user: str = typer.Argument(..., help="email or id"),
    reason: str | None = typer.Option(None, "--reason", help="recorded in the audit trail"),
) -> None:
    """Reactivate a deactivated user (tokens neither revoked nor expired work again)."""
    from api.auth.service import Actor
    from api.users import set_active

    _admin_change(lambda s: f"activated {set_active(s, user, Actor.system(), True, reason=reason).email}")


@audit_app.command("verify")
def audit_verify(
    max_delay: float = typer.Option(
        3600.0, "--max-delay", help="seconds a transaction may take; older unsealed times count as back-dated"
    ),
    head: str | None = typer.Option(
        None, "--head", help="SEQ:HASH printed by an earlier verify: it must still be there"
    ),
    as_json: bool = typer.Option(False, "--json", help="the report as JSON"),
    seal_first: bool = typer.Option(False, "--seal", help="seal waiting rows before checking"),
) -> None:
    """Recompute every row's MAC and the whole chain; exit status 1 when anything was tampered with.

    Keep the printed head (seq:hash) somewhere else (the operations log): a later verify with
    --head shows the chain still reaches it, i.e. no rows were cut off its end.
    """
    import json as _json
    from datetime import timedelta

    from sqlmodel import Session

    from api.audit.chain import seal, verify

    engine = _engine()
    try:
        if seal_first:
            seal(engine)
        with Session(engine) as session:
            report = verify(session, max_delay=timedelta(seconds=max_delay), expect_head=head)
    finally:
        engine.dispose()
    typer.echo(_json.dumps(report.as_dict(), indent=1) if as_json else "\n".join(report.lines()))
    if not report.ok:
        raise typer.Exit(code=1)


@audit_app.command("seal")
def audit_seal(full: bool = typer.Option(False, "--full", help="search every row, not only recent ones")) -> None:
    """Seal rows not yet in the chain (the worker and the server do this every round)."""
    from api.audit.chain import seal

    engine = _engine()
    try:
        n = seal(engine, full=full)
    finally:
        engine.dispose()
    typer.echo(f"sealed {n} row(s)")


# ---- commands of other domains (worker, export, analyze): one function each, below -------------
