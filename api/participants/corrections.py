"""Audited corrections of enrolment, the three kinds of withdrawal, and voiding ("entered in error"),
and taking back a withdrawal or a void that was itself recorded in error.

Every change takes a reason and writes one audit event with the fields before and after. Nothing is
deleted: a voided participant keeps their rows and their audit trail, and is left out of exports,
analyses, reminders, links and the participant flow; a participant who withdrew consent for use of
their data is counted in the flow but left out of exports and analyses.
"""

from __future__ import annotations

from datetime import date

from sqlmodel import Session, select

from api.audit.service import record
from api.auth.policy import ensure_can_write, ensure_site_access
from api.auth.service import Actor
from api.db import utcnow
from api.errors import Conflict, Unprocessable
from api.participants.models import WITHDRAWAL_KINDS, Participant
from api.studies import dates as study_dates
from api.studies.models import Site, Study

CORRECTABLE = ("enrolled_on", "site", "consent_date", "consent_version")


def uses_data(p: Participant) -> bool:
    """Whether the participant's data may be exported and analysed (not voided, consent not withdrawn)."""
    return p.voided_at is None and p.consent_withdrawn_on is None


def follows_up(p: Participant) -> bool:
    """Whether the participant is still asked for data (reminders, links, new responses)."""
    return uses_data(p) and p.follow_up_stopped_on is None


def _guard(session: Session, p: Participant, actor: Actor) -> None:
    ensure_can_write(actor)
    ensure_site_access(actor, p.site_id, loc=("path", "participant_id"), what="participant")
    if p.voided_at is not None:
        raise Conflict(["path", "participant_id"], "the participant was voided (entered in error)", "voided")


def _dates_after(p: Participant) -> list[tuple[str, date]]:
    out = [("status_date", p.status_date)] + [
        (f"{prefix}_on", getattr(p, f"{prefix}_on")) for prefix in WITHDRAWAL_KINDS.values()
    ]
    return [(k, v) for k, v in out if v is not None]


def correct(session: Session, p: Participant, changes: dict, reason: str, actor: Actor) -> Participant:
    """Correct enrolment fields (``enrolled_on``, ``site`` code, ``consent_date``, ``consent_version``).

    Only fields that differ are changed; the audit event (action ``correct``) holds their values
    before and after and the reason. A coordinator must cover both the old and the new site.
    """
    _guard(session, p, actor)
    new: dict = {}
    for field, value in changes.items():
        if value is None:
            continue
        if field == "site":
            site = session.exec(select(Site).where(Site.study_id == p.study_id, Site.code == value)).first()
            if site is None:
                raise Unprocessable(["body", "site"], "no site with this code in the study", "unknown_site")
            ensure_site_access(actor, site.id, loc=("body", "site"), what="site")
            if site.id != p.site_id:
                new["site_id"] = site.id
        elif getattr(p, field) != value:
            new[field] = value
    if not new:
        raise Unprocessable(["body"], "nothing to correct: every value equals the stored one", "no_change")
    # the study's plausible-date window (not before its start minus the margin, not in the future)
    study_dates.check(
        session.get(Study, p.study_id),
        {("body", f): new.get(f) for f in ("enrolled_on", "consent_date")},
    )
    enrolled = new.get("enrolled_on", p.enrolled_on)
    if new.get("consent_date", p.consent_date) > enrolled:
        loc = "consent_date" if "consent_date" in new else "enrolled_on"
        raise Unprocessable(["body", loc], "consent must be given on or before enrolment", "consent_after_enrolment")
    for field, when in _dates_after(p):
        if when < enrolled:
            raise Unprocessable(
                ["body", "enrolled_on"],
                f"the participant's {field} ({when}) would fall before enrolment",
                "before_enrolment",
            )
    before = {k: _plain(getattr(p, k)) for k in new}
    for k, v in new.items():
        setattr(p, k, v)
    p.updated_at = utcnow()
    session.add(p)
    session.flush()
    record(
        session,
        actor,
        "correct",
        "participant",
        p.id,
        study_id=p.study_id,
        site_id=p.site_id,
        before=before,
        after={k: _plain(v) for k, v in new.items()},
        reason=reason,
    )
    return p


def _plain(v):
    return v.isoformat() if isinstance(v, date) else v


def void(session: Session, p: Participant, reason: str, actor: Actor) -> Participant:
    """Mark a participant as entered in error (a duplicate, an enrolment that never happened).

    The rows stay, so the audit trail stays whole; pending reminders are cancelled by the next
    planning run and at dispatch, links stop opening, and exports, analyses and the participant
    flow leave the participant out.
    """
    _guard(session, p, actor)
    p.voided_at = utcnow()
    p.void_reason = reason
    p.updated_at = p.voided_at
    session.add(p)
    session.flush()
    record(
        session,
        actor,
        "void",
        "participant",
        p.id,
        study_id=p.study_id,
        site_id=p.site_id,
        before={"voided_at": None},
        after={"voided_at": p.voided_at.isoformat()},
        reason=reason,
    )
    _cancel_reminders(session, p, actor)
    return p


