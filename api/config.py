"""Service settings, read from the environment (and an optional ``.env`` file).

Examples
--------
>>> from api.config import Settings
>>> Settings(database_url="sqlite:///./x.db").max_body_bytes > 0
True
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Shortest secret key accepted in production (48 random bytes make 64 URL-safe characters).
MIN_PRODUCTION_KEY = 32


def home_dir() -> Path:
    """Where the default SQLite database and the development secret live.

    In a source checkout (``alembic.ini`` beside ``api/``, as ``make run`` uses it) that is the
    checkout itself, whatever the current directory, so a command run from elsewhere opens the
    same ``peerlens.db`` instead of creating an empty one. An installed package uses
    ``$PEERLENS_HOME``, else ``$XDG_DATA_HOME/peerlens`` (``~/.local/share/peerlens``).
    """
    if os.environ.get("PEERLENS_HOME"):
        return Path(os.environ["PEERLENS_HOME"]).expanduser()
    root = Path(__file__).resolve().parents[1]
    if (root / "alembic.ini").is_file() and (root / "migrations").is_dir():
        return root
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "peerlens"


def default_database_url() -> str:
    """``sqlite:///<home_dir()>/peerlens.db``: the database used when ``DATABASE_URL`` is unset."""
    return f"sqlite:///{home_dir() / 'peerlens.db'}"


def _dev_secret_key() -> str:
    """A development secret generated once and kept in ``.peerlens-secrets`` (mode 0600).

    Production sets ``PEERLENS_SECRET_KEY`` (and refuses to start without it); this keeps signed
    links stable across restarts on a developer machine without anyone having to invent a key.
    """
    path = Path(os.environ.get("PEERLENS_SECRETS_FILE") or home_dir() / ".peerlens-secrets")
    try:
        for line in path.read_text().splitlines():
            if line.startswith("PEERLENS_SECRET_KEY="):
                return line.split("=", 1)[1].strip()
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(48)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as fh:
            fh.write(f"PEERLENS_SECRET_KEY={key}\n")
    except OSError:
        pass  # read-only checkout: the key lives for this process only
    return key


