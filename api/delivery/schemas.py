"""Bodies and read models of the delivery domain (process evaluation)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.delivery.models import (
    ADHERENCE_KINDS,
    ATTENDANCE,
    CONTACT_KINDS,
    MODES,
    PRIOR_ROLES,
    SUPPORTER_STATUSES,
    TRAINING_FORMATS,
    TRAINING_KINDS,
)
from api.inputguard import SingleLine
from api.participants.schemas import Email
from api.studies.dates import PlausibleDate

PriorRole = Literal[PRIOR_ROLES]  # type: ignore[valid-type]
SupporterStatus = Literal[SUPPORTER_STATUSES]  # type: ignore[valid-type]
TrainingFormat = Literal[TRAINING_FORMATS]  # type: ignore[valid-type]
TrainingKind = Literal[TRAINING_KINDS]  # type: ignore[valid-type]
Mode = Literal[MODES]  # type: ignore[valid-type]
AttendanceStatus = Literal[ATTENDANCE]  # type: ignore[valid-type]
ContactKind = Literal[CONTACT_KINDS]  # type: ignore[valid-type]
AdherenceKind = Literal[ADHERENCE_KINDS]  # type: ignore[valid-type]
Code = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
Minutes = Field(ge=0, le=24 * 60)
Id = Field(ge=1, le=2**31 - 1)

#: The TIDieR checklist (Hoffmann et al. 2014, BMJ 348:g1687). Items 10 and 12 are generated.
TIDIER_ITEMS: dict[str, str] = {
    "1_name": "Brief name",
    "2_why": "Why: rationale, theory or goal of the essential elements",
    "3_what_materials": "What: materials (including those given to participants and used in training)",
    "4_what_procedures": "What: procedures, activities and processes",
    "5_who_provided": "Who provided: expertise, background and training of the providers",
    "6_how": "How: modes of delivery (face-to-face, online, phone; individual or group)",
    "7_where": "Where: locations and infrastructure",
    "8_when_how_much": "When and how much: number of sessions, schedule, duration, intensity",
    "9_tailoring": "Tailoring: what was planned to be personalised, why, when and how",
    "10_modifications": "Modifications during the study (generated from the adaptation log)",
    "11_how_well_planned": "How well (planned): how adherence and fidelity were to be assessed",
    "12_how_well_actual": "How well (actual): adherence and fidelity as delivered (generated from records)",
}
TYPED_ITEMS = tuple(k for k in TIDIER_ITEMS if not k.startswith(("10_", "12_")))


class PlanIn(BaseModel):
    """An arm's planned dose and what counts as having received the intervention."""

    model_config = ConfigDict(extra="forbid")

    planned_sessions: int = Field(ge=1, le=1000)
    session_minutes: int = Field(ge=1, le=24 * 60)
    frequency_days: int | None = Field(default=None, ge=1, le=365, description="days between sessions")
    adherence_kind: AdherenceKind = "sessions"
    adherence_threshold: float = Field(
        gt=0, le=100000, description="sessions attended, proportion of planned (0–1], or minutes of contact"
    )


class PlanRead(PlanIn):
    arm_id: int
    arm: str
    updated_at: datetime


class TidierIn(BaseModel):
    """A new version of an arm's description: items 1–9 and 11 (10 and 12 are generated)."""

    model_config = ConfigDict(extra="forbid")

    items: dict[str, str] = Field(description="item key (e.g. 2_why) → text")
    note: str | None = Field(default=None, max_length=2000, description="what changed in this version")


class TidierItem(BaseModel):
    key: str
    label: str
    value: Any
    generated: bool


class TidierRead(BaseModel):
    arm_id: int
    arm: str
    version: int | None
    created_at: datetime | None
    note: str | None
    items: list[TidierItem]


