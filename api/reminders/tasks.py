"""Coordinator tasks: instruments of an open wave that staff, not the participant, must collect.

An instrument the wave has staff administer (``wave.staff_instruments``: an interview, a clinical
rating) or one the participant form cannot show (licensed wording not loaded: PAM-13, HLS-EU-Q16/Q6
until a licensee uploads it) is administered by staff — in person, by phone or on paper with the
licensed copy — and entered through the REST API. Such instruments never keep reminders going
(:func:`api.reminders.planner.form_scope`); they are listed here instead.
"""

from __future__ import annotations

from datetime import date

from sqlmodel import Session, select

from api.auth import policy
from api.db import utcnow
from api.participants.corrections import follows_up
from api.participants.models import Participant
from api.participants.service import local_date, window
from api.reminders.schemas import TaskRead
from api.responses.models import Response
from api.studies.models import Site, Study, Wave


def coordinator_tasks(
    session: Session,
    study: Study,
    actor,
    *,
    state: str = "open",
    site: str | None = None,
    today: date | None = None,
    limit: int = 500,
) -> list[TaskRead]:
    """Pending staff-administered instruments of waves whose window is open (or closed), site-scoped.

    Participants who stopped follow-up, withdrew consent, were voided or are not ``active`` have no tasks.
    """
    from api.links.service import offer_in
    from api.reminders.planner import not_on_form

    today = today or local_date(study, utcnow())
    waves = list(session.exec(select(Wave).where(Wave.study_id == study.id).order_by(Wave.offset_days, Wave.id)))
    staff_waves = [(w, not_on_form(w)) for w in waves]
    staff_waves = [(w, codes) for w, codes in staff_waves if codes]
    if not staff_waves:
        return []
    sites = {s.id: s.code for s in session.exec(select(Site).where(Site.study_id == study.id))}
    stmt = select(Participant).where(Participant.study_id == study.id, Participant.status == "active")
    if policy.site_scoped(actor):
        stmt = stmt.where(Participant.site_id.in_(actor.site_ids or [-1]))
    if site is not None:
        stmt = stmt.where(Participant.site_id.in_([i for i, c in sites.items() if c == site] or [-1]))
    people = [p for p in session.exec(stmt.order_by(Participant.id)).all() if follows_up(p)]
    done: set[tuple[int, int, str]] = set()
    if people:
        done = set(
            session.exec(
                select(Response.participant_id, Response.wave_id, Response.instrument).where(
                    Response.participant_id.in_([p.id for p in people])
                )
            ).all()
        )
    out: list[TaskRead] = []
    for p in people:
        for w, codes in staff_waves:
            due, opens, closes, _, _ = window(study, p, w)
            if today < opens:
                continue
            here = "open" if today <= closes else "closed"
            if here != state:
                continue
            for code in codes:
                if (p.id, w.id, code) in done:
                    continue
                out.append(
                    TaskRead(
                        participant_id=p.id,
                        study_code=p.study_code,
                        site=sites.get(p.site_id, "?"),
                        wave=w.code,
                        instrument=code,
                        reason=offer_in(w, code)[1] or "administered by staff",
                        due_on=due,
                        window_opens_on=opens,
                        window_closes_on=closes,
                        state=here,
                    )
                )
                if len(out) >= limit:
                    return out
    return out
