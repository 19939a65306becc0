"""Fidelity and adaptations: the checklists a study rates sessions with, the ratings of delivered
sessions by independent evaluators, and the FRAME adaptation log (Wiltsey Stirman et al. 2019)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from api.db import UTCDateTime, utcnow

#: How the rater observed the session.
RATING_METHODS = ("live_observation", "audio_recording", "video_recording", "transcript", "self_report")

# FRAME (Wiltsey Stirman, Baumann & Miller 2019), the modules this log records.
#: When the modification occurred.
FRAME_PHASES = ("pre_implementation", "implementation", "scale_up", "sustainment")
#: What is modified.
FRAME_WHAT = ("content", "context", "training", "evaluation", "implementation")
#: For contextual modifications: which part of the context.
FRAME_CONTEXT = ("format", "setting", "personnel", "population")
#: At what level of delivery.
FRAME_LEVELS = ("individual", "group", "supporter", "site", "programme")
#: The nature of the modification (content modifications; the last ones are drift).
FRAME_NATURE = (
    "tailoring",
    "packaging_materials",
    "adding",
    "removing",
    "shortening",
    "lengthening",
    "substituting",
    "reordering",
    "integrating_into_another",
    "integrating_another_into",
    "repeating",
    "loosening_structure",
    "departing",
    "other",
)
#: Who participated in the decision to modify.
FRAME_DECIDERS = (
    "programme_leader",
    "funder",
    "administrator",
    "programme_manager",
    "intervention_developer",
    "researcher",
    "delivery_team",
    "peer_supporter",
    "participants",
    "community_members",
    "other",
)
#: Reasons, by FRAME's levels: sociopolitical, organisation, provider (supporter), recipient.
FRAME_REASONS = (
    "recipient_literacy",
    "recipient_language",
    "recipient_culture",
    "recipient_access",
    "recipient_health",
    "recipient_preferences",
    "recipient_engagement",
    "supporter_skills",
    "supporter_preferences",
    "organisation_resources",
    "organisation_staffing",
    "organisation_time",
    "sociopolitical_policy",
    "sociopolitical_funding",
    "disruption",
    "other",
)
#: The goal of the modification.
FRAME_GOALS = (
    "reach",
    "engagement",
    "retention",
    "satisfaction",
    "fit_with_recipients",
    "effectiveness",
    "feasibility",
    "cost",
    "other",
)
FIDELITY_CONSISTENCY = ("consistent", "inconsistent", "unknown")


class FidelityChecklist(SQLModel, table=True):
    """One version of a study's fidelity checklist (the definition as data, see
    :mod:`instruments.checklist`); ratings keep the id of the version they used."""

    __tablename__ = "fidelity_checklist"
    __table_args__ = (UniqueConstraint("study_id", "code", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    code: str = Field(max_length=60)
    version: str = Field(max_length=20)
    name: str = Field(max_length=300)
    definition: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_by: int | None = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class FidelityRating(SQLModel, table=True):
    """A delivered session rated by one rater with one checklist version: answers by item code and
    the scores (percent of maximum, total/core/form, and core items fully delivered).

    ``site_id``, ``arm_id`` and ``supporter_id`` are copied from the session, so site scoping and
    summaries need no join; one rater rates a session once per checklist version.
    """

    __tablename__ = "fidelity_rating"
    __table_args__ = (UniqueConstraint("session_id", "checklist_id", "rater_id"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id")
    arm_id: int = Field(foreign_key="arm.id")
    session_id: int = Field(foreign_key="delivery_session.id", index=True)
    supporter_id: int | None = Field(default=None, foreign_key="peer_supporter.id")
    checklist_id: int = Field(foreign_key="fidelity_checklist.id")
    rater_id: int | None = Field(default=None, foreign_key="app_user.id")
    method: str = Field(max_length=20)
    rated_on: date
    answers: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    total: float | None = None
    core: float | None = None
    form: float | None = None
    core_full: float | None = None
    items_answered: int = 0
    note: str | None = Field(default=None, max_length=2000)
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Adaptation(SQLModel, table=True):
    """One modification of an arm's intervention, described with FRAME: when, what, at which level,
    its nature, who decided, planned or not, why, its goal, and whether it kept fidelity to the core
    components. Linked to the arm (TIDieR item 10) and optionally to a site, group or session."""

    __tablename__ = "adaptation"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    arm_id: int = Field(foreign_key="arm.id", index=True)
    site_id: int | None = Field(default=None, foreign_key="site.id")
    group_id: int | None = Field(default=None, foreign_key="peer_group.id")
    session_id: int | None = Field(default=None, foreign_key="delivery_session.id")
    adapted_on: date
    phase: str = Field(max_length=20)
    what: str = Field(max_length=20)
    context_aspect: str | None = Field(default=None, max_length=20)
    level: str = Field(max_length=20)
    nature: str = Field(max_length=30)
    planned: bool
    decided_by: list[str] = Field(default_factory=list, sa_type=JSON)
    reasons: list[str] = Field(default_factory=list, sa_type=JSON)
    goal: str | None = Field(default=None, max_length=30)
    fidelity: str = Field(default="unknown", max_length=12)
    component: str | None = Field(default=None, max_length=60)
    description: str = Field(max_length=2000)
    reason_detail: str | None = Field(default=None, max_length=2000)
    recorded_by: int | None = Field(default=None, foreign_key="app_user.id")
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
