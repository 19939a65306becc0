"""Bodies of response submission and reading, and of the instrument catalogue."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from api.studies.dates import PlausibleAwareMoment

Answer = int | float | str | list[int | float] | None


class ResponseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wave: str = Field(min_length=1, max_length=40)
    instrument: str = Field(min_length=1, max_length=40)
    answers: dict[str, Answer] = Field(max_length=500, description="item code → option code, number, text or null")
    external_scores: dict[str, float | None] | None = Field(
        default=None, description='scores computed elsewhere, e.g. {"pam13_activation": 58.2}'
    )
    completed_at: PlausibleAwareMoment | None = Field(
        default=None,
        description="with a UTC offset; default now. Not in the future, not before consent or enrolment "
        "(unless the wave's window opens earlier), not before the study's plausible range",
    )
    amend: bool = False
    reason: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _amend_needs_reason(self):
        if self.amend and not (self.reason and self.reason.strip()):
            raise PydanticCustomError("reason_required", "an amendment needs a reason")
        return self


class ScoreRead(BaseModel):
    scale: str
    value: float | None
    band: str | None
    level: int | None
    items_answered: int
    items_expected: int
    prorated: bool
    missing_reason: str | None
    flags: list[str]


class SafetyAlertRef(BaseModel):
    id: int
    rule: str
    status: str


class ResponseRead(BaseModel):
    id: int
    participant_id: int
    wave: str
    instrument: str
    instrument_version: str
    answers: dict[str, Any]
    external_scores: dict[str, Any] | None
    completed_at: datetime | None = Field(description="null for analysts when the study's date_mode is relative")
    days: int | None = Field(None, description="days from enrolment to completion (study-local calendar dates)")
    mode: str
    entered_by: int | None
    out_of_window: bool
    version: int
    status: str
    created_at: datetime | None
    updated_at: datetime | None
    dates: Literal["calendar", "relative", "shift"] = Field(
        "calendar", description="calendar (staff); relative or shift (analysts, as in the exports)"
    )
    scores: list[ScoreRead]
    alerts: list[SafetyAlertRef] | None = Field(
        default=None, description="on submission only: the safety alerts this response raised (GET /alerts/{id})"
    )


class OptionRead(BaseModel):
    code: int | float
    label: str
    missing: bool


class ItemRead(BaseModel):
    code: str
    text: str | None
    kind: str
    options: list[OptionRead]
    reverse: bool
    scored: bool
    min: float | None
    max: float | None


class ScaleRead(BaseModel):
    code: str
    label: str
    items: list[str]
    method: str
    min_items: int
    range: tuple[float, float]
    external: bool


class InstrumentSummary(BaseModel):
    code: str
    name: str
    version: str
    items: int
    wording_shipped: bool


class InstrumentRead(BaseModel):
    code: str
    name: str
    version: str
    wording_shipped: bool
    licence: str | None
    items: list[ItemRead]
    scales: list[ScaleRead]
