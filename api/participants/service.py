"""Enrolment, randomisation, status changes, contacts and schedules.

Services flush and leave the commit to the caller, so one HTTP request (or one imported row) is
one transaction with its audit events.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlmodel import Session, select

from api.audit.service import record, snapshot
from api.auth import policy
from api.auth.policy import ensure_can_write, ensure_site_access
from api.auth.service import Actor
from api.db import utcnow
from api.errors import Conflict, NotFound, Unprocessable
from api.exports.deid import DatePolicy, Deidentification
from api.participants import randomisation
from api.participants.models import (
    WITHDRAWAL_KINDS,
    Allocation,
    AllocationStratum,
    Participant,
    ParticipantContact,
)
from api.participants.schemas import (
    AllocationRead,
    AllocationReport,
    Consent,
    ConsentRead,
    ContactIn,
    ContactPatch,
    ContactRead,
    InstrumentState,
    ParticipantRead,
    WaveStatus,
    WithdrawalRead,
)
from api.studies import dates
from api.studies.models import Arm, Site, Study, Wave

CONTACT_FIELDS = ("name", "email", "phone", "date_of_birth", "preferred_channel", "opt_out")
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: codes are read aloud on the phone


def _new_code() -> str:
    return "P-" + "".join(secrets.choice(_CODE_ALPHABET) for _ in range(6))


def _study(session: Session, participant: Participant) -> Study:
    study = session.get(Study, participant.study_id)
    assert study is not None
    return study


def get_participant(session: Session, participant_id: int, actor: Actor) -> Participant:
    """A participant the actor may see, else 404."""
    p = session.get(Participant, participant_id)
    ensure_visible(actor, p)
    assert p is not None
    return p


def ensure_visible(actor: Actor, p: Visible | None) -> None:
    """404 unless ``p`` exists and ``actor`` may see it (its site; for analysts, not voided and
    consent not withdrawn). ``p`` is a participant or any row with those attributes."""
    if p is None:
        raise NotFound(["path", "participant_id"], "participant not found")
    ensure_site_access(actor, p.site_id, loc=("path", "participant_id"), what="participant")
    if policy.deidentified(actor) and (p.voided_at is not None or p.consent_withdrawn_on is not None):
        raise NotFound(["path", "participant_id"], "participant not found")  # no data of theirs for analysts


class Visible(Protocol):
    """What :func:`ensure_visible` reads of a participant."""

    @property
    def site_id(self) -> int: ...
    @property
    def voided_at(self) -> datetime | None: ...
    @property
    def consent_withdrawn_on(self) -> date | None: ...


def enrol(
    session: Session,
    *,
    study: Study,
    site_code: str,
    enrolled_on: date,
    consent_date: date,
    consent_version: str,
    actor: Actor,
    arm_code: str | None = None,
    study_code: str | None = None,
    contact: ContactIn | dict | None = None,
) -> Participant:
    """Enrol a participant; without ``arm_code`` the participant is randomised.

    Randomisation locks the site's stratum row (``UPDATE … RETURNING`` takes the row lock on
    PostgreSQL and the database lock on SQLite) so parallel enrolments at one site draw
    consecutive slots of the sequence.

    Parameters
    ----------
    study : Study
    site_code, arm_code : str
        Codes within the study; an unknown one is a 422 naming ``site`` or ``arm``.
    contact : ContactIn or dict, optional
        Identifiers, stored in ``participant_contact``; audited by field name only.

    Examples
    --------
    >>> p = enrol(session, study=study, site_code="north", enrolled_on=date(2026, 1, 5),
    ...           consent_date=date(2026, 1, 5), consent_version="v2", actor=actor)  # doctest: +SKIP
    >>> p.randomised  # doctest: +SKIP
    True
    """
    ensure_can_write(actor)
    site = session.exec(select(Site).where(Site.study_id == study.id, Site.code == site_code)).first()
    if site is None:
        raise Unprocessable(["body", "site"], "no site with this code in the study", "unknown_site")
    ensure_site_access(actor, site.id, loc=("body", "site"), what="site")
    dates.check(study, {("body", "enrolled_on"): enrolled_on, ("body", "consent", "date"): consent_date})
    if consent_date > enrolled_on:
        raise Unprocessable(
            ["body", "consent", "date"], "consent must be given on or before enrolment", "consent_after_enrolment"
        )
    arm = None
    if arm_code is not None:
        arm = session.exec(select(Arm).where(Arm.study_id == study.id, Arm.code == arm_code)).first()
        if arm is None:
            raise Unprocessable(["body", "arm"], "no arm with this code in the study", "unknown_arm")
    if study_code is not None:
        taken = session.exec(
            select(Participant.id).where(Participant.study_id == study.id, Participant.study_code == study_code)
        ).first()
        if taken is not None:
            raise Conflict(["body", "study_code"], "study code already used in this study", "duplicate")
    else:
        study_code = _new_code()
        while session.exec(
            select(Participant.id).where(Participant.study_id == study.id, Participant.study_code == study_code)
        ).first():
            study_code = _new_code()

    p = Participant(
        study_id=study.id,
        site_id=site.id,
        arm_id=arm.id if arm else None,
        study_code=study_code,
        enrolled_on=enrolled_on,
        consent_date=consent_date,
        consent_version=consent_version,
    )
    session.add(p)
    session.flush()
    if arm is None:
        _randomise(session, study, site, p)
    record(session, actor, "create", "participant", p.id, study_id=study.id, site_id=site.id, after=snapshot(p))
    if contact is not None:
        data = contact.model_dump() if hasattr(contact, "model_dump") else dict(contact)
        session.add(ParticipantContact(participant_id=p.id, **data))
        record(
            session,
            actor,
            "create",
            "participant_contact",
            p.id,
            study_id=study.id,
            site_id=site.id,
            after={"fields": sorted(k for k, v in data.items() if v is not None)},
        )
    session.flush()
    return p


def _randomise(session: Session, study: Study, site: Site, p: Participant) -> None:
    arms = session.exec(select(Arm.code, Arm.allocation_ratio, Arm.id).where(Arm.study_id == study.id)).all()
    if not arms:
        raise Unprocessable(
            ["body", "arm"], "the study has no arms to randomise to; add arms or give an arm", "no_arms"
        )
    slot = session.exec(
        update(AllocationStratum)
        .where(AllocationStratum.study_id == study.id, AllocationStratum.site_id == site.id)
        .values(allocated=AllocationStratum.allocated + 1)
        .returning(AllocationStratum.id, AllocationStratum.allocated)
    ).first()
    if slot is None:  # a site created outside create_site (e.g. raw import): make its stratum now
        stratum = AllocationStratum(study_id=study.id, site_id=site.id, allocated=1)
        session.add(stratum)
        session.flush()
        slot = (stratum.id, 1)
    stratum_id, allocated = slot
    index = allocated - 1
    code, block, size = randomisation.arm_at(
        study.randomisation_seed, site.code, [(a.code, a.allocation_ratio) for a in arms], index
    )
    arm_id = next(a.id for a in arms if a.code == code)
    p.arm_id = arm_id
    p.randomised = True
    session.add(p)
    session.add(
        Allocation(
            study_id=study.id,
            stratum_id=stratum_id,
            sequence=index,
            block=block,
            block_size=size,
            arm_id=arm_id,
            participant_id=p.id,
        )
    )
    session.flush()


def change_status(
    session: Session,
    participant: Participant,
    *,
    status: str,
    status_date: date | None,
    reason: str | None,
    actor: Actor,
) -> Participant:
    """Set a participant's status (withdrawal keeps everything collected so far)."""
    ensure_can_write(actor)
    ensure_site_access(actor, participant.site_id, loc=("path", "participant_id"), what="participant")
    dates.check(_study(session, participant), {("body", "status_date"): status_date})
    if status_date is not None and status_date < participant.enrolled_on:
        raise Unprocessable(["body", "status_date"], "status date is before enrolment", "before_enrolment")
    before = {k: snapshot(participant)[k] for k in ("status", "status_date", "status_reason")}
    participant.status = status
    participant.status_date = status_date if status != "active" else status_date
    participant.status_reason = reason
    participant.updated_at = utcnow()
    session.add(participant)
    session.flush()
    after = {k: snapshot(participant)[k] for k in ("status", "status_date", "status_reason")}
    record(
        session,
        actor,
        "status_change",
        "participant",
        participant.id,
        study_id=participant.study_id,
        site_id=participant.site_id,
        before=before,
        after=after,
        reason=reason,
    )
    return participant


