"""Study-level safety views: the data monitoring committee's line listing and summary by arm, and
the safety status (what needs attention now, and every gap in the safety set-up).

Arm labels are masked (``Arm A``, ``Arm B`` … in an order keyed by the server secret, stable from
one report to the next, and without the arm's kind) unless the requester may see the allocation
(:func:`api.auth.policy.may_see_allocation`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, select

from api.auth.policy import may_see_allocation
from api.auth.service import Actor
from api.participants.models import Participant
from api.reminders.models import StaffNotification
from api.safety import notify
from api.safety.configuration import get_settings
from api.safety.events import follow_up_due
from api.safety.models import RELATED, AdverseEvent, AdverseEventFollowUp, SafetyAlert
from api.sap.blinding import is_unblinded, neutral_labels
from api.studies.models import Arm, Site, Study

if TYPE_CHECKING:
    import pandas as pd
else:
    from api.lazyimport import pandas as pd

#: A staff message still waiting this long suggests that no ``peerlens worker`` is running.
STALE_AFTER = timedelta(minutes=15)


def arm_labels(session: Session, study: Study, actor: Actor, secret: str) -> tuple[dict[int, tuple[str, Any]], bool]:
    """``{arm id: (label, kind)}`` as the actor may see them, and whether they are masked.

    Masked labels are ``Arm A``, ``Arm B``… in the blinded-analysis order of
    :func:`api.sap.blinding.neutral_labels` (one mapping for every surface); ``secret`` is unused
    since that order is keyed by the study's stored seed."""
    arms = list(session.exec(select(Arm).where(Arm.study_id == study.id).order_by(Arm.id)).all())
    if may_see_allocation(actor, unblinded=is_unblinded(session, study.id)):
        return {a.id: (a.code, a.kind) for a in arms}, False
    labels = neutral_labels(session, study.id)
    return {a.id: (f"Arm {labels[a.id]}", None) for a in arms if a.id in labels}, True


def _events_frame(session: Session, study: Study) -> pd.DataFrame:
    rows = session.execute(
        sa_select(
            Participant.study_code,
            AdverseEvent.seriousness,
            AdverseEvent.serious,
            AdverseEvent.severity,
            AdverseEvent.relatedness,
            AdverseEvent.action_taken,
        )
        .join(Participant, Participant.id == AdverseEvent.participant_id)
        .where(AdverseEvent.study_id == study.id)
    ).all()
    return pd.DataFrame(
        [(c, ";".join(s or []), bool(ser), sev, rel, act) for c, s, ser, sev, rel, act in rows],
        columns=["participant", "seriousness", "serious", "severity", "relatedness", "action_taken"],
    )


def summary(session: Session, study: Study, actor: Actor, secret: str) -> dict[str, Any]:
    """Harms by arm for a data monitoring committee (:func:`analysis.safety.harms_table`) plus
    participants with a safety alert, by rule. Denominator: the participants allocated to an arm."""
    from analysis.safety import clopper_pearson, harms_table

    labels, masked = arm_labels(session, study, actor, secret)
    people_rows = session.exec(
        select(Participant.study_code, Participant.arm_id).where(
            Participant.study_id == study.id, Participant.arm_id.is_not(None)
        )
    ).all()
    people = pd.DataFrame(
        [(c, labels[a][0]) for c, a in people_rows if a in labels], columns=["participant", "arm"]
    ).sort_values("arm", kind="stable")
    table = harms_table(_events_frame(session, study), people)
    sizes = people.groupby("arm").size().to_dict()
    alerts = session.exec(
        select(Participant.arm_id, SafetyAlert.rule_code, SafetyAlert.participant_id)
        .join(Participant, Participant.id == SafetyAlert.participant_id)
        .where(SafetyAlert.study_id == study.id, Participant.arm_id.is_not(None))
    ).all()
    extra = []
    for rule in sorted({r for _, r, _ in alerts}):
        for arm_label, n in sizes.items():
            mine = [(a, p) for a, r, p in alerts if r == rule and labels.get(a, ("?",))[0] == arm_label]
            k = len({p for _, p in mine})
            lo, hi = clopper_pearson(k, n)
            extra.append([arm_label, "safety_alert", rule, k, n, k / n if n else None, lo, hi, len(mine)])
    if extra:
        table = pd.concat([table, pd.DataFrame(extra, columns=table.columns)], ignore_index=True)
    return {
        "study_id": study.id,
        "masked": masked,
        "arms": sorted(
            ({"arm": label, "kind": kind, "n": int(sizes.get(label, 0))} for label, kind in labels.values()),
            key=lambda a: a["arm"],
        ),
        "columns": list(table.columns),
        "rows": table.astype(object).where(table.notna(), None).to_dict(orient="records"),
    }


