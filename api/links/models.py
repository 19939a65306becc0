"""The personal form link of a participant for one wave."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from api.db import UTCDateTime, utcnow


class ParticipantLink(SQLModel, table=True):
    """A link ``/f/{token}``; the database keeps the SHA-256 of the token only.

    The token is an HMAC of ``nonce`` under the server's secret key, so the service can show the
    same live link again (to a coordinator, in every reminder) without storing it: a copy of the
    database alone still opens no form.

    At most one link per participant and wave is live: issuing another revokes it. The link
    works from the wave window's opening to its close plus the grace period (``expires_at``
    records that moment as computed at issue time).
    """

    __tablename__ = "participant_link"
    __table_args__ = (
        UniqueConstraint("token_hash"),
        Index("ix_participant_link_participant_wave", "participant_id", "wave_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id")
    participant_id: int = Field(foreign_key="participant.id", ondelete="CASCADE")
    wave_id: int = Field(foreign_key="wave.id")
    token_hash: str = Field(max_length=64)
    nonce: str | None = Field(default=None, max_length=43)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: int | None = Field(default=None, foreign_key="app_user.id")
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class FormDraft(SQLModel, table=True):
    """Answers given on a participant-form page that is not yet sent: saved as each answer is given
    (or with "Save my answers for later"), shown again when the participant comes back, deleted
    when the page is saved as a response."""

    __tablename__ = "form_draft"

    participant_id: int = Field(foreign_key="participant.id", primary_key=True, ondelete="CASCADE")
    wave_id: int = Field(foreign_key="wave.id", primary_key=True, ondelete="CASCADE")
    instrument: str = Field(max_length=40, primary_key=True)
    answers: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
