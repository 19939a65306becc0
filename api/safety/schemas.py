"""Bodies and read models of the safety domain."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.safety.models import (
    AE_ACTIONS,
    ALERT_ACTIONS,
    EXPECTEDNESS,
    OUTCOMES,
    RELATEDNESS,
    REPORTERS,
    SERIOUSNESS,
    SEVERITIES,
)
from api.studies.dates import PlausibleAwareMoment, PlausibleDate

Seriousness = Literal[SERIOUSNESS]  # type: ignore[valid-type]
Severity = Literal[SEVERITIES]  # type: ignore[valid-type]
Relatedness = Literal[RELATEDNESS]  # type: ignore[valid-type]
Expectedness = Literal[EXPECTEDNESS]  # type: ignore[valid-type]
AeAction = Literal[AE_ACTIONS]  # type: ignore[valid-type]
Outcome = Literal[OUTCOMES]  # type: ignore[valid-type]
Reporter = Literal[REPORTERS]  # type: ignore[valid-type]
AlertAction = Literal[ALERT_ACTIONS]  # type: ignore[valid-type]
AlertStatusFilter = Literal["open", "acknowledged", "resolved", "unresolved"]
Text = Field(min_length=1, max_length=2000)


# ---- settings ----------------------------------------------------------------------------------


class CrisisNumber(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(min_length=1, max_length=120, description='e.g. "Samaritans (24 hours)"')
    number: str = Field(min_length=1, max_length=40, pattern=r"^[0-9+() .-]+$", description='e.g. "116 123"')


class SiteSupport(BaseModel):
    """A site's own support message and crisis numbers (replacing the study's where given)."""

    model_config = ConfigDict(extra="forbid")

    support_message: str | None = Field(default=None, max_length=2000)
    crisis_numbers: list[CrisisNumber] | None = Field(default=None, max_length=10)


class RuleIn(BaseModel):
    """A study's own alert rule, added to the rules of the instrument definitions."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=60, pattern=r"^[a-z][a-z0-9_]*$")
    instrument: str = Field(min_length=1, max_length=40)
    kind: Literal["item", "scale"]
    target: str = Field(min_length=1, max_length=60, description="item code (kind item) or scale code (kind scale)")
    op: Literal[">", ">=", "<", "<=", "=="]
    value: float
    label: str | None = Field(default=None, max_length=300, description="for staff; default from the rule")


class SettingsIn(BaseModel):
    """Fields left out keep their current value (``null`` clears the PI or the support message)."""

    model_config = ConfigDict(extra="forbid")

    pi: str | None = Field(default=None, max_length=320, description="email of an admin user")
    escalate_after_hours: float | None = Field(default=None, ge=0.25, le=168)
    sae_follow_up_days: int | None = Field(default=None, ge=1, le=90)
    support_message: str | None = Field(default=None, max_length=2000)
    crisis_numbers: list[CrisisNumber] | None = Field(default=None, max_length=10)
    site_support: dict[str, SiteSupport] | None = Field(default=None, description="by site code")
    contacts: dict[str, list[str]] | None = Field(
        default=None, description="site code → emails of the site's coordinators or admins told at once"
    )
    rules: list[RuleIn] | None = Field(default=None, max_length=50)


class UserRef(BaseModel):
    id: int
    email: str


class RuleRead(BaseModel):
    code: str
    instrument: str
    kind: str
    target: str
    op: str
    value: float
    label: str
    origin: Literal["instrument", "study"]


class SettingsRead(BaseModel):
    study_id: int
    pi: UserRef | None
    escalate_after_hours: float
    sae_follow_up_days: int
    support_message: str
    support_message_is_default: bool
    emergency_line: str = Field(description="always shown under the support message")
    crisis_numbers: list[CrisisNumber]
    site_support: dict[str, SiteSupport]
    contacts: dict[str, list[UserRef]]
    rules: list[RuleRead]
    updated_at: datetime | None


class StatusRead(BaseModel):
    """What needs attention now, and every gap in the safety set-up (``warnings``)."""

    study_id: int
    open_alerts: int
    acknowledged_alerts: int
    unacknowledged_past_deadline: int
    oldest_open_alert_at: datetime | None
    overdue_serious_events: int
    failed_notifications: int
    waiting_notifications: int
    warnings: list[str]


