"""Who is told about an alert or a serious adverse event, and what the message says.

Recipients, in order of preference: the site's safety contacts; without any, the study's principal
investigator; without a PI, every active administrator. A safety message is never dropped for want
of a contact: the fallback is logged as a warning and shown by ``GET /studies/{id}/safety/status``.

Messages carry no clinical content (no instrument, answer, score or diagnosis) in the subject or
the body, and no identifier beyond the participant's pseudonymous study code and a link to the
record, which shows the details to signed-in staff only. ``{base_url}`` in a body is filled in by
the dispatcher when the message is sent.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, or_
from sqlmodel import Session, select

from api.auth.models import User, UserSite
from api.reminders import staff
from api.safety.models import AdverseEvent, SafetyAlert, SafetyContact, SafetySettings
from api.studies.models import Site, Study

log = logging.getLogger("peerlens.safety")


def site_contacts(session: Session, site_id: int) -> list[int]:
    """Users named as safety contacts of the site who are active and still cover it (admins, or
    coordinators of the site: a coordinator moved to another site stops receiving its alerts)."""
    covers = or_(
        User.role == "admin",
        and_(
            User.role == "coordinator",
            exists().where(UserSite.user_id == User.id, UserSite.site_id == site_id),
        ),
    )
    return list(
        session.exec(
            select(User.id)
            .join(SafetyContact, SafetyContact.user_id == User.id)
            .where(SafetyContact.site_id == site_id, User.active, covers)
            .order_by(User.id)
        ).all()
    )


def active_pi(session: Session, settings: SafetySettings | None) -> int | None:
    if settings is None or settings.pi_user_id is None:
        return None
    user = session.get(User, settings.pi_user_id)
    return user.id if user is not None and user.active else None


def admins(session: Session) -> list[int]:
    return list(session.exec(select(User.id).where(User.role == "admin", User.active).order_by(User.id)).all())


def first_recipients(session: Session, settings: SafetySettings | None, site_id: int) -> tuple[list[int], str]:
    """Who is told when an alert is raised, and which rung of the fallback that was."""
    contacts = site_contacts(session, site_id)
    if contacts:
        return contacts, "site_contacts"
    pi = active_pi(session, settings)
    if pi is not None:
        return [pi], "pi"
    found = admins(session)
    return (found, "admins") if found else ([], "nobody")


def escalation_recipients(session: Session, settings: SafetySettings | None, level: int) -> list[int]:
    """Level 1: the PI (every admin when there is none); level 2 and later: the PI and every admin."""
    pi = active_pi(session, settings)
    if level <= 1 and pi is not None:
        return [pi]
    return ([pi] if pi is not None else []) + [a for a in admins(session) if a != pi]


def serious_event_recipients(session: Session, settings: SafetySettings | None, site_id: int) -> list[int]:
    """The PI and the site's contacts at once; every admin when there is neither."""
    pi = active_pi(session, settings)
    people = ([pi] if pi is not None else []) + [c for c in site_contacts(session, site_id) if c != pi]
    return people or admins(session)


def _local(study: Study, at: datetime) -> str:
    return f"{at.astimezone(ZoneInfo(study.time_zone)):%Y-%m-%d %H:%M} ({study.time_zone})"


def _code_and_site(session: Session, participant_id: int, site_id: int) -> tuple[str, str]:
    from api.participants.models import Participant

    p = session.get(Participant, participant_id)
    site = session.get(Site, site_id)
    if p is None or site is None:  # both referenced by foreign keys
        raise LookupError(f"participant {participant_id} or site {site_id} is missing")
    return p.study_code, site.code