def withdraw(session: Session, p: Participant, kind: str, on: date, reason: str, actor: Actor) -> Participant:
    """Record one kind of withdrawal (``intervention``, ``follow_up`` or ``consent``) with date and reason.

    More than one kind can apply, each recorded once. Stopping follow-up or withdrawing consent also
    sets ``status`` to ``withdrawn`` (kept for clients of the single status) and stops reminders.
    """
    _guard(session, p, actor)
    prefix = WITHDRAWAL_KINDS[kind]
    if getattr(p, f"{prefix}_on") is not None:
        raise Conflict(
            ["body", "kind"], f"{kind} withdrawal already recorded on {getattr(p, f'{prefix}_on')}", "duplicate"
        )
    if on < p.enrolled_on:
        raise Unprocessable(["body", "date"], "withdrawal date is before enrolment", "before_enrolment")
    study_dates.check(session.get(Study, p.study_id), {("body", "date"): on})
    before = {f"{prefix}_on": None, "status": p.status}
    setattr(p, f"{prefix}_on", on)
    setattr(p, f"{prefix}_reason", reason)
    if kind in ("follow_up", "consent") and p.status == "active":
        p.status, p.status_date, p.status_reason = "withdrawn", on, reason
    p.updated_at = utcnow()
    session.add(p)
    session.flush()
    record(
        session,
        actor,
        "withdraw",
        "participant",
        p.id,
        study_id=p.study_id,
        site_id=p.site_id,
        before=before,
        after={"kind": kind, f"{prefix}_on": on.isoformat(), "status": p.status},
        reason=reason,
    )
    if kind != "intervention":
        _cancel_reminders(session, p, actor)
    return p


def retract_withdrawal(session: Session, p: Participant, kind: str, reason: str, actor: Actor) -> Participant:
    """Take back a withdrawal recorded in error (the wrong participant, a misunderstanding).

    The withdrawal's date and reason are cleared (the audit trail keeps them, with this reason); the
    status returns to ``active`` when this withdrawal set it and no other withdrawal of follow-up or
    consent remains; reminders it cancelled whose window is still open are pending again.
    """
    _guard(session, p, actor)
    prefix = WITHDRAWAL_KINDS[kind]
    on, why = getattr(p, f"{prefix}_on"), getattr(p, f"{prefix}_reason")
    if on is None:
        raise Conflict(["path", "kind"], f"no {kind} withdrawal is recorded for this participant", "not_recorded")
    before = {f"{prefix}_on": on.isoformat(), f"{prefix}_reason": why, "status": p.status}
    setattr(p, f"{prefix}_on", None)
    setattr(p, f"{prefix}_reason", None)
    set_by_this = p.status == "withdrawn" and p.status_date == on and p.status_reason == why
    if kind != "intervention" and set_by_this and p.follow_up_stopped_on is None and p.consent_withdrawn_on is None:
        p.status, p.status_date, p.status_reason = "active", None, None
    p.updated_at = utcnow()
    session.add(p)
    session.flush()
    record(
        session,
        actor,
        "retract_withdrawal",
        "participant",
        p.id,
        study_id=p.study_id,
        site_id=p.site_id,
        before=before,
        after={"kind": kind, f"{prefix}_on": None, "status": p.status},
        reason=reason,
    )
    if kind != "intervention":
        _restore_reminders(session, p, actor, ("follow_up_stopped", "consent_withdrawn", "participant_withdrawn"))
    return p


def restore(session: Session, p: Participant, reason: str, actor: Actor) -> Participant:
    """Undo a void recorded in error: the participant is back in exports, analyses, links and the flow."""
    ensure_can_write(actor)
    ensure_site_access(actor, p.site_id, loc=("path", "participant_id"), what="participant")
    if p.voided_at is None:
        raise Conflict(["path", "participant_id"], "the participant is not voided", "not_voided")
    before = {"voided_at": p.voided_at.isoformat(), "void_reason": p.void_reason}
    p.voided_at, p.void_reason = None, None
    p.updated_at = utcnow()
    session.add(p)
    session.flush()
    record(
        session,
        actor,
        "restore",
        "participant",
        p.id,
        study_id=p.study_id,
        site_id=p.site_id,
        before=before,
        after={"voided_at": None},
        reason=reason,
    )
    _restore_reminders(session, p, actor, ("participant_voided",))
    return p


def _restore_reminders(session: Session, p: Participant, actor: Actor, reasons: tuple[str, ...]) -> None:
    from api.reminders.planner import restore_cancelled

    restore_cancelled(session, utcnow(), participant_id=p.id, reasons=reasons, actor=actor)


def _cancel_reminders(session: Session, p: Participant, actor: Actor) -> None:
    from api.reminders.planner import cancel_ineligible

    cancel_ineligible(
        session,
        utcnow(),
        scope="reminder.participant_id = :pid AND reminder.status = 'pending'",
        params={"pid": p.id},
        actor=actor,
    )
