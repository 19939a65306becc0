"""Safety monitoring: per-study settings, site safety contacts, alerts raised by answers, adverse
events (ICH E2A) and their follow-ups."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from api.db import UTCDateTime, utcnow

ALERT_STATUSES = ("open", "acknowledged", "resolved")
#: What was done about an alert. ``no_action`` needs a reason.
ALERT_ACTIONS = ("called_participant", "referred_gp", "emergency_services", "no_action")
#: Who was told first when the alert was raised.
ROUTINGS = ("site_contacts", "pi", "admins", "nobody")

#: ICH E2A seriousness criteria (any one makes the event serious).
SERIOUSNESS = (
    "death",
    "life_threatening",
    "hospitalisation",
    "disability",
    "congenital_anomaly",
    "other_important",
)
SEVERITIES = ("mild", "moderate", "severe")
RELATEDNESS = ("not_related", "unlikely", "possibly", "probably", "definitely")
#: Relatedness levels counted as "related to the intervention" in harms tables.
RELATED = ("possibly", "probably", "definitely")
EXPECTEDNESS = ("expected", "unexpected")
AE_ACTIONS = (
    "none",
    "intervention_adjusted",
    "intervention_paused",
    "intervention_stopped",
    "withdrawn_from_study",
    "other",
)
OUTCOMES = ("recovered", "recovering", "not_recovered", "recovered_with_sequelae", "fatal", "unknown")
#: Outcomes after which no more follow-up is due.
FINAL_OUTCOMES = ("recovered", "recovered_with_sequelae", "fatal")
REPORTERS = ("participant", "peer_supporter", "study_staff", "clinician", "carer", "other")


class SafetySettings(SQLModel, table=True):
    """A study's safety settings: principal investigator, escalation delay, SAE follow-up interval,
    the support message and crisis numbers shown to participants (per site overrides), and the
    study's own alert rules (added to those of the instrument definitions)."""

    __tablename__ = "safety_settings"

    study_id: int = Field(foreign_key="study.id", primary_key=True)
    pi_user_id: int | None = Field(default=None, foreign_key="app_user.id")
    escalate_after_hours: float = 24.0
    sae_follow_up_days: int = 7
    support_message: str | None = Field(default=None, max_length=2000)
    crisis_numbers: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    # {"<site id>": {"support_message": str | None, "crisis_numbers": [...]}}
    site_support: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    rules: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SafetyContact(SQLModel, table=True):
    """A user who is told at once when an alert is raised or a serious event reported at a site."""

    __tablename__ = "safety_contact"
    __table_args__ = (UniqueConstraint("site_id", "user_id"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id")
    user_id: int = Field(foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SafetyAlert(SQLModel, table=True):
    """An answer that met an alert rule, raised in the transaction that stored the response.

    One alert per response and rule: a retried or amended submission that meets the same rule
    raises nothing new. Status goes ``open`` → ``acknowledged`` (someone owns it) → ``resolved``
    (with the action taken). ``escalation_level`` counts escalations of an unacknowledged alert.
    """

    __tablename__ = "safety_alert"
    __table_args__ = (UniqueConstraint("response_id", "rule_code"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id")
    participant_id: int = Field(foreign_key="participant.id", index=True)
    response_id: int = Field(foreign_key="response.id")
    wave_id: int = Field(foreign_key="wave.id")
    instrument: str = Field(max_length=40)
    rule_code: str = Field(max_length=60)
    rule_label: str = Field(max_length=300)
    rule_kind: str = Field(max_length=10)
    rule_op: str = Field(max_length=2)
    rule_value: float
    observed: float
    response_mode: str = Field(max_length=10)
    answered_at: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(default="open", max_length=20)
    routing: str = Field(default="site_contacts", max_length=20)
    raised_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    owner_id: int | None = Field(default=None, foreign_key="app_user.id")
    acknowledged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    acknowledged_by: int | None = Field(default=None, foreign_key="app_user.id")
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolved_by: int | None = Field(default=None, foreign_key="app_user.id")
    action: str | None = Field(default=None, max_length=30)
    resolution_note: str | None = Field(default=None, max_length=2000)
    escalation_level: int = 0
    escalated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AdverseEvent(SQLModel, table=True):
    """An adverse event of a participant, classified as ICH E2A asks.

    ``serious`` is true when any seriousness criterion applies. ``peer_supporter_id`` and
    ``delivery_session_id`` refer to the process-evaluation records of the delivery domain.
    """

    __tablename__ = "adverse_event"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id")
    participant_id: int = Field(foreign_key="participant.id", index=True)
    description: str = Field(max_length=4000)
    onset_date: date
    resolution_date: date | None = None
    seriousness: list[str] = Field(default_factory=list, sa_type=JSON)
    serious: bool = False
    severity: str = Field(max_length=10)
    relatedness: str = Field(max_length=20)
    expectedness: str = Field(max_length=12)
    action_taken: str = Field(default="none", max_length=30)
    outcome: str = Field(default="unknown", max_length=30)
    reporter: str = Field(max_length=20)
    peer_supporter_involved: bool = False
    peer_supporter_id: int | None = Field(default=None, foreign_key="peer_supporter.id")
    group_session_involved: bool = False
    delivery_session_id: int | None = Field(default=None, foreign_key="delivery_session.id")
    alert_id: int | None = Field(default=None, foreign_key="safety_alert.id")
    reported_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    reported_by: int | None = Field(default=None, foreign_key="app_user.id")
    last_follow_up_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AdverseEventFollowUp(SQLModel, table=True):
    """A follow-up of an adverse event: what is known now, and the outcome if it changed."""

    __tablename__ = "adverse_event_follow_up"

    id: int | None = Field(default=None, primary_key=True)
    adverse_event_id: int = Field(foreign_key="adverse_event.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    note: str = Field(max_length=4000)
    outcome: str | None = Field(default=None, max_length=30)
    resolution_date: date | None = None
    entered_by: int | None = Field(default=None, foreign_key="app_user.id")
