"""Bodies and read models of the context domain."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from api.context.models import (
    CMO_STATUSES,
    DIRECTIONS,
    EVENT_KINDS,
    EVENT_LEVELS,
    EVIDENCE_KINDS,
    MECHANISM_KINDS,
    NODE_KINDS,
)
from api.inputguard import SingleLine
from api.studies.dates import PlausibleDate

Code = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.:-]+$")
Variable = str | int | float | bool | None
OPERATORS = ("<", "<=", ">", ">=", "==", "!=", "in", "not in")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- context records ---------------------------------------------------------------------------


class ContextRecordIn(_In):
    """A new version of a site's context (or the programme's, without ``site``), or of a participant's."""

    site: str | None = Field(None, min_length=1, max_length=40, description="site code; none: programme level")
    participant: str | None = Field(
        None, min_length=1, max_length=40, description="participant study code (participant-level context)"
    )
    valid_from: PlausibleDate
    variables: dict[str, Variable] = Field(
        min_length=1,
        max_length=100,
        description='e.g. {"setting": "rural", "deprivation_decile": 2, "clinic_type": "GP practice", '
        '"supporter_ratio": 8, "digital_access": 0.7}',
    )
    note: str | None = Field(None, max_length=2000)

    @field_validator("variables")
    @classmethod
    def _names(cls, v: dict[str, Variable]) -> dict[str, Variable]:
        for k, val in v.items():
            if not k or len(k) > 60 or not all(c.isalnum() or c == "_" for c in k):
                raise PydanticCustomError("variable_name", "variable names are 1-60 letters, digits or _")
            if isinstance(val, str) and len(val) > 200:
                raise PydanticCustomError("variable_value", "text values are at most 200 characters")
        return v


class ContextRecordRead(BaseModel):
    id: int
    site: str | None
    participant: str | None = None
    version: int
    valid_from: date
    variables: dict[str, Any]
    note: str | None
    created_at: datetime


# ---- context events ----------------------------------------------------------------------------


class ContextEventIn(_In):
    level: Literal[EVENT_LEVELS]  # type: ignore[valid-type]
    site: str | None = Field(None, min_length=1, max_length=40, description="site code (site and group level)")
    group_code: str | None = Field(None, min_length=1, max_length=40, description="peer group (group level)")
    kind: Literal[EVENT_KINDS]  # type: ignore[valid-type]
    title: SingleLine = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=4000)
    starts_on: PlausibleDate
    ends_on: PlausibleDate | None = None

    @model_validator(mode="after")
    def _shape(self) -> ContextEventIn:
        if self.ends_on is not None and self.ends_on < self.starts_on:
            raise PydanticCustomError("date_order", "ends_on is before starts_on")
        return self


class ContextEventPatch(_In):
    title: SingleLine | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=4000)
    kind: Literal[EVENT_KINDS] | None = None  # type: ignore[valid-type]
    starts_on: PlausibleDate | None = None
    ends_on: PlausibleDate | None = None


class ContextEventRead(BaseModel):
    id: int
    level: str
    site: str | None
    group_code: str | None
    kind: str
    title: str
    description: str | None
    starts_on: date
    ends_on: date | None
    created_at: datetime
    updated_at: datetime


# ---- personal goals ----------------------------------------------------------------------------

_LEVEL_KEYS = {"-2", "-1", "0", "1", "2"}


class GoalIn(_In):
    """A participant's own goal with Goal Attainment Scaling levels, set at baseline."""

    participant: str = Field(min_length=1, max_length=40, description="participant study code")
    code: str = Code
    domain: str | None = Field(None, max_length=80, description="e.g. social, physical activity, self-care")
    weight: int = Field(1, ge=1, le=10)
    levels: dict[str, str] = Field(
        description='the five levels "-2" … "2" (0 = the expected outcome), each described in a few words'
    )
    baseline_level: int = Field(-1, ge=-2, le=2)
    set_on: PlausibleDate

    @field_validator("levels")
    @classmethod
    def _five(cls, v: dict[str, str]) -> dict[str, str]:
        if set(v) != _LEVEL_KEYS:
            raise PydanticCustomError("gas_levels", 'levels needs exactly the keys "-2", "-1", "0", "1", "2"')
        if any(not s.strip() or len(s) > 300 for s in v.values()):
            raise PydanticCustomError("gas_levels", "each level is described in 1-300 characters")
        return v