def alert_raised(
    session: Session, alert: SafetyAlert, study: Study, recipients: list[int], deadline: datetime
) -> list[int]:
    code, site = _code_and_site(session, alert.participant_id, alert.site_id)
    body = (
        f"A safety alert was raised in the study \u201c{study.title}\u201d.\n\n"
        f"Participant: {code} (site {site})\n"
        f"Raised: {_local(study, alert.raised_at)}\n"
        f"Acknowledge by: {_local(study, deadline)} - after that it is escalated to the principal investigator.\n\n"
        f"Open the alert (signed-in study staff only): {{base_url}}/alerts/{alert.id}\n\n"
        "Follow the study's safety protocol. If you cannot act on it, make sure another member of the "
        "team does.\n"
    )
    return staff.enqueue(
        session,
        study_id=alert.study_id,
        site_id=alert.site_id,
        user_ids=recipients,
        kind="alert_raised",
        topic=f"alert:{alert.id}:raised",
        ref=("safety_alert", alert.id),
        subject=f"Peerlens: safety alert #{alert.id} needs acknowledgement",
        body=body,
        now=alert.raised_at,
    )


def alert_escalated(
    session: Session, alert: SafetyAlert, study: Study, recipients: list[int], level: int, now: datetime
) -> list[int]:
    code, site = _code_and_site(session, alert.participant_id, alert.site_id)
    waited = (now - alert.raised_at) / timedelta(hours=1)
    who = "principal investigator" if level == 1 else "principal investigator and administrators"
    body = (
        f"A safety alert in the study \u201c{study.title}\u201d has not been acknowledged "
        f"{waited:.0f} hours after it was raised. You receive this as the study's {who} "
        f"(escalation {level}).\n\n"
        f"Participant: {code} (site {site})\n"
        f"Raised: {_local(study, alert.raised_at)}\n\n"
        f"Open the alert (signed-in study staff only): {{base_url}}/alerts/{alert.id}\n\n"
        "Please make sure someone acknowledges it and acts on it. Until then it is escalated again "
        "at the same interval.\n"
    )
    return staff.enqueue(
        session,
        study_id=alert.study_id,
        site_id=alert.site_id,
        user_ids=recipients,
        kind="alert_escalated",
        topic=f"alert:{alert.id}:escalation:{level}",
        ref=("safety_alert", alert.id),
        subject=f"Peerlens: safety alert #{alert.id} not acknowledged (escalation {level})",
        body=body,
        now=now,
    )


def serious_event(
    session: Session, event: AdverseEvent, study: Study, recipients: list[int], due: datetime, now: datetime
) -> list[int]:
    code, site = _code_and_site(session, event.participant_id, event.site_id)
    body = (
        f"A serious adverse event was reported in the study \u201c{study.title}\u201d.\n\n"
        f"Participant: {code} (site {site})\n"
        f"Reported: {_local(study, event.reported_at)}\n"
        f"Follow-up due by: {_local(study, due)}\n\n"
        f"Open the event (signed-in study staff only): {{base_url}}/adverse-events/{event.id}\n\n"
        "Reporting obligations to sponsor and ethics committee follow the study protocol.\n"
    )
    return staff.enqueue(
        session,
        study_id=event.study_id,
        site_id=event.site_id,
        user_ids=recipients,
        kind="sae_reported",
        topic=f"adverse_event:{event.id}:serious",
        ref=("adverse_event", event.id),
        subject=f"Peerlens: serious adverse event #{event.id} reported",
        body=body,
        now=now,
    )


def follow_up_overdue(
    session: Session, event: AdverseEvent, study: Study, recipients: list[int], due: datetime, now: datetime
) -> list[int]:
    code, site = _code_and_site(session, event.participant_id, event.site_id)
    body = (
        f"The follow-up of a serious adverse event in the study \u201c{study.title}\u201d was due on "
        f"{_local(study, due)} and has not been recorded.\n\n"
        f"Participant: {code} (site {site})\n\n"
        f"Open the event (signed-in study staff only): {{base_url}}/adverse-events/{event.id}\n"
    )
    return staff.enqueue(
        session,
        study_id=event.study_id,
        site_id=event.site_id,
        user_ids=recipients,
        kind="sae_overdue",
        topic=f"adverse_event:{event.id}:overdue:{due:%Y%m%dT%H%M}",
        ref=("adverse_event", event.id),
        subject=f"Peerlens: follow-up of serious adverse event #{event.id} is overdue",
        body=body,
        now=now,
    )
