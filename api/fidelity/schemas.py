"""Bodies and read models of fidelity checklists, ratings and the FRAME adaptation log."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.fidelity.models import (
    FIDELITY_CONSISTENCY,
    FRAME_CONTEXT,
    FRAME_DECIDERS,
    FRAME_GOALS,
    FRAME_LEVELS,
    FRAME_NATURE,
    FRAME_PHASES,
    FRAME_REASONS,
    FRAME_WHAT,
    RATING_METHODS,
)

Method = Literal[RATING_METHODS]  # type: ignore[valid-type]
Phase = Literal[FRAME_PHASES]  # type: ignore[valid-type]
What = Literal[FRAME_WHAT]  # type: ignore[valid-type]
ContextAspect = Literal[FRAME_CONTEXT]  # type: ignore[valid-type]
Level = Literal[FRAME_LEVELS]  # type: ignore[valid-type]
Nature = Literal[FRAME_NATURE]  # type: ignore[valid-type]
Decider = Literal[FRAME_DECIDERS]  # type: ignore[valid-type]
Reason = Literal[FRAME_REASONS]  # type: ignore[valid-type]
Goal = Literal[FRAME_GOALS]  # type: ignore[valid-type]
Consistency = Literal[FIDELITY_CONSISTENCY]  # type: ignore[valid-type]
Code = Field(min_length=1, max_length=60, pattern=r"^[a-z][a-z0-9_]*$")

# ---- checklists ----------------------------------------------------------------------------------


class OptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: float = Field(ge=-1000, le=1000, allow_inf_nan=False)
    label: str = Field(min_length=1, max_length=200)
    missing: bool = Field(default=False, description="e.g. 'not applicable': stored, not scored")


class ChecklistItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Code
    text: str = Field(min_length=1, max_length=1000)
    component: Literal["core", "form"]
    options: str | list[OptionIn] = Field(description="an option set's name or the options themselves")
    required: bool = False


class ChecklistIn(BaseModel):
    """A checklist definition, or ``{"template": "peer_group_session"}`` for a shipped one (its
    ``code``/``version`` may be given to rename it)."""

    model_config = ConfigDict(extra="forbid")

    template: str | None = Field(default=None, max_length=60, description="a shipped checklist to start from")
    code: str | None = Field(default=None, min_length=1, max_length=60, pattern=r"^[a-z][a-z0-9_]*$")
    name: str | None = Field(default=None, min_length=1, max_length=300)
    version: str | None = Field(default=None, min_length=1, max_length=20, pattern=r"^[A-Za-z0-9._-]+$")
    source: str | None = Field(default=None, max_length=2000)
    instructions: str | None = Field(default=None, max_length=2000)
    min_answered: float | None = Field(default=None, gt=0, le=1)
    option_sets: dict[str, list[OptionIn]] | None = Field(default=None, max_length=20)
    items: list[ChecklistItemIn] | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _template_or_items(self) -> ChecklistIn:
        if self.template is None:
            missing = [f for f in ("code", "name", "version", "items") if getattr(self, f) in (None, [])]
            if missing:
                raise ValueError(f"without a template, {', '.join(missing)} must be given")
        return self


class ChecklistRead(BaseModel):
    id: int
    code: str
    version: str
    name: str
    definition: dict[str, Any]
    created_at: datetime


# ---- ratings -------------------------------------------------------------------------------------

Answers = dict[str, float | None]


class RatingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: int = Field(ge=1, le=2**31 - 1, description="a delivered session (delivery domain)")
    checklist: str = Field(min_length=1, max_length=60, description="checklist code")
    checklist_version: str | None = Field(default=None, max_length=20, description="default: the latest")
    method: Method
    rated_on: date
    answers: Answers = Field(max_length=200, description="item code → option code (null: not rated)")
    note: str | None = Field(default=None, max_length=2000)


class RatingPatch(BaseModel):
    """A correction of a rating by its rater (or an admin): fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    method: Method | None = None
    rated_on: date | None = None
    answers: Answers | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=2000)
    reason: str = Field(min_length=1, max_length=500, description="why the rating is corrected (audited)")


