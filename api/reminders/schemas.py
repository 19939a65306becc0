"""Bodies of reminder plans and the reminder outbox.

Template and URL problems are reported against the field (``["body", "plans", 0, "body"]``)
with the rule that failed.
"""

from __future__ import annotations

from datetime import date, datetime
from itertools import pairwise
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from api.inputguard import SingleLine
from api.reminders import templates
from api.reminders.timing import parse_hhmm
from api.studies.schemas import Code

ReminderStatus = Literal["pending", "sending", "sent", "failed", "cancelled"]
PlanChannel = Literal["preferred", "email", "sms"]


def _template(v: str) -> str:
    found = templates.problems(v)
    if found:
        raise PydanticCustomError("template", "{problem}", {"problem": found[0]})
    return v


def _url(v: str) -> str:
    u = urlparse(v)
    if u.scheme not in ("http", "https") or not u.netloc:
        raise PydanticCustomError("url", "must be an absolute http(s) URL")
    return v


def _hhmm(v: str) -> str:
    try:
        parse_hhmm(v)
    except ValueError as exc:
        raise PydanticCustomError("time_format", str(exc)) from None
    return v


Template = Annotated[str, AfterValidator(_template)]
# The subject becomes a mail header: a line break in it would start a header of its own.
SubjectTemplate = Annotated[SingleLine, AfterValidator(_template)]
Url = Annotated[str, Field(max_length=500), AfterValidator(_url)]
HHMM = Annotated[str, AfterValidator(_hhmm)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Step(_In):
    """When a reminder goes: days (and hours) after local midnight of the day the window opens."""

    offset_days: int = Field(ge=0, le=3660)
    offset_hours: int = Field(default=0, ge=0, le=23)


class QuietHours(_In):
    """Local times (study time zone) during which nothing is sent; ``start > end`` spans midnight."""

    start: HHMM
    end: HHMM


class PlanIn(_In):
    wave: Code
    channel: PlanChannel = "preferred"
    steps: list[Step] = Field(min_length=1, max_length=10)
    subject: SubjectTemplate = Field(min_length=1, max_length=200)
    body: Template = Field(min_length=1, max_length=4000)
    sms_body: Template | None = Field(default=None, min_length=1, max_length=480)
    form_url: Url | None = None

    @field_validator("steps")
    @classmethod
    def _increasing(cls, v: list[Step]) -> list[Step]:
        minutes = [s.offset_days * 1440 + s.offset_hours * 60 for s in v]
        if any(b <= a for a, b in pairwise(minutes)):
            raise PydanticCustomError("steps_order", "steps must be in strictly increasing time order")
        return v


class PlansIn(_In):
    """The whole reminder configuration of a study (``PUT`` replaces it)."""

    quiet_hours: QuietHours | None = None
    sms_webhook_url: Url | None = None
    plans: list[PlanIn] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _one_plan_per_wave(self):
        seen = set()
        for plan in self.plans:
            if plan.wave in seen:
                raise PydanticCustomError("duplicate_wave", "each wave may have one plan only")
            seen.add(plan.wave)
        return self


class PlanRead(BaseModel):
    wave: str
    channel: str
    steps: list[Step]
    subject: str
    body: str
    sms_body: str | None
    form_url: str | None
    updated_at: datetime


class PlansRead(BaseModel):
    study_id: int
    paused: bool
    quiet_hours: QuietHours | None
    sms_webhook_url: str | None
    links_service: bool = Field(
        description="always true: {link} is the participant's personal link; form_url stands in when "
        "none can be issued (the web form can offer none of the wave's instruments, or they are complete)"
    )
    plans: list[PlanRead]


class ReminderRead(BaseModel):
    """An outbox row as coordinators see it: no address, no name, no message body."""

    id: int
    study_id: int
    participant_id: int
    study_code: str
    site: str
    wave: str
    step: int
    channel: str
    due_at: datetime
    window_closes_at: datetime
    status: ReminderStatus
    attempts: int
    retry_at: datetime | None
    last_error: str | None
    cancel_reason: str | None
    message_id: str | None
    sent_at: datetime | None
    updated_at: datetime


class PauseRead(BaseModel):
    study_id: int
    paused: bool


class TaskRead(BaseModel):
    """A staff-administered instrument still to collect (calendar dates: staff only)."""

    participant_id: int
    study_code: str
    site: str
    wave: str
    instrument: str
    reason: str = Field(description="why the participant form cannot collect it")
    due_on: date
    window_opens_on: date
    window_closes_on: date
    state: Literal["open", "closed"]