def update_consent(
    session: Session, participant: Participant, consent: Consent, actor: Actor, reason: str | None = None
) -> Participant:
    ensure_can_write(actor)
    # A later consent (a new version, re-consent) may follow enrolment; it may not precede the study.
    dates.check(_study(session, participant), {("body", "consent", "date"): consent.date})
    before = {"consent_date": participant.consent_date.isoformat(), "consent_version": participant.consent_version}
    participant.consent_date, participant.consent_version = consent.date, consent.version
    participant.updated_at = utcnow()
    session.add(participant)
    record(
        session,
        actor,
        "update",
        "participant",
        participant.id,
        study_id=participant.study_id,
        site_id=participant.site_id,
        before=before,
        after={"consent_date": consent.date.isoformat(), "consent_version": consent.version},
        reason=reason,
    )
    return participant


def update_contact(
    session: Session, participant: Participant, patch: ContactPatch | dict, actor: Actor, reason: str | None = None
) -> ParticipantContact:
    """Change identifiers; the audit event names the fields changed, never their values."""
    ensure_can_write(actor)
    if not actor.sees_contacts(participant.site_id):
        ensure_site_access(actor, -1, loc=("path", "participant_id"), what="participant")
    data = patch.model_dump(exclude_unset=True) if hasattr(patch, "model_dump") else dict(patch)
    contact = session.get(ParticipantContact, participant.id)
    created = contact is None
    if created:
        contact = ParticipantContact(participant_id=participant.id)
    changed = sorted(k for k, v in data.items() if getattr(contact, k) != v or created)
    for k, v in data.items():
        if v is None and k in ("preferred_channel", "opt_out"):
            continue
        setattr(contact, k, v)
    if contact.preferred_channel == "email" and not contact.email:
        raise Unprocessable(
            ["body", "contact", "preferred_channel"],
            "preferred_channel email needs an email",
            "channel_without_address",
        )
    if contact.preferred_channel == "sms" and not contact.phone:
        raise Unprocessable(
            ["body", "contact", "preferred_channel"], "preferred_channel sms needs a phone", "channel_without_address"
        )
    contact.updated_at = utcnow()
    session.add(contact)
    if changed:
        record(
            session,
            actor,
            "create" if created else "update",
            "participant_contact",
            participant.id,
            study_id=participant.study_id,
            site_id=participant.site_id,
            after={"fields": changed},
            reason=reason,
        )
    return contact