LISTING_COLUMNS = [
    "event_id",
    "participant",
    "site",
    "arm",
    "onset_day",
    "onset_date",
    "resolution_date",
    "description",
    "serious",
    "seriousness",
    "severity",
    "relatedness",
    "related",
    "expectedness",
    "susar",
    "action_taken",
    "outcome",
    "reporter",
    "peer_supporter_involved",
    "group_session_involved",
    "alert_id",
    "reported_at",
    "follow_ups",
    "follow_up_due_at",
    "overdue",
]


def line_listing(session: Session, study: Study, actor: Actor, secret: str, now: datetime) -> list[dict[str, Any]]:
    """Every adverse event of the study, one row each, ordered by arm, participant and onset."""
    labels, _ = arm_labels(session, study, actor, secret)
    cfg = get_settings(session, study.id)
    counts = dict(
        session.exec(
            select(AdverseEventFollowUp.adverse_event_id, func.count())
            .join(AdverseEvent, AdverseEvent.id == AdverseEventFollowUp.adverse_event_id)
            .where(AdverseEvent.study_id == study.id)
            .group_by(AdverseEventFollowUp.adverse_event_id)
        ).all()
    )
    rows = session.exec(
        select(AdverseEvent, Participant, Site.code)
        .join(Participant, Participant.id == AdverseEvent.participant_id)
        .join(Site, Site.id == AdverseEvent.site_id)
        .where(AdverseEvent.study_id == study.id)
    ).all()
    out = []
    for e, p, site in rows:
        due = follow_up_due(e, cfg)
        related = e.relatedness in RELATED
        out.append(
            {
                "event_id": e.id,
                "participant": p.study_code,
                "site": site,
                "arm": labels[p.arm_id][0] if p.arm_id in labels else None,
                "onset_day": (e.onset_date - p.enrolled_on).days,
                "onset_date": e.onset_date.isoformat(),
                "resolution_date": e.resolution_date.isoformat() if e.resolution_date else None,
                "description": e.description,
                "serious": e.serious,
                "seriousness": ";".join(e.seriousness or []),
                "severity": e.severity,
                "relatedness": e.relatedness,
                "related": related,
                "expectedness": e.expectedness,
                "susar": e.serious and related and e.expectedness == "unexpected",
                "action_taken": e.action_taken,
                "outcome": e.outcome,
                "reporter": e.reporter,
                "peer_supporter_involved": e.peer_supporter_involved,
                "group_session_involved": e.group_session_involved,
                "alert_id": e.alert_id,
                "reported_at": e.reported_at.isoformat(),
                "follow_ups": int(counts.get(e.id, 0)),
                "follow_up_due_at": due.isoformat() if due else None,
                "overdue": due is not None and now >= due,
            }
        )
    out.sort(key=lambda r: (str(r["arm"]), r["participant"], r["onset_date"], r["event_id"]))
    return out


