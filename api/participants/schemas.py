"""Bodies of participants, contacts, status changes, schedules and allocations.

Validation messages of contact fields name the rule only: the value is an identifier.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from api.inputguard import SingleLine
from api.studies.dates import PlausibleDate
from api.studies.schemas import Code

ParticipantStatus = Literal["active", "withdrawn", "lost_to_follow_up", "completed"]
Channel = Literal["email", "sms", "none"]
WaveState = Literal["upcoming", "open", "completed", "missed", "partial"]

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_PHONE = re.compile(r"^\+?[0-9 ()-]{6,20}$")


def _email(v: str) -> str:
    if not _EMAIL.match(v):
        raise PydanticCustomError("invalid_email", "not a valid email address")
    return v.strip()


def _phone(v: str) -> str:
    if not _PHONE.match(v):
        raise PydanticCustomError("invalid_phone", "not a valid phone number (digits, spaces, +, -, brackets)")
    return v.strip()


def _dob(v: date) -> date:
    if v > date.today() or v.year < 1900:
        raise PydanticCustomError("implausible_date", "date of birth must be after 1900 and not in the future")
    return v


Email = Annotated[str, Field(max_length=320), AfterValidator(_email)]
Phone = Annotated[str, Field(max_length=40), AfterValidator(_phone)]
BirthDate = Annotated[date, AfterValidator(_dob)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class Consent(_In):
    date: PlausibleDate
    version: str = Field(min_length=1, max_length=40)


class ContactIn(_In):
    name: SingleLine | None = Field(default=None, min_length=1, max_length=200)
    email: Email | None = None
    phone: Phone | None = None
    date_of_birth: BirthDate | None = None
    preferred_channel: Channel = "none"
    opt_out: bool = False

    @model_validator(mode="after")
    def _channel_reachable(self):
        if self.preferred_channel == "email" and not self.email:
            raise PydanticCustomError("channel_without_address", "preferred_channel email needs an email")
        if self.preferred_channel == "sms" and not self.phone:
            raise PydanticCustomError("channel_without_address", "preferred_channel sms needs a phone")
        return self


class ContactPatch(_In):
    name: SingleLine | None = Field(default=None, max_length=200)
    email: Email | None = None
    phone: Phone | None = None
    date_of_birth: BirthDate | None = None
    preferred_channel: Channel | None = None
    opt_out: bool | None = None


class ContactRead(BaseModel):
    name: str | None
    email: str | None
    phone: str | None
    date_of_birth: date | None
    preferred_channel: str
    opt_out: bool


class ParticipantCreate(_In):
    study_code: Code | None = Field(default=None, description="generated when absent")
    site: Code = Field(description="site code")
    enrolled_on: PlausibleDate = Field(description="not in the future, not before the study's plausible range")
    consent: Consent
    arm: Code | None = Field(default=None, description="arm code; absent = randomised")
    contact: ContactIn | None = None


class ParticipantPatch(_In):
    status: ParticipantStatus | None = None
    status_date: PlausibleDate | None = None
    reason: str | None = Field(default=None, max_length=2000)
    consent: Consent | None = None
    contact: ContactPatch | None = None

    @model_validator(mode="after")
    def _status_needs_date(self):
        if self.status is not None and self.status != "active" and self.status_date is None:
            raise PydanticCustomError("missing_status_date", "a status change needs status_date")
        return self


Reason = Annotated[str, Field(min_length=1, max_length=2000, description="recorded in the audit trail")]
WithdrawalKind = Literal["intervention", "follow_up", "consent"]


class Correction(_In):
    """Enrolment fields to correct; only the fields given (and different) change."""

    enrolled_on: PlausibleDate | None = None
    site: Code | None = Field(default=None, description="site code")
    consent_date: PlausibleDate | None = None
    consent_version: str | None = Field(default=None, min_length=1, max_length=40)
    reason: Reason


class VoidIn(_In):
    reason: Reason


class ReasonIn(_In):
    """Taking back a withdrawal or a void recorded in error: the reason, for the audit trail."""

    reason: Reason


class WithdrawalIn(_In):
    kind: WithdrawalKind = Field(
        description="intervention: stopped the intervention, follow-up continues; follow_up: no further data "
        "collection, data so far are used; consent: consent withdrawn for use of the data collected"
    )
    date: PlausibleDate
    reason: Reason


class WithdrawalRead(BaseModel):
    kind: WithdrawalKind
    date: date | None
    reason: str | None


DATES_DOC = (
    "how dates are shown: calendar (staff); for analysts the study's export date_mode — relative "
    "(no calendar date: null) or shift (every date of the participant moved back by the same secret days)"
)


class ConsentRead(BaseModel):
    date: date | None
    version: str


class ParticipantRead(BaseModel):
    id: int
    study_id: int
    study_code: str
    site: str
    site_id: int
    arm: str | None
    arm_id: int | None
    randomised: bool
    enrolled_on: date | None
    consent: ConsentRead
    status: str
    status_date: date | None
    status_reason: str | None
    withdrawals: list[WithdrawalRead] = Field(default_factory=list, description="each kind recorded, in kind order")
    voided: bool = Field(False, description="entered in error: left out of exports, analyses, reminders and flow")
    void_reason: str | None = None
    created_at: datetime | None
    updated_at: datetime | None
    dates: Literal["calendar", "relative", "shift"] = Field("calendar", description=DATES_DOC)
    contact: ContactRead | None = Field(default=None, description="admins and the site's coordinators only")


class InstrumentState(BaseModel):
    instrument: str
    state: Literal["completed", "partial", "pending"] = Field(
        description="partial: a response below the instrument's minimum for scoring (resumable)"
    )
    response_id: int | None = None
    out_of_window: bool | None = None
    collected_by: Literal["participant", "staff"] = Field(
        "participant",
        description="staff: not on the participant form (the wave's staff_instruments, or licensed wording "
        "not loaded) — a coordinator task while pending, never in reminders",
    )


class WaveStatus(BaseModel):
    """One wave of a participant's schedule, with dates in the study's time zone."""

    wave: str
    offset_days: int
    due_on: date | None
    window_opens_on: date | None
    window_closes_on: date | None
    opens_at: datetime | None = Field(description="start of window_opens_on in the study time zone, as UTC")
    closes_at: datetime | None = Field(description="end of window_closes_on in the study time zone, as UTC")
    state: WaveState
    instruments: list[InstrumentState]
    dates: Literal["calendar", "relative", "shift"] = Field("calendar", description=DATES_DOC)


class AllocationRead(BaseModel):
    sequence: int
    block: int
    block_size: int
    site: str
    arm: str
    participant_id: int
    study_code: str
    allocated_at: datetime


class AllocationReport(BaseModel):
    study_id: int
    randomisation_seed: str
    method: str
    allocations: list[AllocationRead]


class Counted(BaseModel):
    n: int
    reasons: dict[str, int] = Field(description="reason text -> participants, most frequent first")


class FlowWave(BaseModel):
    """One wave of one arm; the six buckets add up to the arm's ``allocated``."""

    wave: str
    offset_days: int
    responded: int = Field(description="data usable at this wave")
    data_withdrawn: Counted = Field(description="consent for use of data withdrawn (any date)")
    withdrew: Counted = Field(description="follow-up stopped on or before the wave's day, no data")
    lost_to_follow_up: Counted = Field(description="declared lost on or before the wave's day, no data")
    missed: int = Field(description="window closed without data")
    not_yet_due: int


class FlowAnalysed(BaseModel):
    n: int = Field(description="data at one wave or more and consent for use kept")
    excluded: Counted


class FlowArm(BaseModel):
    arm: str | None = Field(
        description="arm code (a neutral letter for a blinded reader); null = enrolled without allocation"
    )
    allocated: int
    discontinued_intervention: Counted | None = Field(
        description="null for a blinded reader: a control arm has no intervention to stop, so the count names it"
    )
    waves: list[FlowWave]
    analysed: FlowAnalysed


class ParticipantFlow(BaseModel):
    """Participant flow for a CONSORT diagram (computed by ``analysis.flow.participant_flow``)."""

    study_id: int
    as_of: date = Field(description="the study-time-zone date windows were judged on")
    enrolled: int = Field(description="every participant record, voided ones included")
    voided: int = Field(description="entered in error: in no arm and no count below")
    blinded: bool = Field(False, description="arms read as the study's neutral letters (analysts until unblinding)")
    arms: list[FlowArm]