def list_participants(
    session: Session,
    study: Study,
    actor: Actor,
    *,
    site: str | None = None,
    status: str | None = None,
    limit: int = 100,
    after: int | None = None,
    include_voided: bool = False,
) -> list[Participant]:
    """Participants of a study in id order (keyset pagination with ``after``); coordinators see their sites."""
    stmt = select(Participant).where(Participant.study_id == study.id)
    if policy.site_scoped(actor):
        stmt = stmt.where(Participant.site_id.in_(actor.site_ids or [-1]))
    if site is not None:
        stmt = stmt.join(Site, Site.id == Participant.site_id).where(Site.code == site)
    if status is not None:
        stmt = stmt.where(Participant.status == status)
    if not include_voided or policy.deidentified(actor):
        stmt = stmt.where(Participant.voided_at.is_(None))
    if policy.deidentified(actor):
        stmt = stmt.where(Participant.consent_withdrawn_on.is_(None))
    if after is not None:
        stmt = stmt.where(Participant.id > after)
    return list(session.exec(stmt.order_by(Participant.id).limit(limit)).all())


def _arm(blind: dict[int, str] | None, arm_id: int | None, codes: dict) -> str | None:
    if not arm_id:
        return None
    return codes.get(arm_id) if blind is None else blind.get(arm_id)


