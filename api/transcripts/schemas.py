"""Request and response bodies of the qualitative routes."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_HEX = re.compile(r"^#[0-9A-Fa-f]{6}$")
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}$")


class TurnRead(BaseModel):
    speaker: str
    start: int
    end: int
    start_time: float | None = None
    end_time: float | None = None
    role: str = "participant"


class TranscriptSummary(BaseModel):
    id: int
    study_id: int
    kind: str
    source_format: str
    title: str
    participants: list[str] = Field(description="study codes of the participants speaking")
    wave: str | None
    length: int = Field(description="characters of the de-identified text")
    n_turns: int
    ner: Literal["on", "off"]
    created_at: datetime | None = Field(description="upload time; null for analysts (it dates the interview)")


class TranscriptRead(TranscriptSummary):
    text: str = Field(description="de-identified text; every coding offset refers to it")
    turns: list[TurnRead]


class UploadReport(TranscriptRead):
    ner_model: str | None = None
    replacements: dict[str, int] = Field(description="identifiers replaced, counted by type")
    warnings: list[str] = []


class ReplacementRead(BaseModel):
    start: int
    end: int
    original: str
    placeholder: str
    type: str
    source: str
    new_start: int
    new_end: int


class TranscriptOriginalRead(BaseModel):
    transcript_id: int
    filename: str | None
    text: str
    replacements: list[ReplacementRead]


class _CodeFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(None, max_length=20_000)
    inclusion: str | None = Field(None, max_length=20_000)
    exclusion: str | None = Field(None, max_length=20_000)
    example: str | None = Field(None, max_length=20_000)
    color: str | None = Field(None, description="#RRGGBB")
    keywords: list[str] | None = Field(None, max_length=500)
    patterns: list[list[dict[str, Any]]] | None = Field(
        None,
        max_length=200,
        description='spaCy Matcher token patterns, e.g. [[{"LEMMA": "miss"}, {"LOWER": "people"}]]',
    )
    codable: bool | None = None

    @field_validator("color")
    @classmethod
    def _color(cls, v):
        if v is not None and not _HEX.match(v):
            raise ValueError("color must be #RRGGBB")
        return v

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, v):
        if v is None:
            return v
        out = [k.strip() for k in v]
        if any(not k or len(k) > 200 for k in out):
            raise ValueError("keywords must be non-empty strings of at most 200 characters")
        return out

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, v):
        if v is not None and any(not p for p in v):
            raise ValueError("a token pattern needs at least one token")
        return v


class CodeCreate(_CodeFields):
    name: str = Field(min_length=1, max_length=200)
    key: str | None = Field(None, description="stable id (default: slug of the name)")
    parent_id: int | None = Field(None, ge=1, le=2**31 - 1)

    @field_validator("key")
    @classmethod
    def _key(cls, v):
        if v is not None and not _KEY.match(v):
            raise ValueError("key must be 1-80 letters, digits, '_', '-' or '.', starting with a letter or digit")
        return v


class CodePatch(_CodeFields):
    name: str | None = Field(None, min_length=1, max_length=200)
    parent_id: int | None = Field(None, ge=1, le=2**31 - 1, description="null makes the code top-level")


class CodeRead(BaseModel):
    id: int
    study_id: int
    key: str
    name: str
    parent_id: int | None
    path: str
    description: str
    inclusion: str
    exclusion: str
    example: str
    color: str
    keywords: list[str]
    patterns: list[Any]
    codable: bool
    created_at: datetime
    updated_at: datetime


class CodeHistoryRead(BaseModel):
    id: int
    code_id: int
    code_key: str
    action: str
    changes: dict[str, Any]
    by: str | None
    at: datetime


class CodingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code_id: int = Field(ge=1, le=2**31 - 1)
    start: int = Field(ge=0, le=2**31 - 1)
    end: int = Field(ge=1, le=2**31 - 1)
    memo: str | None = Field(None, max_length=20_000)

    @model_validator(mode="after")
    def _span(self):
        if self.end <= self.start:
            raise ValueError("end must be greater than start")
        return self


class CodingRead(BaseModel):
    id: int
    transcript_id: int
    code_id: int
    code_key: str
    start: int
    end: int
    coder: str
    memo: str | None
    text: str
    created_at: datetime


class MemoCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: Literal["code", "transcript", "segment", "project"]
    target_id: int | None = Field(None, ge=1, le=2**31 - 1, description="code or transcript id")
    start: int | None = Field(None, ge=0, le=2**31 - 1)
    end: int | None = Field(None, ge=1, le=2**31 - 1)
    title: str = Field("", max_length=200)
    text: str = Field(min_length=1, max_length=50_000)

    @model_validator(mode="after")
    def _shape(self):
        if self.target == "project":
            if self.target_id is not None:
                raise ValueError("a project memo takes no target_id")
        elif self.target_id is None:
            raise ValueError(f"a {self.target} memo needs target_id")
        if self.target == "segment":
            if self.start is None or self.end is None or self.end <= self.start:
                raise ValueError("a segment memo needs start < end")
        elif self.start is not None or self.end is not None:
            raise ValueError("start and end belong to segment memos only")
        return self


class MemoRead(BaseModel):
    id: int
    target: str
    target_id: int | None
    start: int | None
    end: int | None
    title: str
    text: str
    author: str | None
    created_at: datetime


class SuggestionRead(BaseModel):
    id: int
    transcript_id: int
    code_id: int
    code_key: str
    start: int
    end: int
    text: str
    rule: str
    status: str
    decided_by: str | None
    coding_id: int | None


class JointDisplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    themes: list[str] = Field(min_length=1, max_length=50, description="code keys (or numeric code ids)")
    scales: list[str] | None = Field(None, max_length=50, description="outcome scales (default: all)")
    baseline: str | None = Field(None, max_length=40, description="baseline wave code (default: first observation)")
    followup: str | None = Field(None, max_length=40, description="follow-up wave code (default: last observation)")
    arm: str | None = Field(None, max_length=40)
    quotes: int = Field(2, ge=0, le=10)
    plot_format: Literal["png", "svg"] = "svg"


class JointDisplayRow(BaseModel):
    theme: str
    theme_name: str
    scale: str
    n_with: int
    n_without: int
    mean_change_with: float | None
    sd_change_with: float | None
    mean_change_without: float | None
    sd_change_without: float | None
    hedges_g: float | None
    ci_low: float | None
    ci_high: float | None
    quotes: list[str]
    p: float | None = Field(None, description="Welch's t-test of the change with vs without the theme")
    p_bh: float | None = Field(None, description="Benjamini-Hochberg adjusted across every row of this table")
    warning: str = ""
    meta_inference: str | None = Field(None, description="confirmation, expansion, discordance or silence")
    meta_note: str | None = None


class MetaInferenceWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    theme: str = Field(min_length=1, max_length=80, description="code key")
    scale: str = Field(min_length=1, max_length=60, description="outcome scale of the joint-display row")
    inference: Literal["confirmation", "expansion", "discordance", "silence"]
    note: str = Field("", max_length=5000, description="the reasoning behind the inference")


class JointDisplayRead(BaseModel):
    baseline: str | None
    followup: str | None
    rows: list[JointDisplayRow]
    plot_url: str | None = Field(None, description="the plot written by the POST route (a GET writes nothing)")


class ImportReport(BaseModel):
    format: Literal["qdc", "qdpx", "taguette", "codebook_csv"]
    codes_created: int
    codes_existing: int
    codes_renamed: int = Field(0, description="clashing codes created under a new key (on_conflict=rename)")
    codes_skipped: int = Field(0, description="clashing codes left out (on_conflict=skip)")
    codings_skipped: int = Field(0, description="codings of skipped codes")
    conflicts: list[dict] = Field(
        default_factory=list, description="codes whose key exists with another name, codability or parent"
    )
    on_conflict: Literal["merge", "rename", "skip"] | None = None
    transcripts: int
    codings: int
    memos: int
    replacements: int = Field(0, description="identifiers removed from imported sources")
    unmatched_participants: int = Field(0, description="participant labels of imported sources not found in this study")