class RatingIn(_In):
    wave: str = Field(min_length=1, max_length=40, description="follow-up wave code")
    level: int = Field(ge=-2, le=2, description="attained level, -2 … +2")
    rated_on: PlausibleDate


class RatingRead(BaseModel):
    wave: str
    level: int
    rated_on: date


class GoalRead(BaseModel):
    id: int
    participant: str
    site: str
    code: str
    domain: str | None
    weight: int
    levels: dict[str, str]
    baseline_level: int
    set_on: date
    ratings: list[RatingRead]


# ---- logic model -------------------------------------------------------------------------------


class Node(_In):
    code: str = Code
    kind: Literal[NODE_KINDS]  # type: ignore[valid-type]
    label: SingleLine = Field(min_length=1, max_length=200)
    measure: str | None = Field(None, max_length=80, description="scale code (mechanisms and outcomes)")


class LogicModelIn(_In):
    nodes: list[Node] = Field(min_length=1, max_length=200)
    links: list[dict[str, str]] = Field([], max_length=500, description='[{"from": "peer_modelling", "to": "semcd"}]')


class LogicModelRead(BaseModel):
    version: int
    nodes: list[dict[str, Any]]
    links: list[dict[str, Any]]
    updated_at: datetime


# ---- CMO configurations ------------------------------------------------------------------------


class Condition(_In):
    variable: str = Field(
        min_length=1,
        max_length=120,
        description="a participant-level column (context_* answer, code:*, a baseline score "
        "such as lsns6) or a site context variable as site:<name>",
    )
    op: Literal[OPERATORS]  # type: ignore[valid-type]
    value: str | float | int | bool | list[str | float | int]


class Mechanism(_In):
    kind: Literal[MECHANISM_KINDS]  # type: ignore[valid-type]
    ref: str = Field(min_length=1, max_length=120, description="scale code, or the qualitative code's path")
    wave: str | None = Field(None, max_length=40, description="when the mechanism is measured (measures)")


class Evidence(_In):
    kind: Literal[EVIDENCE_KINDS]  # type: ignore[valid-type]
    ref: str = Field(min_length=1, max_length=200, description="run id, coding id, code path, document")
    note: str | None = Field(None, max_length=2000)


class CmoIn(_In):
    code: str = Code
    title: SingleLine = Field(min_length=1, max_length=300)
    context: list[Condition] = Field(min_length=1, max_length=10, description="all conditions must hold")
    mechanism: Mechanism
    outcome: str = Field(min_length=1, max_length=80, description="scale code")
    outcome_wave: str = Field(min_length=1, max_length=40)
    direction: Literal[DIRECTIONS] = "any"  # type: ignore[valid-type]
    prespecified: bool = True
    status: Literal[CMO_STATUSES] = "untested"  # type: ignore[valid-type]
    evidence: list[Evidence] = Field([], max_length=200)


class CmoPatch(_In):
    title: SingleLine | None = Field(None, min_length=1, max_length=300)
    context: list[Condition] | None = Field(None, min_length=1, max_length=10)
    mechanism: Mechanism | None = None
    outcome: str | None = Field(None, min_length=1, max_length=80)
    outcome_wave: str | None = Field(None, min_length=1, max_length=40)
    direction: Literal[DIRECTIONS] | None = None  # type: ignore[valid-type]
    prespecified: bool | None = None
    status: Literal[CMO_STATUSES] | None = None  # type: ignore[valid-type]
    evidence: list[Evidence] | None = Field(None, max_length=200)


class CmoRead(BaseModel):
    id: int
    code: str
    title: str
    context: list[dict[str, Any]]
    mechanism: dict[str, Any]
    outcome: str
    outcome_wave: str
    direction: str
    prespecified: bool
    status: str
    evidence: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
