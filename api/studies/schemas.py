"""Request and response bodies of studies, sites, arms and waves."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from api.inputguard import SingleLine

Design = Literal["rct", "cluster_rct", "cohort", "realist_trial"]
StudyStatus = Literal["planning", "recruiting", "follow_up", "closed"]
Blinding = Literal["none", "single", "double", "triple", "outcome_assessor"]
ArmKind = Literal["intervention", "active_comparator", "control"]
Code = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


def _check_time_zone(v: str) -> str:
    # ZoneInfo also accepts file paths and odd aliases; the IANA list is the contract.
    if v not in _zones():
        raise PydanticCustomError("unknown_time_zone", "not an IANA time zone name (e.g. Europe/London)")
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError("unknown_time_zone", "not an IANA time zone name (e.g. Europe/London)") from None
    return v


_ZONES: set[str] | None = None


def _zones() -> set[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = available_timezones() | {"UTC"}
    return _ZONES


def _check_instrument(code: str) -> str:
    import instruments

    if code not in instruments.codes():
        raise PydanticCustomError("unknown_instrument", "unknown instrument; see GET /instruments")
    return code


TimeZone = Annotated[str, AfterValidator(_check_time_zone)]
InstrumentCode = Annotated[str, AfterValidator(_check_instrument)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


PUBLIC_TITLE_DOC = (
    "what participants see in reminder subjects and forms (the title may name a diagnosis); falls back to title"
)


class StudyCreate(_In):
    title: SingleLine = Field(min_length=1, max_length=300)
    public_title: SingleLine | None = Field(
        default=None,
        min_length=1,
        max_length=300,
        description=PUBLIC_TITLE_DOC,
    )
    design: Design
    blinding: Blinding = "none"
    planned_sample_size: int | None = Field(default=None, ge=1, le=10_000_000)
    power_assumptions: dict[str, Any] | None = Field(
        default=None, description='e.g. {"alpha": 0.05, "power": 0.8, "effect_size": 0.4, "icc": 0.05}'
    )
    time_zone: TimeZone = "UTC"
    status: StudyStatus = "planning"
    randomisation_seed: str | None = Field(
        default=None, min_length=1, max_length=64, description="generated when absent; shown to admins only"
    )


class StudyUpdate(_In):
    title: SingleLine | None = Field(default=None, min_length=1, max_length=300)
    public_title: SingleLine | None = Field(
        default=None,
        min_length=1,
        max_length=300,
        description=PUBLIC_TITLE_DOC,
    )
    design: Design | None = None
    blinding: Blinding | None = None
    planned_sample_size: int | None = Field(default=None, ge=1, le=10_000_000)
    power_assumptions: dict[str, Any] | None = None
    time_zone: TimeZone | None = None
    status: StudyStatus | None = None
    reason: str | None = Field(default=None, max_length=2000, description="recorded in the audit trail")


class StudyRead(BaseModel):
    id: int
    title: str
    public_title: str | None = None
    design: str
    blinding: str
    planned_sample_size: int | None
    power_assumptions: dict[str, Any] | None
    time_zone: str
    status: str
    randomisation_seed: str | None = Field(default=None, description="admins only")
    created_at: datetime
    updated_at: datetime


class SiteCreate(_In):
    code: Code
    name: str = Field(min_length=1, max_length=200)


class SiteRead(BaseModel):
    id: int
    study_id: int
    code: str
    name: str


class ArmCreate(_In):
    code: Code
    name: str = Field(min_length=1, max_length=200)
    kind: ArmKind
    allocation_ratio: int = Field(default=1, ge=1, le=20)


class ArmRead(BaseModel):
    """An arm; a reader blind to the arms (analysts before unblinding) gets a neutral label as
    ``code``, ``Arm <label>`` as ``name``, and no ``id`` or ``kind``."""

    id: int | None
    study_id: int
    code: str
    name: str
    kind: str | None
    allocation_ratio: int


class WaveCreate(_In):
    code: Code
    offset_days: int = Field(ge=0, le=36_500)
    window_before_days: int = Field(default=0, ge=0, le=3650)
    window_after_days: int = Field(default=0, ge=0, le=3650)
    instruments: list[InstrumentCode] = Field(min_length=1, max_length=50)
    staff_instruments: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="instruments of this wave that staff administer (an interview, a clinical rating): "
        "coordinator tasks, never on the participant form or in reminders",
    )

    @field_validator("staff_instruments")
    @classmethod
    def _staff_subset(cls, v: list[str], info):
        wave = set(info.data.get("instruments") or [])
        if any(code not in wave for code in v):
            raise PydanticCustomError("not_in_wave", "every staff instrument must be one of the wave's instruments")
        return list(dict.fromkeys(v))


class WaveRead(BaseModel):
    id: int
    study_id: int
    code: str
    offset_days: int
    window_before_days: int
    window_after_days: int
    instruments: list[str]
    staff_instruments: list[str] = Field(default_factory=list)

    @field_validator("staff_instruments", mode="before")
    @classmethod
    def _none_is_empty(cls, v):
        return v or []


class SiteContactIn(_In):
    """The phone number and opening hours participants of a site see on their form."""

    phone: SingleLine = Field(min_length=6, max_length=40, pattern=r"^\+?[0-9 ()-]{6,40}$")
    hours: SingleLine | None = Field(default=None, max_length=200, description="e.g. Monday to Friday, 9 am to 5 pm")


class SiteContactRead(BaseModel):
    site: str
    phone: str
    hours: str | None
    updated_at: datetime