def status(session: Session, study: Study, actor: Actor, now: datetime) -> dict[str, Any]:
    """Counts that need attention (the actor's sites) and every gap in the safety set-up."""
    cfg = get_settings(session, study.id)
    sites = list(session.exec(select(Site).where(Site.study_id == study.id).order_by(Site.id)).all())
    mine = [s for s in sites if actor.sees_site(s.id)]
    site_ids = [s.id for s in mine] or [-1]
    hours = cfg.escalate_after_hours if cfg else 24.0
    alerts = session.exec(
        select(SafetyAlert.status, SafetyAlert.raised_at).where(
            SafetyAlert.study_id == study.id,
            SafetyAlert.site_id.in_(site_ids),
            SafetyAlert.status.in_(("open", "acknowledged")),
        )
    ).all()
    open_at = [r for s, r in alerts if s == "open"]
    events = session.exec(
        select(AdverseEvent).where(
            AdverseEvent.study_id == study.id, AdverseEvent.site_id.in_(site_ids), AdverseEvent.serious
        )
    ).all()
    overdue = [e for e in events if (d := follow_up_due(e, cfg)) is not None and now >= d]
    notes = session.exec(
        select(StaffNotification.status, StaffNotification.due_at).where(
            StaffNotification.study_id == study.id,
            StaffNotification.status.in_(("pending", "sending", "failed")),
            (StaffNotification.site_id.in_(site_ids)) | (StaffNotification.site_id.is_(None)),
        )
    ).all()
    failed = sum(1 for s, _ in notes if s == "failed")
    waiting = sum(1 for s, d in notes if s != "failed" and now - d >= STALE_AFTER)
    warnings = []
    pi = notify.active_pi(session, cfg)
    if pi is None:
        warnings.append(
            "no principal investigator is named (PUT /studies/{id}/safety/settings, field pi): unacknowledged "
            "alerts are escalated to every administrator"
        )
    fallback = "the principal investigator" if pi is not None else "every administrator"
    for s in mine:
        if not notify.site_contacts(session, s.id):
            warnings.append(f"site {s.code} has no safety contact: its alerts go to {fallback}")
    if not notify.admins(session):
        warnings.append("there is no active administrator: an alert may have nobody to escalate to")
    if failed:
        warnings.append(
            f"{failed} safety message(s) could not be delivered: see GET /studies/{{id}}/safety/notifications"
            "?status=failed and check the mail settings"
        )
    if waiting:
        warnings.append(
            f"{waiting} safety message(s) have waited more than {int(STALE_AFTER.total_seconds() // 60)} minutes: "
            "is `peerlens worker` running?"
        )
    return {
        "study_id": study.id,
        "open_alerts": len(open_at),
        "acknowledged_alerts": len(alerts) - len(open_at),
        "unacknowledged_past_deadline": sum(1 for r in open_at if now - r >= timedelta(hours=hours)),
        "oldest_open_alert_at": min(open_at) if open_at else None,
        "overdue_serious_events": len(overdue),
        "failed_notifications": failed,
        "waiting_notifications": waiting,
        "warnings": warnings,
    }


def notifications(
    session: Session, study: Study, actor: Actor, *, status: str | None, limit: int, after: int | None
) -> list[dict[str, Any]]:
    """The study's safety messages (the actor's sites), newest first."""
    from api.auth.models import User

    stmt = (
        select(StaffNotification, User.email, Site.code)
        .join(User, User.id == StaffNotification.user_id)
        .outerjoin(Site, Site.id == StaffNotification.site_id)
        .where(StaffNotification.study_id == study.id)
    )
    if actor.role == "coordinator":
        stmt = stmt.where(StaffNotification.site_id.in_(actor.site_ids or {-1}))
    if status is not None:
        stmt = stmt.where(StaffNotification.status == status)
    if after is not None:
        stmt = stmt.where(StaffNotification.id < after)
    rows = session.exec(stmt.order_by(StaffNotification.id.desc()).limit(limit)).all()
    return [
        {
            "id": n.id,
            "kind": n.kind,
            "ref": f"{n.ref_entity}:{n.ref_id}",
            "site": site,
            "recipient": {"id": n.user_id, "email": email},
            "subject": n.subject,
            "status": n.status,
            "attempts": n.attempts,
            "due_at": n.due_at,
            "retry_at": n.retry_at,
            "last_error": n.last_error,
            "cancel_reason": n.cancel_reason,
            "message_id": n.message_id,
            "sent_at": n.sent_at,
        }
        for n, email, site in rows
    ]
