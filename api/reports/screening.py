"""The screening log: record and list people assessed for eligibility, and count them for CONSORT.

Services flush; the caller commits. Coordinators record and read their own sites' screening;
analysts read it without dates.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import or_
from sqlmodel import Session, select

from api.audit.service import record, snapshot
from api.auth.policy import deidentified, ensure_can_write, ensure_site_access, sees_site
from api.auth.service import Actor
from api.errors import Conflict, Unprocessable
from api.participants.models import Participant
from api.reports.models import ScreeningEntry
from api.reports.schemas import ScreeningIn, ScreeningRead, ScreeningSummary
from api.studies import dates
from api.studies.models import Site, Study


def add(session: Session, study: Study, body: ScreeningIn, actor: Actor) -> ScreeningEntry:
    """Record one screening; 422 naming the field for an unknown site or participant, a missing or
    needless participant link, or a screening date after the enrolment; 409 when the participant is
    already linked to another screening."""
    ensure_can_write(actor)
    site = session.exec(select(Site).where(Site.study_id == study.id, Site.code == body.site)).first()
    if site is None:
        raise Unprocessable(["body", "site"], "no site with this code in the study", "unknown_site")
    ensure_site_access(actor, site.id, loc=("body", "site"), what="site")
    dates.check(study, {("body", "screened_on"): body.screened_on})
    if body.outcome == "enrolled" and body.participant_id is None:
        raise Unprocessable(
            ["body", "participant_id"], "an enrolled screening must name the enrolled participant", "missing"
        )
    if body.outcome != "enrolled" and body.participant_id is not None:
        raise Unprocessable(
            ["body", "participant_id"], "only an enrolled screening links to a participant", "not_enrolled"
        )
    if body.outcome != "enrolled" and body.reason is None:
        raise Unprocessable(["body", "reason"], "say why the person was not enrolled", "missing")
    if body.participant_id is not None:
        p = session.get(Participant, body.participant_id)
        if p is None or p.study_id != study.id or not sees_site(actor, p.site_id):
            raise Unprocessable(["body", "participant_id"], "no such participant in the study", "unknown_participant")
        if p.site_id != site.id:
            raise Unprocessable(["body", "site"], "the participant is enrolled at another site", "site_mismatch")
        if body.screened_on > p.enrolled_on:
            raise Unprocessable(
                ["body", "screened_on"], "screening must come on or before the enrolment", "screened_after_enrolment"
            )
        taken = session.exec(select(ScreeningEntry.id).where(ScreeningEntry.participant_id == p.id)).first()
        if taken is not None:
            raise Conflict(["body", "participant_id"], "this participant already has a screening entry", "duplicate")
    entry = ScreeningEntry(
        study_id=study.id,
        site_id=site.id,
        screened_on=body.screened_on,
        outcome=body.outcome,
        reason=body.reason,
        participant_id=body.participant_id,
    )
    session.add(entry)
    session.flush()
    record(
        session, actor, "create", "screening_entry", entry.id, study_id=study.id, site_id=site.id, after=snapshot(entry)
    )
    return entry


def entries(session: Session, study: Study, actor: Actor, sites: list[int] | None = None) -> list[ScreeningEntry]:
    """The study's screening entries the actor may see (of ``sites`` when given), oldest first.

    An entry linked to a participant entered in error (voided) is left out with them: in no list or count.
    """
    voided = select(Participant.id).where(Participant.study_id == study.id, Participant.voided_at.is_not(None))
    q = (
        select(ScreeningEntry)
        .where(
            ScreeningEntry.study_id == study.id,
            or_(ScreeningEntry.participant_id.is_(None), ScreeningEntry.participant_id.not_in(voided)),
        )
        .order_by(ScreeningEntry.id)
    )
    if sites is not None:
        q = q.where(ScreeningEntry.site_id.in_(sites))
    return [e for e in session.exec(q).all() if sees_site(actor, e.site_id)]


def to_read(session: Session, study: Study, rows: list[ScreeningEntry], actor: Actor) -> list[ScreeningRead]:
    codes = dict(session.exec(select(Site.id, Site.code).where(Site.study_id == study.id)).all())
    pids = [e.participant_id for e in rows if e.participant_id is not None]
    study_codes = (
        dict(session.exec(select(Participant.id, Participant.study_code).where(Participant.id.in_(pids))).all())
        if pids
        else {}
    )
    hide = deidentified(actor)
    return [
        ScreeningRead(
            id=e.id,
            site=codes[e.site_id],
            screened_on=None if hide else e.screened_on,
            outcome=e.outcome,
            reason=e.reason,
            participant=study_codes.get(e.participant_id) if e.participant_id else None,
        )
        for e in rows
    ]


def summarise(rows: list[ScreeningEntry]) -> ScreeningSummary:
    """Assessed, enrolled, excluded by outcome and by reason within outcome."""
    excluded = Counter(e.outcome for e in rows if e.outcome != "enrolled")
    reasons: dict[str, Counter] = {}
    for e in rows:
        if e.outcome != "enrolled":
            reasons.setdefault(e.outcome, Counter())[e.reason or "not stated"] += 1
    return ScreeningSummary(
        assessed=len(rows),
        enrolled=sum(e.outcome == "enrolled" for e in rows),
        excluded=dict(excluded),
        reasons={k: dict(v.most_common()) for k, v in reasons.items()},
    )