class NotificationRead(BaseModel):
    """A safety message in the staff outbox (no body: it is rendered for the recipient)."""

    id: int
    kind: str
    ref: str = Field(description="what it is about, e.g. safety_alert:17")
    site: str | None
    recipient: UserRef
    subject: str
    status: str
    attempts: int
    due_at: datetime
    retry_at: datetime | None
    last_error: str | None
    cancel_reason: str | None
    message_id: str | None
    sent_at: datetime | None


# ---- alerts ------------------------------------------------------------------------------------


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=2000)


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: AlertAction
    note: str | None = Field(default=None, max_length=2000, description="required with action no_action (the reason)")


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner_id: int = Field(ge=1, le=2**31 - 1)


class NotificationCounts(BaseModel):
    pending: int = 0
    sent: int = 0
    failed: int = 0
    cancelled: int = 0


class AlertRead(BaseModel):
    id: int
    study_id: int
    participant_id: int
    study_code: str
    site: str
    wave: str
    instrument: str
    rule: str
    rule_label: str
    observed: float
    response_id: int
    response_mode: str
    answered_at: datetime
    raised_at: datetime
    status: str
    routing: str
    owner: UserRef | None
    acknowledge_by: datetime
    past_deadline: bool
    acknowledged_at: datetime | None
    acknowledged_by: int | None
    resolved_at: datetime | None
    resolved_by: int | None
    action: str | None
    resolution_note: str | None
    escalation_level: int
    escalated_at: datetime | None
    notifications: NotificationCounts


class AlertRef(BaseModel):
    id: int
    rule: str
    status: str


# ---- adverse events ------------------------------------------------------------------------------


class AdverseEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(min_length=1, max_length=4000)
    onset_date: PlausibleDate
    resolution_date: PlausibleDate | None = None
    seriousness: list[Seriousness] = Field(default_factory=list, description="ICH E2A criteria; empty = not serious")
    severity: Severity
    relatedness: Relatedness
    expectedness: Expectedness
    action_taken: AeAction = "none"
    outcome: Outcome = "unknown"
    reporter: Reporter
    peer_supporter_involved: bool = False
    peer_supporter_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    group_session_involved: bool = False
    delivery_session_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    alert_id: int | None = Field(default=None, ge=1, le=2**31 - 1, description="the alert that led to it, if any")
    reported_at: PlausibleAwareMoment | None = Field(
        default=None, description="when the team learnt of it; default now"
    )


class AdverseEventPatch(BaseModel):
    """Any field of :class:`AdverseEventIn`; ``reason`` is required (kept in the audit trail)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Text
    description: str | None = Field(default=None, min_length=1, max_length=4000)
    onset_date: PlausibleDate | None = None
    resolution_date: PlausibleDate | None = None
    seriousness: list[Seriousness] | None = None
    severity: Severity | None = None
    relatedness: Relatedness | None = None
    expectedness: Expectedness | None = None
    action_taken: AeAction | None = None
    outcome: Outcome | None = None
    reporter: Reporter | None = None
    peer_supporter_involved: bool | None = None
    peer_supporter_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    group_session_involved: bool | None = None
    delivery_session_id: int | None = Field(default=None, ge=1, le=2**31 - 1)


class FollowUpIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=1, max_length=4000)
    outcome: Outcome | None = None
    resolution_date: PlausibleDate | None = None


class FollowUpRead(BaseModel):
    id: int
    at: datetime
    note: str
    outcome: str | None
    resolution_date: date | None
    entered_by: int | None


class AdverseEventRead(BaseModel):
    id: int
    study_id: int
    participant_id: int
    study_code: str
    site: str
    description: str
    onset_date: date
    resolution_date: date | None
    seriousness: list[str]
    serious: bool
    severity: str
    relatedness: str
    related: bool
    expectedness: str
    susar: bool = Field(description="serious, related and unexpected")
    action_taken: str
    outcome: str
    reporter: str
    peer_supporter_involved: bool
    peer_supporter_id: int | None
    group_session_involved: bool
    delivery_session_id: int | None
    alert_id: int | None
    reported_at: datetime
    reported_by: int | None
    follow_up_due_at: datetime | None
    overdue: bool
    version: int
    created_at: datetime
    updated_at: datetime
    follow_ups: list[FollowUpRead]