def to_read(
    session: Session, participants: Iterable[Participant], actor: Actor, secret: str = ""
) -> list[ParticipantRead]:
    """Read models with site and arm codes; contacts only where the actor may see identifiers.

    Dates follow the de-identification policy of the exports (:mod:`api.exports.deid`): analysts
    get no calendar date (``relative``) or shifted ones (``shift``, keyed by ``secret``).
    """
    participants = list(participants)
    if not participants:
        return []
    study_ids = {p.study_id for p in participants}
    policies = {sid: DatePolicy.for_reader(session, sid, actor, secret) for sid in study_ids}
    sites = {s.id: s.code for s in session.exec(select(Site).where(Site.study_id.in_(study_ids))).all()}
    arms = {a.id: a.code for a in session.exec(select(Arm).where(Arm.study_id.in_(study_ids))).all()}
    # Blinded analysis: neutral arm labels and no arm id while the reader is blind (api.sap.blinding).
    blind = {sid: Deidentification.arms_for(session, sid, actor) for sid in study_ids}
    visible = [p.id for p in participants if actor.sees_contacts(p.site_id)]
    contacts = {}
    if visible:
        contacts = {
            c.participant_id: c
            for c in session.exec(
                select(ParticipantContact).where(ParticipantContact.participant_id.in_(visible))
            ).all()
        }
    out = []
    for p in participants:
        c = contacts.get(p.id)
        dates = policies[p.study_id]
        out.append(
            ParticipantRead(
                id=p.id,
                study_id=p.study_id,
                study_code=p.study_code,
                site=sites.get(p.site_id, "?"),
                site_id=p.site_id,
                arm=_arm(blind[p.study_id], p.arm_id, arms),
                arm_id=p.arm_id if blind[p.study_id] is None else None,
                randomised=p.randomised,
                enrolled_on=dates.date(p.enrolled_on, p.id),
                consent=ConsentRead(date=dates.date(p.consent_date, p.id), version=p.consent_version),
                status=p.status,
                status_date=dates.date(p.status_date, p.id),
                status_reason=p.status_reason,
                withdrawals=[
                    WithdrawalRead(
                        kind=kind,
                        date=dates.date(getattr(p, f"{prefix}_on"), p.id),
                        reason=getattr(p, f"{prefix}_reason"),
                    )
                    for kind, prefix in WITHDRAWAL_KINDS.items()
                    if getattr(p, f"{prefix}_on") is not None
                ],
                voided=p.voided_at is not None,
                void_reason=p.void_reason,
                created_at=dates.moment(p.created_at, p.id),
                updated_at=dates.moment(p.updated_at, p.id),
                dates=dates.mode,
                contact=ContactRead(**{k: getattr(c, k) for k in CONTACT_FIELDS}) if c is not None else None,
            )
        )
    return out


def window(
    study: dates.Zoned, participant: dates.Enrolled, wave: dates.Windowed
) -> tuple[date, date, date, datetime, datetime]:
    """(due, opens, closes, opens_at UTC, closes_at UTC) of a wave for a participant.

    Dates are calendar dates in the study's time zone; ``closes_at`` is the start of the day after
    ``closes``, so a response at 23:59 local time on the last day is still in the window, whatever
    the daylight-saving offset that day.
    """
    tz = ZoneInfo(study.time_zone)
    # Saturating arithmetic: an implausible date stored before the date policy (e.g. 9999-12-31)
    # gives a window at the end of the calendar, never an OverflowError for the whole request.
    due = dates.add_days(participant.enrolled_on, wave.offset_days)
    opens = dates.add_days(due, -wave.window_before_days)
    closes = dates.add_days(due, wave.window_after_days)
    opens_at = dates.at_midnight(opens, tz)
    closes_at = dates.at_midnight(dates.add_days(closes, 1), tz)
    return due, opens, closes, opens_at, closes_at


