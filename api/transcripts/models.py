"""Tables of the qualitative layer.

``transcript`` holds the de-identified text every offset refers to; the original text and the list
of replaced identifiers live apart in ``transcript_original`` (the identifier vault of
transcripts), which only admins can read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Integer, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from api.db import UTCDateTime, utcnow

KINDS = ("interview", "focus_group")
FORMATS = ("text", "markdown", "vtt", "srt", "docx", "refi")
MEMO_TARGETS = ("code", "transcript", "segment", "project")
SUGGESTION_STATUSES = ("pending", "accepted", "rejected")


class Transcript(SQLModel, table=True):
    """An interview or focus group, de-identified.

    ``participant_ids``/``participant_codes`` list every participant speaking (one for an
    interview); ``site_id`` is their common site (``None`` when they come from several sites or
    from an imported project, which then only admins and analysts see). ``turns`` are
    ``{speaker, start, end, start_time, end_time, role}`` with offsets into ``text``.
    """

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int | None = Field(default=None, foreign_key="site.id")
    wave_id: int | None = Field(default=None, foreign_key="wave.id")
    participant_id: int | None = Field(default=None, foreign_key="participant.id", index=True)
    participant_ids: list[int] = Field(default_factory=list, sa_type=JSON)
    participant_codes: list[str] = Field(default_factory=list, sa_type=JSON)
    kind: str = Field(default="interview", max_length=20)
    source_format: str = Field(max_length=10)
    title: str = Field(default="", max_length=200)
    text: str = Field(sa_type=Text)
    turns: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    ner: str = Field(default="off", max_length=3)
    ner_model: str | None = Field(default=None, max_length=200)
    replacement_counts: dict[str, int] = Field(default_factory=dict, sa_type=JSON)
    created_by: int | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TranscriptOriginal(SQLModel, table=True):
    """The identifier vault of a transcript: original text, file name and every replacement."""

    __tablename__ = "transcript_original"

    transcript_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("transcript.id", ondelete="CASCADE"), primary_key=True)
    )
    filename: str | None = Field(default=None, max_length=300)
    text: str = Field(sa_type=Text)
    replacements: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class QualCode(SQLModel, table=True):
    """One code of a study's codebook (``key`` is the code's id in REFI-QDA and ``code:<key>`` columns)."""

    __tablename__ = "code"
    __table_args__ = (UniqueConstraint("study_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    key: str = Field(max_length=80)
    name: str = Field(max_length=200)
    parent_id: int | None = Field(default=None, foreign_key="code.id")
    description: str = Field(default="", sa_type=Text)
    inclusion: str = Field(default="", sa_type=Text)
    exclusion: str = Field(default="", sa_type=Text)
    example: str = Field(default="", sa_type=Text)
    color: str = Field(default="#888888", max_length=7)
    keywords: list[str] = Field(default_factory=list, sa_type=JSON)
    patterns: list[Any] = Field(default_factory=list, sa_type=JSON)
    codable: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CodeHistory(SQLModel, table=True):
    """Append-only edit history of the codebook (kept after a code is removed, hence no foreign key)."""

    __tablename__ = "code_history"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    code_id: int
    code_key: str = Field(max_length=80)
    action: str = Field(max_length=10)  # add, update, move, remove
    changes: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    by: str | None = Field(default=None, max_length=320)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class QualCoding(SQLModel, table=True):
    """A coded span ``[start, end)`` of a transcript's de-identified text, by one coder."""

    __tablename__ = "coding"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    transcript_id: int = Field(foreign_key="transcript.id", index=True)
    code_id: int = Field(foreign_key="code.id", index=True)
    start: int
    end: int
    coder: str = Field(max_length=320)
    coder_id: int | None = Field(default=None)
    memo: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class QualMemo(SQLModel, table=True):
    """A memo on a code, a transcript, a segment (transcript + span) or the project."""

    __tablename__ = "memo"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    target: str = Field(max_length=12)
    target_id: int | None = None
    start: int | None = None
    end: int | None = None
    title: str = Field(default="", max_length=200)
    text: str = Field(sa_type=Text)
    author: str | None = Field(default=None, max_length=320)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Suggestion(SQLModel, table=True):
    """An auto-coding suggestion; a rejected one keeps its row so it is never proposed again."""

    __table_args__ = (UniqueConstraint("transcript_id", "code_id", "start", "end"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    transcript_id: int = Field(foreign_key="transcript.id", index=True)
    code_id: int = Field(foreign_key="code.id")
    start: int
    end: int
    text: str = Field(sa_type=Text)
    rule: str = Field(max_length=10)
    status: str = Field(default="pending", max_length=10)
    decided_by: str | None = Field(default=None, max_length=320)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    coding_id: int | None = Field(default=None, foreign_key="coding.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


META_INFERENCES = ("confirmation", "expansion", "discordance", "silence")


class MetaInference(SQLModel, table=True):
    """What the qualitative and quantitative strands say together about one joint-display row
    (theme × scale): confirmation, expansion, discordance or silence (Fetters, Curry & Creswell),
    with the team's reasoning."""

    __tablename__ = "meta_inference"
    __table_args__ = (UniqueConstraint("study_id", "theme", "scale"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    theme: str = Field(max_length=80)
    scale: str = Field(max_length=60)
    inference: str = Field(max_length=20)
    note: str = Field(default="", sa_type=Text)
    author: str | None = Field(default=None, max_length=320)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
