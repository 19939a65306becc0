"""The safety part of the demo study: set-up, the life of its alerts, and a few adverse events.

Called by :func:`api.demo.load_demo` through the same services as real use. The synthetic cohort
spreads each PHQ-9 total over the nine items evenly, which makes item 9 positive in most responses
(two in three); real cohorts see it in about one in ten or fewer. :func:`realistic_item9` moves
item 9's points to the other items (the total, and so every score, stays the same) except in about
one response in sixteen, so the demo's alerts are as rare as they would be in practice.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlmodel import Session, select

from api.auth.models import User, UserSite
from api.auth.service import Actor
from api.participants.models import Participant
from api.reminders import staff
from api.safety import configuration, events, service
from api.safety.models import SafetyAlert
from api.safety.schemas import AdverseEventIn, CrisisNumber, FollowUpIn, RuleIn, SettingsIn
from api.studies.models import Arm, Study

CRISIS_NUMBERS = (
    ("Samaritans (24 hours, free)", "116 123"),
    ("NHS 111 (urgent help, 24 hours)", "111"),
    ("Emergency services", "999"),
)


def realistic_item9(participant: str, wave: str, answers: dict) -> dict:
    """Answers with item 9 moved to other items unless this response is one kept positive."""
    item9 = answers.get("phq9_9") or 0
    keep = int(hashlib.sha256(f"{participant}:{wave}".encode()).hexdigest(), 16) % 16 == 0
    if item9 == 0 or keep:
        return answers
    out = dict(answers)
    out["phq9_9"] = 0
    for code in (f"phq9_{i}" for i in range(1, 9)):
        while item9 and out.get(code) is not None and out[code] < 3:
            out[code] += 1
            item9 -= 1
    out["phq9_9"] = item9  # only when every other item is already at 3
    return out


def _actor(session: Session, user: User) -> Actor:
    sites = frozenset(session.exec(select(UserSite.site_id).where(UserSite.user_id == user.id)).all())
    return Actor(user_id=user.id, role=user.role, site_ids=sites, email=user.email, source="system")


def configure(session: Session, study: Study, admin_email: str, north_email: str, actor: Actor) -> None:
    """PI, a contact per site, the UK crisis numbers, and the GAD-7 rule of the protocol."""
    configuration.update_settings(
        session,
        study,
        SettingsIn(
            pi=admin_email,
            escalate_after_hours=24,
            sae_follow_up_days=7,
            crisis_numbers=[CrisisNumber(label=label, number=number) for label, number in CRISIS_NUMBERS],
            contacts={"north": [north_email], "south": [admin_email]},
            rules=[
                RuleIn(
                    code="gad7_severe",
                    instrument="gad7",
                    kind="scale",
                    target="gad7",
                    op=">=",
                    value=15,
                    label="Severe anxiety symptoms (GAD-7 15 or more)",
                )
            ],
        ),
        actor,
    )


ACTIONS = (
    ("called_participant", "Called the participant the same day; safety plan agreed, GP informed with consent."),
    ("referred_gp", "Participant agreed to an urgent GP appointment; referral letter sent."),
    ("called_participant", "Spoke with the participant; already supported by the community mental health team."),
    ("no_action", "Answer entered in error by the participant (confirmed by phone); no concern."),
)


def alert_history(session: Session, study: Study, admin: User, north: User) -> dict[str, int]:
    """Resolve all but the three latest alerts; acknowledge the third latest; leave two open."""
    alerts = list(
        session.exec(
            select(SafetyAlert).where(SafetyAlert.study_id == study.id).order_by(SafetyAlert.answered_at)
        ).all()
    )
    actors = {"north": _actor(session, north), "admin": _actor(session, admin)}
    counts = {"resolved": 0, "acknowledged": 0, "open": 0}
    for n, alert in enumerate(alerts):
        who = actors["north"] if actors["north"].sees_site(alert.site_id) else actors["admin"]
        left = len(alerts) - n
        if left > 3:
            action, note = ACTIONS[n % len(ACTIONS)]
            service.resolve(session, alert, who, action, note)
            counts["resolved"] += 1
        elif left == 3:
            service.acknowledge(session, alert, who, note="Trying to reach the participant by phone.")
            counts["acknowledged"] += 1
        else:
            counts["open"] += 1
    return counts


def _pick(session: Session, study: Study, arm: str, nth: int, min_days: int, today: date) -> Participant | None:
    rows = session.exec(
        select(Participant)
        .join(Arm, Arm.id == Participant.arm_id)
        .where(Participant.study_id == study.id, Arm.code == arm, Participant.status == "active")
        .order_by(Participant.id)
    ).all()
    fit = [p for p in rows if (today - p.enrolled_on).days >= min_days]
    return fit[nth % len(fit)] if fit else None  # a tiny demo cohort may have nobody who fits


# (arm, pick, onset days after enrolment, reported days after onset, event fields, follow-up)
Spec = tuple[str, int, int | None, int, dict[str, Any], tuple[str, str, int] | None]
EVENTS: tuple[Spec, ...] = (
    (
        "group",
        0,
        40,
        1,
        dict(
            description="Felt overwhelmed after a group session about diet; talked it through with the peer supporter.",
            severity="mild",
            relatedness="possibly",
            expectedness="expected",
            reporter="peer_supporter",
            peer_supporter_involved=True,
            group_session_involved=True,
            outcome="recovered",
            resolution_offset=2,
        ),
        None,
    ),
    (
        "group",
        1,
        95,
        1,
        dict(
            description="Chest pain during the walking group; admitted overnight for observation, ACS ruled out.",
            seriousness=["hospitalisation"],
            severity="severe",
            relatedness="possibly",
            expectedness="unexpected",
            reporter="peer_supporter",
            peer_supporter_involved=True,
            group_session_involved=True,
            action_taken="intervention_paused",
            outcome="recovering",
        ),
        (
            "Discharged after 24 hours; cardiology follow-up booked. Walking group resumed after GP review.",
            "recovered",
            6,
        ),
    ),
    (
        "online",
        0,
        60,
        2,
        dict(
            description="Distressed by a forum thread about amputation; the moderator contacted the participant.",
            severity="moderate",
            relatedness="probably",
            expectedness="unexpected",
            reporter="study_staff",
            action_taken="intervention_adjusted",
            outcome="recovered",
            resolution_offset=3,
        ),
        None,
    ),
    (
        "online",
        1,
        120,
        1,
        dict(
            description="Severe hypoglycaemia at home; ambulance called and taken to the emergency department.",
            seriousness=["hospitalisation", "other_important"],
            severity="severe",
            relatedness="not_related",
            expectedness="expected",
            reporter="carer",
            outcome="recovering",
        ),
        ("Insulin dose reviewed by the diabetes nurse; no further episodes.", "recovered", 9),
    ),
    (
        "usual_care",
        0,
        75,
        1,
        dict(
            description="Urinary tract infection treated with antibiotics by the GP.",
            severity="moderate",
            relatedness="not_related",
            expectedness="expected",
            reporter="participant",
            outcome="recovered",
            resolution_offset=7,
        ),
        None,
    ),
)


def adverse_events(session: Session, study: Study, admin: User, north: User, today: date) -> int:
    """Five adverse events with their follow-ups, and one serious event reported ten days ago and
    not followed up since: it shows as overdue."""
    actors = {"north": _actor(session, north), "admin": _actor(session, admin)}
    made = 0
    now = datetime.now(UTC)
    specs: list[Spec] = list(EVENTS) + [
        (
            "usual_care",
            1,
            None,
            0,
            dict(
                description="Fall at home, fractured wrist; admitted overnight from the emergency department.",
                seriousness=["hospitalisation"],
                severity="severe",
                relatedness="unlikely",
                expectedness="expected",
                reporter="participant",
                outcome="recovering",
            ),
            None,
        )
    ]
    for arm, nth, onset_after, reported_after, spec, follow in specs:
        fields: dict[str, Any] = dict(spec)
        resolution_offset = fields.pop("resolution_offset", None)
        min_days = 30 if onset_after is None else onset_after + reported_after + 15
        p = _pick(session, study, arm, nth, min_days, today)
        if p is None:
            continue
        # the overdue one (no onset offset): ten days ago
        onset = today - timedelta(days=10) if onset_after is None else p.enrolled_on + timedelta(days=onset_after)
        reported = datetime.combine(onset + timedelta(days=reported_after), time(11), tzinfo=UTC)
        body = AdverseEventIn(
            onset_date=onset,
            resolution_date=onset + timedelta(days=resolution_offset) if resolution_offset is not None else None,
            reported_at=min(reported, now),
            **fields,
        )
        who = actors["north"] if actors["north"].sees_site(p.site_id) else actors["admin"]
        event = events.create_event(session, p, body, who, now=now)
        if follow is not None:
            note, outcome, days = follow
            events.add_follow_up(
                session,
                event,
                FollowUpIn(note=note, outcome=outcome, resolution_date=onset + timedelta(days=days)),
                who,
                now=now,
            )
        if event.reported_at < now - timedelta(days=30):
            # Messages about events long past would only confuse a demo's mailbox.
            staff.cancel(session, ("adverse_event", event.id), "demo_history", now)
        made += 1
    return made