def local_date(study: dates.Zoned, moment: datetime) -> date:
    """The calendar date of ``moment`` in the study's time zone."""
    return moment.astimezone(ZoneInfo(study.time_zone)).date()


def schedule(
    session: Session, participant: Participant, today: date | None = None, dates: DatePolicy | None = None
) -> list[WaveStatus]:
    """Every wave of the participant's study with due date, window and completion state.

    ``today`` defaults to the current date in the study's time zone. A wave is *completed* when
    every instrument is, *partial* when some are, otherwise *upcoming*, *open* or *missed* by date.

    Examples
    --------
    >>> [w.state for w in schedule(session, participant, today=date(2026, 3, 1))]  # doctest: +SKIP
    ['completed', 'open', 'upcoming', 'upcoming', 'upcoming']
    """
    from api.responses.models import Response

    study = session.get(Study, participant.study_id)
    dates = dates or DatePolicy("calendar")
    if today is None:
        today = local_date(study, utcnow())
    waves = session.exec(select(Wave).where(Wave.study_id == study.id).order_by(Wave.offset_days, Wave.id)).all()
    done = {
        (r.wave_id, r.instrument): r
        for r in session.exec(select(Response).where(Response.participant_id == participant.id)).all()
    }
    from api.links.service import offer_in  # the links import this module

    out = []
    for w in waves:
        due, opens, closes, opens_at, closes_at = window(study, participant, w)
        states = []
        for code in w.instruments:
            r = done.get((w.id, code))
            states.append(
                InstrumentState(
                    instrument=code,
                    state=("completed" if r.status == "complete" else "partial") if r else "pending",
                    response_id=r.id if r else None,
                    out_of_window=r.out_of_window if r else None,
                    collected_by="participant" if offer_in(w, code)[0] else "staff",
                )
            )
        n_done = sum(s.state == "completed" for s in states)
        if states and n_done == len(states):
            state = "completed"
        elif n_done or any(s.state == "partial" for s in states):
            state = "partial"
        elif today < opens:
            state = "upcoming"
        elif today <= closes:
            state = "open"
        else:
            state = "missed"
        pid = participant.id
        out.append(
            WaveStatus(
                wave=w.code,
                offset_days=w.offset_days,
                due_on=dates.date(due, pid),
                window_opens_on=dates.date(opens, pid),
                window_closes_on=dates.date(closes, pid),
                opens_at=dates.moment(opens_at, pid),
                closes_at=dates.moment(closes_at, pid),
                state=state,
                instruments=states,
                dates=dates.mode,
            )
        )
    return out


def allocation_report(session: Session, study: Study, actor: Actor) -> AllocationReport:
    """The allocations made so far, with blocks (admins only: it reveals the sequence)."""
    rows = session.exec(
        select(Allocation, Site.code, Arm.code, Participant.study_code)
        .join(AllocationStratum, AllocationStratum.id == Allocation.stratum_id)
        .join(Site, Site.id == AllocationStratum.site_id)
        .join(Arm, Arm.id == Allocation.arm_id)
        .join(Participant, Participant.id == Allocation.participant_id)
        .where(Allocation.study_id == study.id)
        .order_by(Site.code, Allocation.sequence)
    ).all()
    return AllocationReport(
        study_id=study.id,
        randomisation_seed=study.randomisation_seed,
        method=randomisation.METHOD,
        allocations=[
            AllocationRead(
                sequence=a.sequence,
                block=a.block,
                block_size=a.block_size,
                site=s,
                arm=arm,
                participant_id=a.participant_id,
                study_code=code,
                allocated_at=a.allocated_at,
            )
            for a, s, arm, code in rows
        ],
    )