class Scores(BaseModel):
    total: float | None
    core: float | None
    form: float | None
    core_full: float | None
    items_answered: int


class RatingRead(BaseModel):
    id: int
    session_id: int
    site: str
    arm: str
    supporter_id: int | None
    checklist: str
    checklist_version: str
    rater_id: int | None
    method: str
    rated_on: date | None = Field(description="null for analysts (see rated_day)")
    rated_day: int = Field(description="days since the study's first delivered session")
    answers: dict[str, Any]
    scores: Scores
    note: str | None
    version: int
    created_at: datetime
    updated_at: datetime


class SummaryRow(BaseModel):
    key: dict[str, Any]
    period: str
    n_sessions: int
    n_double_rated: int
    mean: float
    sd: float | None
    min: float
    max: float
    ci_lower: float | None
    ci_upper: float | None


class AgreementRead(BaseModel):
    """Inter-rater agreement on double-rated sessions: items (weighted kappa) and scores (ICC)."""

    checklist: str
    checklist_version: str
    double_rated_sessions: int
    items: list[dict[str, Any]]
    scores: list[dict[str, Any]]


# ---- adaptations ---------------------------------------------------------------------------------


class AdaptationIn(BaseModel):
    """One modification, described with FRAME (Wiltsey Stirman, Baumann & Miller 2019)."""

    model_config = ConfigDict(extra="forbid")

    arm: str = Field(min_length=1, max_length=40, description="arm code")
    site: str | None = Field(default=None, max_length=40, description="site code (null: every site)")
    group_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    session_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    adapted_on: date
    phase: Phase = Field(description="when in the life of the programme")
    what: What = Field(description="what is modified")
    context_aspect: ContextAspect | None = Field(default=None, description="for what=context")
    level: Level = Field(description="at which level of delivery")
    nature: Nature
    planned: bool = Field(description="planned (proactive) or unplanned (reactive)")
    decided_by: list[Decider] = Field(min_length=1, max_length=11)
    reasons: list[Reason] = Field(min_length=1, max_length=16)
    reason_detail: str | None = Field(default=None, max_length=2000)
    goal: Goal | None = None
    fidelity: Consistency = Field(default="unknown", description="consistent with the core components?")
    component: str | None = Field(default=None, max_length=60, description="the checklist item or component touched")
    description: str = Field(min_length=1, max_length=2000)


class AdaptationPatch(BaseModel):
    """A correction: fields left out keep their value; ``reason`` is audited."""

    model_config = ConfigDict(extra="forbid")

    adapted_on: date | None = None
    phase: Phase | None = None
    what: What | None = None
    context_aspect: ContextAspect | None = None
    level: Level | None = None
    nature: Nature | None = None
    planned: bool | None = None
    decided_by: list[Decider] | None = Field(default=None, min_length=1, max_length=11)
    reasons: list[Reason] | None = Field(default=None, min_length=1, max_length=16)
    reason_detail: str | None = Field(default=None, max_length=2000)
    goal: Goal | None = None
    fidelity: Consistency | None = None
    component: str | None = Field(default=None, max_length=60)
    description: str | None = Field(default=None, min_length=1, max_length=2000)
    reason: str = Field(min_length=1, max_length=500, description="why the record is corrected (audited)")


class AdaptationRead(BaseModel):
    id: int
    arm: str
    site: str | None
    group_id: int | None
    session_id: int | None
    adapted_on: date | None = Field(description="null for analysts (see adapted_day)")
    adapted_day: int = Field(description="days since the study's first delivered session")
    phase: str
    what: str
    context_aspect: str | None
    level: str
    nature: str
    planned: bool
    decided_by: list[str]
    reasons: list[str]
    reason_detail: str | None
    goal: str | None
    fidelity: str
    component: str | None
    description: str
    recorded_by: int | None
    version: int
    created_at: datetime
    updated_at: datetime
