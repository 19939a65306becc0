"""Adverse events: recording, correcting and following up, as ICH E2A classifies them.

An event is serious when any seriousness criterion applies (death, life-threatening,
hospitalisation, disability, congenital anomaly, other important medical event). A serious event
notifies the principal investigator and the site's safety contacts at once and must be followed up:
its next follow-up is due ``sae_follow_up_days`` after it was reported (then after each follow-up)
until its outcome is final (recovered, recovered with sequelae, fatal); past that it is *overdue*.

Services flush; routers and commands commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from api.audit.service import record, snapshot
from api.auth.policy import ensure_can_write, ensure_site_access
from api.auth.service import Actor
from api.db import utcnow
from api.errors import NotFound, Unprocessable
from api.participants.models import Participant
from api.reminders import staff
from api.safety import notify
from api.safety.configuration import get_settings
from api.safety.models import (
    FINAL_OUTCOMES,
    RELATED,
    SERIOUSNESS,
    AdverseEvent,
    AdverseEventFollowUp,
    SafetyAlert,
    SafetySettings,
)
from api.safety.schemas import AdverseEventIn, AdverseEventPatch, AdverseEventRead, FollowUpIn, FollowUpRead
from api.studies import dates
from api.studies.models import Site, Study

# A device clock a few minutes ahead of the server is not an error.
CLOCK_SKEW = timedelta(minutes=5)
FIELDS = tuple(AdverseEventIn.model_fields)


def _locked(session: Session, event: AdverseEvent) -> AdverseEvent:
    # Read again inside the write transaction (locked on PostgreSQL): concurrent changes queue.
    locked = session.get(AdverseEvent, event.id, with_for_update=True, populate_existing=True)
    if locked is None:
        raise NotFound(["path", "event_id"], "adverse event not found", "not_found")
    return locked


def _study_and_participant(session: Session, event: AdverseEvent) -> tuple[Study, Participant]:
    study = session.get(Study, event.study_id)
    participant = session.get(Participant, event.participant_id)
    if study is None or participant is None:  # both referenced by foreign keys
        raise LookupError(f"adverse event {event.id}: study or participant missing")
    return study, participant


def follow_up_due(event: AdverseEvent, settings: SafetySettings | None) -> datetime | None:
    """When the next follow-up of a serious event is due (None: not serious, or outcome final)."""
    if not event.serious or event.outcome in FINAL_OUTCOMES:
        return None
    days = settings.sae_follow_up_days if settings is not None else 7
    return (event.last_follow_up_at or event.reported_at) + timedelta(days=days)


def _today(study: Study, now: datetime) -> date:
    return now.astimezone(ZoneInfo(study.time_zone)).date()


def _check(values: dict[str, Any], participant: Participant, study: Study, now: datetime, prefix=("body",)) -> None:
    """Rules across fields; each failure is a 422 naming the field."""
    loc = list(prefix)
    today = _today(study, now)
    if values["onset_date"] < participant.consent_date:
        raise Unprocessable(loc + ["onset_date"], "onset is before the participant's consent", "before_consent")
    if values["onset_date"] > today:
        raise Unprocessable(loc + ["onset_date"], "onset is in the future", "in_future")
    end = values.get("resolution_date")
    if end is not None and end < values["onset_date"]:
        raise Unprocessable(loc + ["resolution_date"], "resolution is before onset", "before_onset")
    if end is not None and end > today:
        raise Unprocessable(loc + ["resolution_date"], "resolution is in the future", "in_future")
    died = "death" in values["seriousness"]
    if died != (values["outcome"] == "fatal"):
        raise Unprocessable(
            loc + ["outcome"],
            "outcome fatal and the seriousness criterion death go together",
            "inconsistent_outcome",
        )
    if values.get("peer_supporter_id") is not None and not values.get("peer_supporter_involved"):
        raise Unprocessable(
            loc + ["peer_supporter_involved"], "a peer supporter is named: set peer_supporter_involved", "inconsistent"
        )
    if values.get("delivery_session_id") is not None and not values.get("group_session_involved"):
        raise Unprocessable(
            loc + ["group_session_involved"], "a session is named: set group_session_involved", "inconsistent"
        )


def _check_refs(session: Session, values: dict[str, Any], study_id: int) -> None:
    """The supporter and session named must be records of the study (422 naming the field)."""
    from api.delivery.models import DeliverySession, PeerSupporter

    refs: tuple[tuple[str, type[PeerSupporter] | type[DeliverySession], str], ...] = (
        ("peer_supporter_id", PeerSupporter, "peer supporter"),
        ("delivery_session_id", DeliverySession, "delivery session"),
    )
    for name, model, what in refs:
        ref = values.get(name)
        if ref is not None:
            row = session.get(model, ref)
            if row is None or getattr(row, "study_id", None) != study_id:
                raise Unprocessable(["body", name], f"no {what} with this id in the study", "unknown_reference")


def _notify_serious(session: Session, event: AdverseEvent, study: Study, cfg: SafetySettings | None, now: datetime):
    recipients = notify.serious_event_recipients(session, cfg, event.site_id)
    if recipients:
        notify.serious_event(session, event, study, recipients, follow_up_due(event, cfg) or now, now)
    return recipients


def create_event(
    session: Session, participant: Participant, body: AdverseEventIn, actor: Actor, now: datetime | None = None
) -> AdverseEvent:
    """Record an adverse event of ``participant`` (audited; a serious one notifies at once)."""
    ensure_can_write(actor)
    ensure_site_access(actor, participant.site_id, loc=("path", "participant_id"), what="participant")
    now = now or utcnow()
    study = session.get(Study, participant.study_id)
    if study is None:  # the participant's study, by foreign key
        raise LookupError(f"study {participant.study_id} is missing")
    values = body.model_dump()
    values["seriousness"] = [c for c in SERIOUSNESS if c in set(body.seriousness)]
    _check(values, participant, study, now)
    _check_refs(session, values, study.id)
    reported_at = values.pop("reported_at") or now
    if reported_at > now + CLOCK_SKEW:
        raise Unprocessable(["body", "reported_at"], "reported_at is in the future", "in_future")
    dates.check(study, {("body", "onset_date"): body.onset_date, ("body", "reported_at"): reported_at}, now=now)
    if body.alert_id is not None:
        alert = session.get(SafetyAlert, body.alert_id)
        if alert is None or alert.participant_id != participant.id:
            raise Unprocessable(["body", "alert_id"], "no alert of this participant with this id", "unknown_alert")
    event = AdverseEvent(
        study_id=participant.study_id,
        site_id=participant.site_id,
        participant_id=participant.id,
        serious=bool(values["seriousness"]),
        reported_at=reported_at,
        reported_by=actor.user_id,
        created_at=now,
        updated_at=now,
        **values,
    )
    session.add(event)
    session.flush()
    cfg = get_settings(session, participant.study_id)
    notified = _notify_serious(session, event, study, cfg, now) if event.serious else []
    record(
        session,
        actor,
        "create",
        "adverse_event",
        event.id,
        study_id=event.study_id,
        site_id=event.site_id,
        after={**_audit(event), "notified_user_ids": notified},
    )
    return event


def _audit(event: AdverseEvent) -> dict[str, Any]:
    return snapshot(event, exclude=("created_at", "updated_at")) or {}


def update_event(
    session: Session, event: AdverseEvent, body: AdverseEventPatch, actor: Actor, now: datetime | None = None
) -> AdverseEvent:
    """Correct fields of an event, with a reason (the previous values stay in the audit trail)."""
    ensure_can_write(actor)
    event = _locked(session, event)
    now = now or utcnow()
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if k != "reason"}
    for name in ("description", "onset_date", "severity", "relatedness", "expectedness", "action_taken", "outcome"):
        if name in changes and changes[name] is None:
            raise Unprocessable(["body", name], "this field cannot be emptied", "missing")
    if "seriousness" in changes:
        changes["seriousness"] = [c for c in SERIOUSNESS if c in set(changes["seriousness"] or ())]
    for flag in ("peer_supporter_involved", "group_session_involved"):
        if flag in changes and changes[flag] is None:
            changes[flag] = False
    if not changes:
        raise Unprocessable(["body"], "nothing to change", "no_changes")
    study, participant = _study_and_participant(session, event)
    merged = {name: getattr(event, name) for name in FIELDS if hasattr(event, name)} | changes
    _check(merged, participant, study, now)
    _check_refs(session, changes, study.id)
    before = _audit(event)
    was_serious = event.serious
    for name, value in changes.items():
        setattr(event, name, value)
    event.serious = bool(event.seriousness)
    event.version += 1
    event.updated_at = now
    session.add(event)
    session.flush()
    notified = []
    if event.serious and not was_serious:
        notified = _notify_serious(session, event, study, get_settings(session, event.study_id), now)
    record(
        session,
        actor,
        "update",
        "adverse_event",
        event.id,
        study_id=event.study_id,
        site_id=event.site_id,
        before=before,
        after={**_audit(event), **({"notified_user_ids": notified} if notified else {})},
        reason=body.reason,
    )
    return event


def add_follow_up(
    session: Session, event: AdverseEvent, body: FollowUpIn, actor: Actor, now: datetime | None = None
) -> AdverseEventFollowUp:
    """Record a follow-up; an outcome or resolution date given here updates the event too."""
    ensure_can_write(actor)
    event = _locked(session, event)
    now = now or utcnow()
    study, participant = _study_and_participant(session, event)
    changes = {k: v for k, v in (("outcome", body.outcome), ("resolution_date", body.resolution_date)) if v}
    merged = {name: getattr(event, name) for name in FIELDS if hasattr(event, name)} | changes
    _check(merged, participant, study, now)
    before = _audit(event)
    follow = AdverseEventFollowUp(
        adverse_event_id=event.id,
        at=now,
        note=body.note,
        outcome=body.outcome,
        resolution_date=body.resolution_date,
        entered_by=actor.user_id,
    )
    session.add(follow)
    for name, value in changes.items():
        setattr(event, name, value)
    event.last_follow_up_at = now
    event.version += 1
    event.updated_at = now
    session.add(event)
    session.flush()
    staff.cancel(session, ("adverse_event", event.id), "followed_up", now, kinds=("sae_overdue",))
    record(
        session,
        actor,
        "create",
        "adverse_event_follow_up",
        follow.id,
        study_id=event.study_id,
        site_id=event.site_id,
        after={"adverse_event_id": event.id, "note": body.note, **{k: str(v) for k, v in changes.items()}},
    )
    record(
        session,
        actor,
        "follow_up",
        "adverse_event",
        event.id,
        study_id=event.study_id,
        site_id=event.site_id,
        before=before,
        after=_audit(event),
    )
    return follow


# ---- reading -------------------------------------------------------------------------------------


def get_event(session: Session, event_id: int, actor: Actor) -> AdverseEvent:
    event = session.get(AdverseEvent, event_id)
    if event is None:
        raise NotFound(["path", "event_id"], "adverse event not found", "not_found")
    ensure_site_access(actor, event.site_id, loc=("path", "event_id"), what="adverse event")
    return event


def list_events(
    session: Session,
    actor: Actor,
    *,
    study: Study | None = None,
    participant: Participant | None = None,
    serious: bool | None = None,
    overdue: bool | None = None,
    site: str | None = None,
    now: datetime | None = None,
    limit: int = 100,
    after: int | None = None,
) -> list[AdverseEvent]:
    """Events the actor may see, newest first."""
    stmt = select(AdverseEvent)
    if study is not None:
        stmt = stmt.where(AdverseEvent.study_id == study.id)
    if participant is not None:
        stmt = stmt.where(AdverseEvent.participant_id == participant.id)
    if actor.role == "coordinator":
        stmt = stmt.where(AdverseEvent.site_id.in_(actor.site_ids or {-1}))
    if serious is not None:
        stmt = stmt.where(AdverseEvent.serious == serious)
    if site is not None and study is not None:
        site_id = session.exec(select(Site.id).where(Site.study_id == study.id, Site.code == site)).first()
        if site_id is None:
            raise Unprocessable(["query", "site"], "no site with this code in the study", "unknown_site")
        stmt = stmt.where(AdverseEvent.site_id == site_id)
    if overdue is not None:
        stmt = stmt.where(AdverseEvent.serious)  # only serious events can be overdue; filtered below
    if after is not None:
        stmt = stmt.where(AdverseEvent.id < after)
    events = list(session.exec(stmt.order_by(AdverseEvent.id.desc())).all())
    if overdue is not None:
        now = now or utcnow()
        cfgs = _settings_of(session, {e.study_id for e in events})
        events = [e for e in events if _is_overdue(e, cfgs.get(e.study_id), now) == overdue]
    return events[:limit]


def _settings_of(session: Session, study_ids: set[int]) -> dict[int, SafetySettings]:
    if not study_ids:
        return {}
    return {s.study_id: s for s in session.exec(select(SafetySettings).where(SafetySettings.study_id.in_(study_ids)))}


def _is_overdue(event: AdverseEvent, cfg: SafetySettings | None, now: datetime) -> bool:
    due = follow_up_due(event, cfg)
    return due is not None and now >= due


def to_read(session: Session, events: Iterable[AdverseEvent], now: datetime | None = None) -> list[AdverseEventRead]:
    events = list(events)
    if not events:
        return []
    now = now or utcnow()
    ids = [e.id for e in events]
    people = dict(
        session.exec(
            select(Participant.id, Participant.study_code).where(Participant.id.in_({e.participant_id for e in events}))
        ).all()
    )
    sites = dict(session.exec(select(Site.id, Site.code).where(Site.id.in_({e.site_id for e in events}))).all())
    cfgs = _settings_of(session, {e.study_id for e in events})
    follows: dict[int, list[FollowUpRead]] = {i: [] for i in ids}
    for f in session.exec(
        select(AdverseEventFollowUp)
        .where(AdverseEventFollowUp.adverse_event_id.in_(ids))
        .order_by(AdverseEventFollowUp.at, AdverseEventFollowUp.id)
    ):
        follows[f.adverse_event_id].append(
            FollowUpRead(
                id=f.id,
                at=f.at,
                note=f.note,
                outcome=f.outcome,
                resolution_date=f.resolution_date,
                entered_by=f.entered_by,
            )
        )
    out = []
    for e in events:
        due = follow_up_due(e, cfgs.get(e.study_id))
        related = e.relatedness in RELATED
        out.append(
            AdverseEventRead(
                **{name: getattr(e, name) for name in FIELDS if name not in ("reported_at",)},
                id=e.id,
                study_id=e.study_id,
                participant_id=e.participant_id,
                study_code=people.get(e.participant_id, "?"),
                site=sites.get(e.site_id, "?"),
                serious=e.serious,
                related=related,
                susar=e.serious and related and e.expectedness == "unexpected",
                reported_at=e.reported_at,
                reported_by=e.reported_by,
                follow_up_due_at=due,
                overdue=due is not None and now >= due,
                version=e.version,
                created_at=e.created_at,
                updated_at=e.updated_at,
                follow_ups=follows[e.id],
            )
        )
    return out