class Settings(BaseSettings):
    """Configuration of the data-capture service.

    Every field reads the environment variable of the same name (upper case); the ``PEERLENS_``
    ones carry the prefix in their alias.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str = Field(default_factory=default_database_url, alias="DATABASE_URL")
    # PostgreSQL in production: the owner of the tables, used by `peerlens migrate` only; the service
    # (DATABASE_URL) then runs as a role that cannot alter or disable the audit trail.
    migration_database_url: str | None = Field(None, alias="PEERLENS_MIGRATION_DATABASE_URL")
    # Empty means "not set": development generates one (see _dev_secret_key), production refuses.
    secret_key: str = Field("", alias="PEERLENS_SECRET_KEY")
    # Key of the audit trail's MACs and chain (api/audit/chain.py); derived from the secret key when
    # unset. Set it on its own so that rotating PEERLENS_SECRET_KEY leaves old audit rows verifiable.
    audit_key: SecretStr | None = Field(None, alias="PEERLENS_AUDIT_KEY")
    # Seconds between sealing rounds of the audit chain in `peerlens serve` (0: leave it to the worker).
    audit_seal_seconds: float = Field(60.0, alias="PEERLENS_AUDIT_SEAL_SECONDS", ge=0)
    max_body_bytes: int = Field(1_000_000, alias="PEERLENS_MAX_BODY_BYTES", ge=1024)
    base_url: str = Field("http://127.0.0.1:8000", alias="PEERLENS_BASE_URL")
    env: str = Field("dev", alias="PEERLENS_ENV")
    db_pool_size: int = Field(20, alias="PEERLENS_DB_POOL_SIZE", ge=1)
    db_max_overflow: int = Field(20, alias="PEERLENS_DB_MAX_OVERFLOW", ge=0)
    # Seconds a SQLite writer waits for the lock before giving up.
    sqlite_busy_timeout: float = Field(30.0, alias="PEERLENS_SQLITE_BUSY_TIMEOUT")
    # Reminders: outgoing mail relay and the dispatcher's lease and retry policy.
    smtp_host: str = Field("127.0.0.1", alias="PEERLENS_SMTP_HOST")
    smtp_port: int = Field(25, alias="PEERLENS_SMTP_PORT", ge=1, le=65535)
    smtp_starttls: bool = Field(False, alias="PEERLENS_SMTP_STARTTLS")
    smtp_username: str | None = Field(None, alias="PEERLENS_SMTP_USERNAME")
    smtp_password: SecretStr | None = Field(None, alias="PEERLENS_SMTP_PASSWORD")
    smtp_from: str = Field("Peerlens <no-reply@localhost>", alias="PEERLENS_SMTP_FROM")
    smtp_timeout: float = Field(30.0, alias="PEERLENS_SMTP_TIMEOUT", gt=0)
    smtp_ca_file: str | None = Field(None, alias="PEERLENS_SMTP_CA_FILE")
    reminder_lease_seconds: int = Field(300, alias="PEERLENS_REMINDER_LEASE_SECONDS", ge=1)
    reminder_max_attempts: int = Field(5, alias="PEERLENS_REMINDER_MAX_ATTEMPTS", ge=1)
    reminder_backoff_seconds: float = Field(60.0, alias="PEERLENS_REMINDER_BACKOFF_SECONDS", gt=0)
    # Personal links: days a link stays usable after its wave window closes; failed token or link
    # attempts from one client address per window, after which that address gets 429.
    link_grace_days: int = Field(3, alias="PEERLENS_LINK_GRACE_DAYS", ge=0, le=365)
    fail_limit: int = Field(20, alias="PEERLENS_FAIL_LIMIT", ge=1)
    fail_window_seconds: float = Field(60.0, alias="PEERLENS_FAIL_WINDOW_SECONDS", gt=0)
    # Staff console: sign-out after this many idle minutes, sessions end after this many hours
    # whatever the activity, and failed sign-ins per account and client address per window.
    console_idle_minutes: int = Field(30, alias="PEERLENS_CONSOLE_IDLE_MINUTES", ge=1, le=24 * 60)
    console_max_hours: int = Field(12, alias="PEERLENS_CONSOLE_MAX_HOURS", ge=1, le=24 * 7)
    console_signin_limit: int = Field(5, alias="PEERLENS_CONSOLE_SIGNIN_LIMIT", ge=1)
    console_signin_window_seconds: float = Field(900.0, alias="PEERLENS_CONSOLE_SIGNIN_WINDOW_SECONDS", gt=0)
    # Networks a study's SMS webhook may point into besides the public internet (comma-separated
    # CIDRs, e.g. "10.20.0.0/16" for an in-house gateway); by default only public addresses.
    webhook_allowed_networks: str = Field("", alias="PEERLENS_WEBHOOK_ALLOWED_NETWORKS")
    # Plausible dates (api/studies/dates.py): how many days before a study's start a date it receives
    # may lie, and how many minutes ahead of the server clock a timestamp may be.
    dates_before_start_days: int = Field(1826, alias="PEERLENS_DATES_BEFORE_START_DAYS", ge=0, le=36_500)
    dates_future_minutes: int = Field(5, alias="PEERLENS_DATES_FUTURE_MINUTES", ge=0, le=1440)
    # Transcripts: the spaCy pipeline for statistical NER in de-identification ("auto" = an installed
    # en_core_web_* if any, "none" = rule-based only, or a package name / directory).
    spacy_model: str = Field("auto", alias="PEERLENS_SPACY_MODEL")

    # Where generated files (analysis and joint-display plots) are written; the layout below it is
    # api.artifacts'.
    artifact_dir: str = Field("./artifacts", alias="PEERLENS_ARTIFACT_DIR")
    # The largest cohort a synchronous analysis run accepts (random slopes on 10,000 participants
    # take ~25 s).
    analysis_max_participants: int = Field(20_000, alias="PEERLENS_ANALYSIS_MAX_PARTICIPANTS", ge=1)

    @model_validator(mode="after")
    def _secret_key_source(self):
        if self.secret_key.strip():
            if self.env == "production" and len(self.secret_key.strip()) < MIN_PRODUCTION_KEY:
                raise ValueError(
                    f"PEERLENS_SECRET_KEY must be at least {MIN_PRODUCTION_KEY} characters in production "
                    '(e.g. python -c "import secrets; print(secrets.token_urlsafe(48))")'
                )
            return self
        if self.env == "production":
            # Each process of a read-only deployment would otherwise invent its own key, and links
            # signed by one worker would not open on another.
            raise ValueError(
                "PEERLENS_ENV=production needs an explicit PEERLENS_SECRET_KEY (at least "
                f"{MIN_PRODUCTION_KEY} characters); refusing to start with a generated one"
            )
        self.secret_key = _dev_secret_key()
        return self

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, v: str) -> str:
        from api.netguard import networks

        try:
            networks(v)
        except ValueError as exc:
            raise ValueError(f"PEERLENS_WEBHOOK_ALLOWED_NETWORKS: {exc}") from None
        return v

    @field_validator("smtp_from")
    @classmethod
    def _one_line_sender(cls, v: str) -> str:
        if "\r" in v or "\n" in v:
            raise ValueError("PEERLENS_SMTP_FROM may not contain a line break (it is a mail header)")
        return v

    @field_validator("database_url", "migration_database_url")
    @classmethod
    def _normalise_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        # Hosted PostgreSQL often hands out postgres:// URLs; psycopg 3 is the driver installed.
        for prefix in ("postgres://", "postgresql://"):
            if v.startswith(prefix):
                return "postgresql+psycopg://" + v[len(prefix) :]
        return v


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (cached)."""
    return Settings()
