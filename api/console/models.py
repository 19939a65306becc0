"""Console credentials and sign-in sessions.

Passwords are kept as argon2id hashes; a TOTP secret (optional second factor) sits beside it.
A console session is stored as the SHA-256 of its cookie token, so a leaked table signs no one in;
signing out (or an admin deactivating the user) ends it at once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from api.db import UTCDateTime, utcnow


class UserCredential(SQLModel, table=True):
    """The console password (argon2id hash) and optional TOTP secret of a user."""

    __tablename__ = "user_credential"

    user_id: int = Field(foreign_key="app_user.id", primary_key=True, ondelete="CASCADE")
    password_hash: str = Field(max_length=200)
    totp_secret: str | None = Field(default=None, max_length=64)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ConsoleSession(SQLModel, table=True):
    """One signed-in browser: the token's hash, who, since when, and when it ended."""

    __tablename__ = "console_session"
    __table_args__ = (UniqueConstraint("token_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", index=True, ondelete="CASCADE")
    token_hash: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
