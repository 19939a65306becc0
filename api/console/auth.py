"""Console sign-in: argon2id passwords, an optional TOTP second factor, sessions and their cookie.

The session cookie holds ``<token>.<last activity>.<mac>``: the token names a row of
:class:`~api.console.models.ConsoleSession` (stored as its SHA-256), the time of the last request
lets the idle timeout work without writing on every page view (a GET never writes), and the HMAC
(keyed by ``PEERLENS_SECRET_KEY``) stops a browser from moving its own clock. Every form of the
console carries a CSRF token derived from the session token.

Failed sign-ins are throttled per account *and* client address: after ``limit`` failures within
the window, further attempts on that account from that address wait, while the same person from
another address (or a colleague behind the same clinic NAT) still signs in.

Examples
--------
>>> h = hash_password("correct horse battery")
>>> h.startswith("$argon2id$"), verify_password(h, "correct horse battery"), verify_password(h, "wrong")
(True, True, False)
>>> cookie = sign_cookie("secret", "tok", 1000)
>>> read_cookie("secret", cookie)
('tok', 1000)
>>> read_cookie("other-secret", cookie) is None
True
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import and_
from sqlmodel import Session, select

from api.audit.service import record
from api.auth.models import User, UserSite
from api.auth.service import Actor
from api.console.models import ConsoleSession, UserCredential
from api.db import utcnow
from api.errors import Unprocessable

MIN_PASSWORD_LENGTH = 12
COOKIE = "plk_console"
_hasher = PasswordHasher()  # argon2id with the library's defaults (RFC 9106 second recommendation)
# Verified when the email is unknown, so an unknown account costs the same time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _mac(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def sign_cookie(secret: str, token: str, last_seen: int) -> str:
    return f"{token}.{last_seen}.{_mac(secret, f'console-session:{token}:{last_seen}')}"


def read_cookie(secret: str, value: str | None) -> tuple[str, int] | None:
    """(token, last activity as Unix seconds) of a cookie whose MAC holds, else None."""
    if not value or value.count(".") != 2:
        return None
    token, seen, mac = value.split(".")
    if not seen.isdigit() or not hmac.compare_digest(_mac(secret, f"console-session:{token}:{seen}"), mac):
        return None
    return token, int(seen)


def csrf_token(secret: str, token: str) -> str:
    """The CSRF value of every form of the session ``token``."""
    return _mac(secret, f"console-csrf:{token}")


def csrf_ok(secret: str, token: str, value: object) -> bool:
    return isinstance(value, str) and hmac.compare_digest(csrf_token(secret, token), value)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def find_user(session: Session, email: str) -> User | None:
    return session.exec(select(User).where(User.email == email.strip().lower())).first()


def set_password(session: Session, user: User, password: str, actor: Actor) -> None:
    """Set ``user``'s console password (flushes and audits, without the hash; the caller commits)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Unprocessable(
            ["body", "password"], f"a console password needs at least {MIN_PASSWORD_LENGTH} characters", "too_short"
        )
    cred = session.get(UserCredential, user.id)
    if cred is None:
        cred = UserCredential(user_id=user.id, password_hash=hash_password(password))
    else:
        cred.password_hash = hash_password(password)
        cred.updated_at = utcnow()
    session.add(cred)
    session.flush()
    record(session, actor, "set_password", "user", user.id, after={"email": user.email, "password": "set"})


def enable_totp(session: Session, user: User, actor: Actor) -> str:
    """Give ``user`` a new TOTP secret (returned once, for the authenticator app); needs a password."""
    cred = session.get(UserCredential, user.id)
    if cred is None:
        raise Unprocessable(["body", "email"], "set a console password before a second factor", "no_password")
    cred.totp_secret = pyotp.random_base32()
    cred.updated_at = utcnow()
    session.add(cred)
    session.flush()
    record(session, actor, "enable_totp", "user", user.id, after={"email": user.email, "totp": "enabled"})
    return cred.totp_secret


def provisioning_uri(secret: str, email: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name="Peerlens")


def check_sign_in(session: Session, email: str, password: str, otp: str) -> tuple[User | None, str | None]:
    """The user whose password (and code, when they have a second factor) are right, else the field at fault.

    The messages never say whether an account exists.
    """
    user = find_user(session, email) if email else None
    cred = session.get(UserCredential, user.id) if user is not None else None
    if cred is None or user is None or not user.active:
        verify_password(_DUMMY_HASH, password)
        return None, "password"
    if not verify_password(cred.password_hash, password):
        return None, "password"
    if cred.totp_secret:
        code = "".join(ch for ch in otp if ch.isdigit())
        if not code:
            return None, "otp_needed"
        if not pyotp.TOTP(cred.totp_secret).verify(code, valid_window=1):
            return None, "otp"
    if _hasher.check_needs_rehash(cred.password_hash):
        cred.password_hash = hash_password(password)
        session.add(cred)
    return user, None


def start_session(session: Session, user: User, request_id: str | None = None) -> str:
    """Store a new console session for ``user`` and return its token (flushes and audits)."""
    token = secrets.token_urlsafe(32)
    row = ConsoleSession(user_id=user.id, token_hash=_token_hash(token))
    session.add(row)
    session.flush()
    actor = Actor(user_id=user.id, role=user.role, email=user.email, request_id=request_id, source="console")
    record(session, actor, "sign_in", "console_session", row.id, after={"user_id": user.id})
    return token


def session_actor(session: Session, token: str, *, max_age_seconds: int, request_id: str | None = None) -> Actor | None:
    """The actor of a live console session (the user active, the session neither ended nor too old)."""
    rows = session.exec(
        select(User, ConsoleSession.created_at, ConsoleSession.ended_at, UserSite.site_id)
        .select_from(ConsoleSession)
        .join(User, ConsoleSession.user_id == User.id)
        .outerjoin(UserSite, and_(UserSite.user_id == User.id, User.role == "coordinator"))
        .where(ConsoleSession.token_hash == _token_hash(token))
    ).all()
    if not rows:
        return None
    user, created_at, ended_at = rows[0][0], rows[0][1], rows[0][2]
    if ended_at is not None or not user.active or (utcnow() - created_at).total_seconds() > max_age_seconds:
        return None
    sites = frozenset(r[3] for r in rows if r[3] is not None)
    return Actor(
        user_id=user.id, role=user.role, site_ids=sites, email=user.email, request_id=request_id, source="console"
    )


def end_session(session: Session, token: str, actor: Actor, now: datetime | None = None) -> None:
    """Sign out: the session's cookie no longer works anywhere (flushes and audits)."""
    row = session.exec(select(ConsoleSession).where(ConsoleSession.token_hash == _token_hash(token))).first()
    if row is None or row.ended_at is not None:
        return
    row.ended_at = now or utcnow()
    session.add(row)
    session.flush()
    record(session, actor, "sign_out", "console_session", row.id, after={"user_id": row.user_id})