class SupporterIdentifiers(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: SingleLine | None = Field(default=None, max_length=200)
    email: Email | None = None
    phone: str | None = Field(default=None, max_length=40, pattern=r"^[0-9+() .-]+$")
    date_of_birth: PlausibleDate | None = None


class SupporterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Code
    site: str = Field(min_length=1, max_length=40, description="site code")
    arm: str | None = Field(default=None, max_length=40, description="arm code")
    condition: str | None = Field(default=None, max_length=200)
    years_since_diagnosis: float | None = Field(default=None, ge=0, le=100)
    prior_role: PriorRole = "none"
    gender: str | None = Field(default=None, max_length=40)
    age_band: str | None = Field(default=None, max_length=20, pattern=r"^[0-9]{2}-[0-9]{2}$|^[0-9]{2}\+$")
    ethnicity: str | None = Field(default=None, max_length=100)
    start_date: PlausibleDate
    end_date: PlausibleDate | None = None
    status: SupporterStatus = "recruited"
    identifiers: SupporterIdentifiers | None = None


class SupporterPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    condition: str | None = Field(default=None, max_length=200)
    years_since_diagnosis: float | None = Field(default=None, ge=0, le=100)
    prior_role: PriorRole | None = None
    gender: str | None = Field(default=None, max_length=40)
    age_band: str | None = Field(default=None, max_length=20, pattern=r"^[0-9]{2}-[0-9]{2}$|^[0-9]{2}\+$")
    ethnicity: str | None = Field(default=None, max_length=100)
    end_date: PlausibleDate | None = None
    status: SupporterStatus | None = None
    status_reason: str | None = Field(default=None, max_length=2000)
    identifiers: SupporterIdentifiers | None = None


class SupporterRead(BaseModel):
    id: int
    code: str
    site: str
    arm: str | None
    condition: str | None
    years_since_diagnosis: float | None
    prior_role: str
    gender: str | None
    age_band: str | None
    ethnicity: str | None
    start_date: date
    end_date: date | None
    status: str
    status_reason: str | None
    training_hours: float
    certified_on: date | None
    identifiers: SupporterIdentifiers | None = Field(description="staff of the supporter's site only")


class Trainer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str = Field(min_length=1, max_length=100, description='e.g. "diabetes specialist nurse"')
    qualification: str | None = Field(default=None, max_length=300)


class ModuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Code
    title: str = Field(min_length=1, max_length=300)
    objectives: list[str] = Field(default_factory=list, max_length=30)
    hours: float = Field(gt=0, le=200)
    format: TrainingFormat
    materials: list[str] = Field(default_factory=list, max_length=30, description="file names or URLs")
    theory: str | None = Field(default=None, max_length=2000, description="the programme theory it serves")


class ProgrammeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Code
    title: str = Field(min_length=1, max_length=300)
    description: str | None = Field(default=None, max_length=4000)
    trainers: list[Trainer] = Field(default_factory=list, max_length=20)
    modules: list[ModuleIn] = Field(min_length=1, max_length=100)


class ModuleRead(ModuleIn):
    id: int
    position: int


class ProgrammeRead(BaseModel):
    id: int
    code: str
    title: str
    description: str | None
    trainers: list[dict[str, Any]]
    total_hours: float
    modules: list[ModuleRead]


class TrainingRecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: TrainingKind
    on_date: PlausibleDate
    module_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    hours: float = Field(default=0.0, ge=0, le=200)
    score: float | None = Field(default=None, ge=0, le=100, description="competency assessment, 0–100")
    assessor: str | None = Field(default=None, max_length=200, description="role of the assessor")
    note: str | None = Field(default=None, max_length=2000)


class TrainingRecordRead(TrainingRecordIn):
    id: int
    supporter_id: int


class GroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Code
    site: str = Field(min_length=1, max_length=40)
    arm: str = Field(min_length=1, max_length=40)
    name: str | None = Field(default=None, max_length=200)
    mode: Mode = "face_to_face"
    supporter_ids: list[int] = Field(default_factory=list, max_length=10)


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    participant_id: int = Id
    joined_on: PlausibleDate


class MemberPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    left_on: PlausibleDate


class MemberRead(BaseModel):
    id: int
    participant_id: int
    study_code: str
    joined_on: date
    left_on: date | None


class GroupRead(BaseModel):
    id: int
    code: str
    site: str
    arm: str
    name: str | None
    mode: str
    supporter_ids: list[int]
    members: list[MemberRead]


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group_id: int = Id
    supporter_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    number: int | None = Field(default=None, ge=1, le=1000)
    planned_date: PlausibleDate
    delivered_on: PlausibleDate | None = None
    duration_minutes: int | None = Field(default=None, ge=0, le=24 * 60)
    mode: Mode | None = Field(default=None, description="default: the group's mode")
    topic: str | None = Field(default=None, max_length=300)
    curriculum_module: str | None = Field(default=None, max_length=100)


class SessionPatch(BaseModel):
    """Record delivery (``delivered_on`` and ``duration_minutes``) or cancel (``cancel_reason``)."""

    model_config = ConfigDict(extra="forbid")

    supporter_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    planned_date: PlausibleDate | None = None
    delivered_on: PlausibleDate | None = None
    duration_minutes: int | None = Field(default=None, ge=0, le=24 * 60)
    mode: Mode | None = None
    topic: str | None = Field(default=None, max_length=300)
    curriculum_module: str | None = Field(default=None, max_length=100)
    cancel_reason: str | None = Field(default=None, min_length=1, max_length=2000)


class SessionRead(BaseModel):
    id: int
    group_id: int
    site: str
    arm: str
    supporter_id: int | None
    number: int | None
    planned_date: date
    delivered_on: date | None
    duration_minutes: int | None
    mode: str
    topic: str | None
    curriculum_module: str | None
    status: str
    cancel_reason: str | None
    attended: int


class AttendanceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    participant_id: int = Id
    status: AttendanceStatus
    minutes: int | None = Field(default=None, ge=0, le=24 * 60, description="present, when late or leaving early")


class AttendanceIn(BaseModel):
    """The register of a session: one entry per participant (replaces earlier entries of those participants)."""

    model_config = ConfigDict(extra="forbid")

    records: list[AttendanceEntry] = Field(min_length=1, max_length=500)


class AttendanceRead(BaseModel):
    participant_id: int
    study_code: str
    status: str
    minutes: int | None


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: ContactKind
    on_date: PlausibleDate
    duration_minutes: int = Minutes
    supporter_id: int | None = Field(default=None, ge=1, le=2**31 - 1)


class ContactRead(BaseModel):
    id: int
    participant_id: int
    study_code: str
    supporter_id: int | None
    kind: str
    on_date: date
    duration_minutes: int


class ForumImportRead(BaseModel):
    rows: int
    created: int
    updated: int


class DoseRow(BaseModel):
    participant_id: int
    study_code: str
    site: str
    arm: str | None
    wave: str | None = Field(description="the wave closing the interval; None for the whole follow-up")
    interval_start_day: int | None = Field(description="days since enrolment (exclusive; None: from the start)")
    interval_end_day: int | None = Field(description="days since enrolment (inclusive; None: to date)")
    sessions_offered: int
    sessions_attended: int
    session_minutes: int
    contacts: int
    contact_minutes: int
    minutes_total: int
    forum_posts: int
    forum_replies: int
    forum_logins: int
    proportion_planned: float | None
    first_exposure_day: int | None
    last_exposure_day: int | None
    first_exposure: date | None = Field(description="calendar date; None for de-identified readers")
    last_exposure: date | None = Field(description="calendar date; None for de-identified readers")
    adherent: bool | None = Field(description="by the arm's adherence definition; None without a plan")
