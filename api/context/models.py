"""Context and programme theory: site/programme context records (versioned), context events,
participants' personal goals (Goal Attainment Scaling), the study's logic model and its CMO
configurations."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from api.db import UTCDateTime, utcnow

EVENT_LEVELS = ("study", "site", "group")
EVENT_KINDS = ("clinic_closure", "supporter_left", "lockdown", "policy_change", "staffing_change", "other")
NODE_KINDS = ("input", "activity", "mechanism", "outcome")
CMO_STATUSES = ("untested", "supported", "refuted", "mixed")
DIRECTIONS = ("positive", "negative", "any")
MECHANISM_KINDS = ("measure", "code")
EVIDENCE_KINDS = ("analysis_run", "coding", "quote", "document", "note")


class ContextRecord(SQLModel, table=True):
    """One version of a site's (or, without a site, the programme's) context: urban/rural,
    deprivation, clinic type, staffing, supporter-to-participant ratio, digital access … as named
    variables; or of a participant's context over follow-up (caring responsibilities, employment or
    income change, the family's attitude to the programme, adherence when no delivery records
    exist). A change is a new version; earlier versions stay (``valid_from`` orders them)."""

    __tablename__ = "context_record"
    __table_args__ = (UniqueConstraint("study_id", "scope_key", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int | None = Field(default=None, foreign_key="site.id")
    participant_id: int | None = Field(default=None, foreign_key="participant.id", index=True)
    # "study", "site:<id>" or "participant:<id>": one version sequence per scope
    scope_key: str = Field(max_length=30)
    version: int
    valid_from: date
    variables: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    note: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ContextEvent(SQLModel, table=True):
    """Something that happened to the programme at study, site or peer-group level (a clinic
    closure, a supporter leaving, a lockdown, a policy change), on a timeline of start/end dates."""

    __tablename__ = "context_event"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    level: str = Field(max_length=10)
    site_id: int | None = Field(default=None, foreign_key="site.id")
    group_code: str | None = Field(default=None, max_length=40)
    kind: str = Field(max_length=30)
    title: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=4000)
    starts_on: date
    ends_on: date | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PersonalGoal(SQLModel, table=True):
    """A participant's own goal with its five Goal Attainment Scaling levels (−2…+2) defined at
    baseline, a weight and the baseline level (usually −1)."""

    __tablename__ = "personal_goal"
    __table_args__ = (UniqueConstraint("participant_id", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    participant_id: int = Field(foreign_key="participant.id", index=True)
    site_id: int = Field(foreign_key="site.id")
    code: str = Field(max_length=40)
    domain: str | None = Field(default=None, max_length=80)
    weight: int = 1
    levels: dict[str, str] = Field(default_factory=dict, sa_type=JSON)  # "-2".."2" -> description
    baseline_level: int = -1
    set_on: date
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class GoalRating(SQLModel, table=True):
    """The level a goal reached at a follow-up wave (−2…+2). Rating a wave again amends the row."""

    __tablename__ = "goal_rating"
    __table_args__ = (UniqueConstraint("goal_id", "wave_code"),)

    id: int | None = Field(default=None, primary_key=True)
    goal_id: int = Field(foreign_key="personal_goal.id", index=True)
    wave_code: str = Field(max_length=40)
    level: int
    rated_on: date
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class LogicModel(SQLModel, table=True):
    """A study's programme theory: nodes (inputs, activities, mechanisms, outcomes; mechanisms and
    outcomes may point to a measure) and the links between them. Each change is a new version."""

    __tablename__ = "logic_model"

    study_id: int = Field(foreign_key="study.id", primary_key=True)
    version: int = 1
    nodes: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    links: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CmoConfiguration(SQLModel, table=True):
    """A context–mechanism–outcome configuration: a context predicate, a mechanism (a measure or a
    qualitative code), an outcome measure, the hypothesised direction of moderation, a status and
    links to the evidence that bears on it."""

    __tablename__ = "cmo_configuration"
    __table_args__ = (UniqueConstraint("study_id", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    code: str = Field(max_length=40)
    title: str = Field(max_length=300)
    context: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)  # conditions, all must hold
    mechanism: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    outcome: str = Field(max_length=80)
    outcome_wave: str = Field(max_length=40)
    direction: str = Field(default="any", max_length=10)
    prespecified: bool = True
    status: str = Field(default="untested", max_length=10)
    evidence: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
