"""Reading stored responses: lists, and the read model with scores, ``days`` and de-identification.

Examples
--------
>>> rows = to_read(session, list_responses(session, participant))  # doctest: +SKIP
>>> [r.wave for r in rows]  # doctest: +SKIP
['baseline', 'm3']
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

import instruments
from api.auth.service import Actor
from api.exports.deid import DatePolicy, Deidentification
from api.participants.models import Participant
from api.responses.models import Response, Score
from api.responses.schemas import ResponseRead, ScoreRead
from api.studies.models import Study, Wave
from instruments.model import InstrumentError


def list_responses(
    session: Session, participant: Participant, *, wave: str | None = None, instrument: str | None = None
) -> list[Response]:
    stmt = select(Response).where(Response.participant_id == participant.id)
    if wave is not None:
        stmt = stmt.join(Wave, Wave.id == Response.wave_id).where(Wave.code == wave)
    if instrument is not None:
        stmt = stmt.where(Response.instrument == instrument)
    return list(session.exec(stmt.order_by(Response.id)).all())


def to_read(
    session: Session,
    responses: Iterable[Response],
    wave_codes: dict[int, str] | None = None,
    actor: Actor | None = None,
    secret: str = "",
) -> list[ResponseRead]:
    """Read models with wave codes, scores and ``days`` (since enrolment, study-local dates).

    With ``actor``, what a reader who may not see the participant's identifiers (analysts) gets
    follows the exports' de-identification (:class:`api.exports.deid.Deidentification`): items
    flagged as identifiers and flagged free text are left out, and dates are removed or shifted
    (keyed by ``secret``) as the study's export settings say.
    """
    responses = list(responses)
    if not responses:
        return []
    attached = all(getattr(r, "score_rows", None) is not None for r in responses)
    if wave_codes is None and all(getattr(r, "wave_code", None) for r in responses):
        wave_codes = {r.wave_id: r.wave_code for r in responses}
    if wave_codes is None:
        ids = {r.wave_id for r in responses}
        wave_codes = dict(session.exec(select(Wave.id, Wave.code).where(Wave.id.in_(ids))).all())
    by_response: dict[int, list[ScoreRead]] = {}
    rows = (
        [s for r in responses for s in r.score_rows]
        if attached
        else session.exec(
            select(Score).where(Score.response_id.in_([r.id for r in responses])).order_by(Score.id)
        ).all()
    )
    for s in rows:
        by_response.setdefault(s.response_id, []).append(
            ScoreRead(
                scale=s.scale,
                value=s.value,
                band=s.band,
                level=s.level,
                items_answered=s.items_answered,
                items_expected=s.items_expected,
                prorated=s.prorated,
                missing_reason=s.missing_reason,
                flags=list(s.flags or []),
            )
        )
    enrolment = {r.participant_id: r.enrolment for r in responses if getattr(r, "enrolment", None)}
    missing = {r.participant_id for r in responses} - set(enrolment)
    if missing:
        enrolment.update(
            (pid, (enrolled, tz))
            for pid, enrolled, tz in session.exec(
                select(Participant.id, Participant.enrolled_on, Study.time_zone)
                .join(Study, Study.id == Participant.study_id)
                .where(Participant.id.in_(missing))
            ).all()
        )
    # One policy per study for readers who may not see identifiers (analysts); staff see it all.
    masked = {r.study_id for r in responses if actor is not None and not actor.sees_contacts(r.site_id)}
    policies = {sid: Deidentification.for_reader(session, sid, actor, secret=secret) for sid in sorted(masked)}
    calendar = DatePolicy("calendar")

    def answers(r: Response, policy: Deidentification | None) -> dict[str, Any]:
        if policy is None:
            return r.answers
        try:
            kinds = {it.code: it.kind for it in instruments.get(r.instrument).items}
        except InstrumentError:
            kinds = {}
        out = {}
        for k, v in r.answers.items():
            if policy.withheld(r.instrument, k) or k not in kinds:
                continue  # an item the definition does not know cannot be vetted (as in exports)
            if kinds[k] in ("date", "datetime") and v is not None and policy.dates.deidentified:
                num, text = policy.dates.answer(kinds[k], v, enrolment[r.participant_id][0], r.participant_id)
                v = num if num is not None else text
            out[k] = v
        return out

    def days(r: Response) -> int | None:
        enrolled, tz = enrolment.get(r.participant_id, (None, None))
        if enrolled is None:
            return None
        return (r.completed_at.astimezone(ZoneInfo(tz)).date() - enrolled).days

    out = []
    for r in responses:
        policy = policies.get(r.study_id) if r.study_id in masked else None
        dates = policy.dates if policy is not None else calendar
        out.append(
            ResponseRead(
                id=r.id,
                participant_id=r.participant_id,
                wave=wave_codes.get(r.wave_id, "?"),
                instrument=r.instrument,
                instrument_version=r.instrument_version,
                answers=answers(r, policy),
                external_scores=r.external_scores,
                completed_at=dates.moment(r.completed_at, r.participant_id),
                days=days(r),
                mode=r.mode,
                entered_by=r.entered_by,
                out_of_window=r.out_of_window,
                version=r.version,
                status=r.status,
                created_at=dates.moment(r.created_at, r.participant_id),
                updated_at=dates.moment(r.updated_at, r.participant_id),
                dates=dates.mode,
                scores=by_response.get(r.id, []),
            )
        )
    return out
