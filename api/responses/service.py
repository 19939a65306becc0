"""Submitting, amending and reading responses.

Scoring is the instrument library's: the service validates the answers against the instrument,
stores them raw with the instrument version, and stores the scores computed at submission.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, delete, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

import instruments
from api.audit.service import record
from api.auth.policy import ensure_can_write, ensure_site_access
from api.auth.service import Actor
from api.db import utcnow
from api.errors import Conflict, Unprocessable, error
from api.exports.deid import DatePolicy, Deidentification
from api.licensed.service import LICENSED_CODES
from api.licensed.service import refresh as refresh_licensed
from api.participants.models import Participant
from api.participants.service import local_date, window
from api.responses.models import MODES, IdempotencyKey, Response, Score
from api.responses.schemas import ResponseRead, ScoreRead
from api.safety.service import raise_alerts
from api.studies import dates
from api.studies.models import Study, Wave
from instruments.model import InstrumentError, ValidationFailed


def _request_hash(
    wave_code: str,
    instrument_code: str,
    answers: Mapping[str, Any],
    external_scores: Mapping[str, Any] | None,
    completed_at: datetime | None,
    amend: bool,
    reason: str | None,
) -> str:
    payload = {
        "w": wave_code,
        "i": instrument_code,
        "a": answers,
        "e": external_scores or {},
        "c": completed_at.isoformat() if completed_at else None,
        "m": amend,
        "r": reason,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _identifier_items(instrument) -> set[str]:
    return {it.code for it in instrument.items if getattr(it, "identifier", False)}


def _audit_view(instrument, answers: Mapping[str, Any]) -> dict[str, Any]:
    # Items flagged as direct identifiers are audited by name only, like contact fields.
    hidden = _identifier_items(instrument)
    return {k: ("<identifier>" if k in hidden and v is not None else v) for k, v in answers.items()}


def _problems_to_errors(problems, external_keys: set[str]) -> list[dict[str, Any]]:
    out = []
    for p in problems:
        field = (
            "external_scores"
            if (p.rule.startswith("external_") or (p.loc in external_keys and p.rule != "unknown_item"))
            else "answers"
        )
        out.append(error(["body", field, p.loc], p.msg, p.rule))
    return out


def submit_response(
    session: Session,
    *,
    participant: Participant,
    wave_code: str,
    instrument_code: str,
    answers: Mapping[str, Any],
    external_scores: Mapping[str, Any] | None = None,
    completed_at: datetime | None = None,
    mode: str = "rest",
    actor: Actor,
    idempotency_key: str | None = None,
    amend: bool = False,
    reason: str | None = None,
) -> Response:
    """Validate, score and store one instrument answered at one wave.

    Parameters
    ----------
    participant : Participant
        Must be visible to ``actor`` and not withdrawn.
    wave_code, instrument_code : str
        The wave must exist in the participant's study and list the instrument.
    answers : mapping
        Item code → value (``None`` = unanswered); checked against the instrument definition.
    external_scores : mapping, optional
        Scores computed elsewhere for scales that accept them (e.g. licensed PAM-13 activation).
    completed_at : datetime, optional
        Timezone-aware; defaults to now. Outside the wave window the response is stored with
        ``out_of_window=True``.
    mode : {"rest", "web", "import"}
    idempotency_key : str, optional
        A retry with the same key returns the response created first, and writes nothing.
    amend, reason :
        A second response for the same participant, wave and instrument is refused (409) unless
        ``amend`` is true with a ``reason``; the previous version goes to the audit trail.

    Returns
    -------
    Response
        The stored row; ``response.replayed`` (attribute, not a column) is True for a replay.

    Raises
    ------
    api.errors.ApiError
        422 for unknown wave, instrument or item, a value outside the options, an instrument
        the wave does not include; 409 for a duplicate or a withdrawn participant.

    Examples
    --------
    >>> r = submit_response(session, participant=p, wave_code="baseline", instrument_code="phq9",
    ...                     answers={f"phq9_{i}": 1 for i in range(1, 10)}, actor=actor)  # doctest: +SKIP
    >>> session.commit()  # doctest: +SKIP
    """
    ensure_can_write(actor)
    ensure_site_access(actor, participant.site_id, loc=("path", "participant_id"), what="participant")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    if instrument_code in LICENSED_CODES:
        refresh_licensed(session)  # a calibration uploaded through another process scores here too
    answers = dict(answers)
    external_scores = dict(external_scores) if external_scores else None
    key_hash = None
    if idempotency_key is not None:
        key_hash = _request_hash(wave_code, instrument_code, answers, external_scores, completed_at, amend, reason)
    # One read: the wave and its study, the current response if any and the key's row if any.
    # The current response also finds every replay: a key's first request created (or amended)
    # exactly this row.
    wave, study, current, key_row = _wave_study_current(
        session, participant.id, participant.study_id, wave_code, instrument_code, idempotency_key
    )
    if current is not None and key_row is not None:
        return _replayed(session, key_row, key_hash, current)
    if participant.voided_at is not None:
        raise Conflict(
            ["path", "participant_id"], "the participant was voided (entered in error)", "participant_voided"
        )
    if participant.status == "withdrawn" or participant.follow_up_stopped_on or participant.consent_withdrawn_on:
        raise Conflict(
            ["path", "participant_id"],
            "the participant has withdrawn; no new data are collected",
            "participant_withdrawn",
        )
    try:
        instrument = instruments.get(instrument_code)
    except InstrumentError:
        raise Unprocessable(
            ["body", "instrument"], "unknown instrument; see GET /instruments", "unknown_instrument"
        ) from None
    if instrument_code not in wave.instruments:
        raise Unprocessable(["body", "instrument"], "the wave does not include this instrument", "not_in_wave")
    try:
        scores = instruments.score(instrument, answers, external_scores)
    except ValidationFailed as exc:
        raise Unprocessable(errors=_problems_to_errors(exc.problems, set(external_scores or ()))) from None

    status = instruments.completeness(instrument, answers, scores, external_scores)

    now = utcnow()
    if completed_at is None:
        completed_at = now
    else:
        dates.check(study, {("body", "completed_at"): completed_at}, now=now)
    _, opens, closes, _, _ = window(study, participant, wave)
    day = local_date(study, completed_at)
    _check_after_enrolment(participant, day, opens)
    out_of_window = not (opens <= day <= closes)

    if current is not None:
        # A partial response is resumed by the next submission; a complete one needs amend + reason.
        if not amend and current.status != "partial":
            raise _already_completed()
        # The key goes in first: when a parallel request took it, this amendment writes nothing.
        if idempotency_key is not None and not _insert_key(
            session, participant.id, idempotency_key, key_hash, current.id
        ):
            return _lost_race(session, participant.id, idempotency_key, key_hash)
        resp = _amend(
            session,
            participant,
            current,
            instrument,
            answers,
            external_scores,
            completed_at,
            out_of_window,
            scores,
            mode,
            actor,
            reason,
            now,
            status,
        )
        _attach(resp, wave.code, None, (participant.enrolled_on, study.time_zone))
        return resp

    resp = Response(
        study_id=participant.study_id,
        site_id=participant.site_id,
        participant_id=participant.id,
        wave_id=wave.id,
        instrument=instrument.code,
        instrument_version=str(instrument.version),
        answers=answers,
        external_scores=external_scores,
        mode=mode,
        entered_by=actor.user_id,
        completed_at=completed_at,
        out_of_window=out_of_window,
        status=status,
        created_at=now,
        updated_at=now,
    )
    # INSERT … ON CONFLICT DO NOTHING instead of a savepoint: a lost race (same key, or same wave and
    # instrument, committed by a parallel request) writes nothing and leaves the caller's
    # transaction usable, so it can end as a replay or a 409.
    values = resp.model_dump(exclude={"id"})
    resp.id = session.execute(
        _insert_ignoring_conflicts(session, Response).values(**values).returning(Response.__table__.c.id)
    ).scalar_one_or_none()
    if resp.id is None:
        if idempotency_key is not None:
            return _lost_race(session, participant.id, idempotency_key, key_hash)
        raise _already_completed()
    if idempotency_key is not None and not _insert_key(session, participant.id, idempotency_key, key_hash, resp.id):
        # The key was taken by a parallel request for another slot: undo this row, then answer
        # as that request's key dictates (a 422 for a different request).
        session.execute(delete(Response.__table__).where(Response.__table__.c.id == resp.id))
        return _lost_race(session, participant.id, idempotency_key, key_hash)
    score_rows = _score_rows(resp.id, scores)
    if score_rows:
        # One multi-row VALUES statement: cheaper than an executemany for a handful of scales.
        session.execute(insert(Score.__table__).values([s.model_dump(exclude={"id"}) for s in score_rows]))
    record(
        session,
        actor,
        "create",
        "response",
        resp.id,
        study_id=participant.study_id,
        site_id=participant.site_id,
        after={
            "participant_id": participant.id,
            "wave": wave.code,
            "instrument": instrument.code,
            "instrument_version": resp.instrument_version,
            "answers": _audit_view(instrument, answers),
            "external_scores": external_scores,
            "completed_at": completed_at.isoformat(),
            "out_of_window": out_of_window,
            "status": status,
            "mode": mode,
        },
    )
    _raise_alerts(session, participant, resp, instrument, answers, scores, actor, now)
    _mark(resp, False)
    _attach(resp, wave.code, score_rows, (participant.enrolled_on, study.time_zone))
    return resp


def _raise_alerts(session: Session, participant: Participant, resp: Response, instrument, answers, scores, actor, now):
    # In this transaction, for every entry path: an alert is stored with the answers or not at all.
    raised = raise_alerts(
        session,
        participant=participant,
        response_id=resp.id,
        wave_id=resp.wave_id,
        instrument=instrument,
        answers=answers,
        scores=scores,
        completed_at=resp.completed_at,
        mode=resp.mode,
        actor=actor,
        now=now,
    )
    # Not a column: what this call raised, so the router need not read it back.
    object.__setattr__(resp, "alerts_raised", raised)


def _wave_study_current(
    session: Session, participant_id: int, study_id: int, code: str, instrument_code: str, key: str | None
) -> tuple[Wave, Study, Response | None, IdempotencyKey | None]:
    stmt = (
        select(Wave, Study, Response)
        .join(Study, Study.id == Wave.study_id)
        .outerjoin(
            Response,
            and_(
                Response.participant_id == participant_id,
                Response.wave_id == Wave.id,
                Response.instrument == instrument_code,
            ),
        )
    )
    if key is not None:
        stmt = stmt.add_columns(IdempotencyKey).outerjoin(
            IdempotencyKey, and_(IdempotencyKey.participant_id == participant_id, IdempotencyKey.key == key)
        )
    row = session.exec(stmt.where(Wave.study_id == study_id, Wave.code == code)).first()
    if row is None:
        raise Unprocessable(["body", "wave"], "no wave with this code in the participant's study", "unknown_wave")
    return row[0], row[1], row[2], (row[3] if key is not None else None)


def _check_after_enrolment(participant: Participant, day, opens) -> None:
    """No answers dated before consent, nor before enrolment unless the wave's window opens earlier
    (a baseline taken at screening): such a date is a typo, and would be analysed as day -359."""
    if day < participant.consent_date:
        raise Unprocessable(
            ["body", "completed_at"], "completion is before the participant's consent", "before_consent"
        )
    if day < min(participant.enrolled_on, opens):
        raise Unprocessable(
            ["body", "completed_at"],
            "completion is before enrolment and before the wave's window opens",
            "before_enrolment",
        )


def _already_completed() -> Conflict:
    return Conflict(
        ["body", "instrument"],
        "a complete response exists for this wave and instrument; send amend=true with a reason",
        "already_completed",
    )


def _insert_ignoring_conflicts(session: Session, model):
    # Both dialects take ON CONFLICT DO NOTHING … RETURNING (SQLite since 3.35); a conflicting row
    # returns nothing instead of raising, so the transaction stays usable without a savepoint.
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(model.__table__).on_conflict_do_nothing()


def _insert_key(session: Session, participant_id: int, key: str, key_hash: str, response_id: int) -> bool:
    """Store the key; False when a parallel request stored it first."""
    stmt = (
        _insert_ignoring_conflicts(session, IdempotencyKey)
        .values(
            participant_id=participant_id, key=key, request_hash=key_hash, response_id=response_id, created_at=utcnow()
        )
        .returning(IdempotencyKey.__table__.c.id)
    )
    return session.execute(stmt).scalar_one_or_none() is not None


def _lost_race(session: Session, participant_id: int, key: str, key_hash: str) -> Response:
    """A parallel request committed this slot or this key first: its result, or why not."""
    replay = _replay(session, participant_id, key, key_hash)
    if replay is None:
        raise _already_completed()
    return replay


def _attach(resp: Response, wave_code: str, score_rows: list[Score] | None, enrolment=None) -> None:
    # Lets the router answer without reading back what this call just wrote.
    object.__setattr__(resp, "wave_code", wave_code)
    object.__setattr__(resp, "score_rows", score_rows)
    object.__setattr__(resp, "enrolment", enrolment)  # (enrolled_on, study time zone) for ``days``


def _mark(resp: Response, replayed: bool) -> None:
    # Not a column: tells the router whether this call wrote anything.
    object.__setattr__(resp, "replayed", replayed)


def _replay(session: Session, participant_id: int, key: str, key_hash: str) -> Response | None:
    row = session.exec(
        select(IdempotencyKey).where(IdempotencyKey.participant_id == participant_id, IdempotencyKey.key == key)
    ).first()
    if row is None:
        return None
    return _replayed(session, row, key_hash, None)


def _replayed(session: Session, row: IdempotencyKey, key_hash: str, current: Response | None) -> Response:
    if row.request_hash != key_hash:
        raise Unprocessable(
            ["header", "Idempotency-Key"], "this key was used for a different request", "idempotency_key_reused"
        )
    resp = current if current is not None and current.id == row.response_id else session.get(Response, row.response_id)
    _mark(resp, True)
    return resp


def _score_rows(response_id: int, scores) -> list[Score]:
    return [
        Score(
            response_id=response_id,
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
        for s in scores
    ]


def _amend(
    session: Session,
    participant: Participant,
    current: Response,
    instrument,
    answers,
    external_scores,
    completed_at,
    out_of_window,
    scores,
    mode,
    actor: Actor,
    reason: str | None,
    now: datetime,
    status: str = "complete",
) -> Response:
    old_scores = session.exec(select(Score).where(Score.response_id == current.id)).all()
    before = {
        "version": current.version,
        "instrument_version": current.instrument_version,
        "answers": _audit_view(instrument, current.answers),
        "external_scores": current.external_scores,
        "completed_at": current.completed_at.isoformat(),
        "out_of_window": current.out_of_window,
        "status": current.status,
        "mode": current.mode,
        "entered_by": current.entered_by,
        "scores": [{"scale": s.scale, "value": s.value, "band": s.band} for s in old_scores],
    }
    session.execute(delete(Score).where(Score.response_id == current.id))
    current.answers = answers
    current.external_scores = external_scores
    current.instrument_version = str(instrument.version)
    current.completed_at = completed_at
    resumed = current.status == "partial" and not reason
    current.out_of_window = out_of_window
    current.status = status
    current.mode = mode
    current.entered_by = actor.user_id
    current.version += 1
    current.updated_at = now
    session.add(current)
    session.flush()
    session.add_all(_score_rows(current.id, scores))
    record(
        session,
        actor,
        "resume" if resumed else "amend",
        "response",
        current.id,
        study_id=current.study_id,
        site_id=current.site_id,
        before=before,
        after={
            "version": current.version,
            "answers": _audit_view(instrument, answers),
            "external_scores": external_scores,
            "completed_at": completed_at.isoformat(),
            "out_of_window": out_of_window,
            "status": status,
            "mode": mode,
            "scores": [{"scale": s.scale, "value": s.value, "band": s.band} for s in scores],
        },
        reason=reason,
    )
    session.flush()
    _raise_alerts(session, participant, current, instrument, answers, scores, actor, now)
    _mark(current, False)
    return current


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
