"""Submitting and amending responses (reading them: :mod:`api.responses.reading`).

Scoring is the instrument library's: the service validates the answers against the instrument,
stores them raw with the instrument version, and stores the scores computed at submission. This
is the path of every entry point and both databases; REST submissions on PostgreSQL that need
nothing but an insert take :mod:`api.responses.fastpath`, which applies the same
:mod:`api.responses.checks`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import BindParameter, and_, bindparam, delete, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from api.audit.service import record
from api.auth.policy import ensure_can_write, ensure_site_access
from api.auth.service import Actor
from api.db import utcnow
from api.errors import Unprocessable
from api.licensed.service import LICENSED_CODES
from api.licensed.service import refresh as refresh_licensed
from api.participants.models import Participant
from api.responses import checks
from api.responses.models import MODES, IdempotencyKey, Response, Score
from api.safety.service import raise_alerts
from api.studies.models import Study, Wave


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
        key_hash = checks.request_hash(
            wave_code, instrument_code, answers, external_scores, completed_at, amend, reason
        )
    # One read: the wave and its study, the current response if any and the key's row if any.
    # The current response also finds every replay: a key's first request created (or amended)
    # exactly this row.
    wave, study, current, key_row = _wave_study_current(
        session, participant.id, participant.study_id, wave_code, instrument_code, idempotency_key
    )
    if current is not None and key_row is not None:
        return _replayed(session, key_row, key_hash, current)
    # The same checks, in the same order, as the PostgreSQL fast path (api/responses/fastpath.py).
    checks.ensure_collecting(participant)
    instrument = checks.instrument_of_wave(instrument_code, wave.instruments)
    scores, status = checks.scored(instrument, answers, external_scores)
    now = utcnow()
    completed_at, out_of_window = checks.dated(study, participant, wave, completed_at, now)

    if current is not None:
        # A partial response is resumed by the next submission; a complete one needs amend + reason.
        if not amend and current.status != "partial":
            raise checks.already_completed()
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
        raise checks.already_completed()
    if idempotency_key is not None and not _insert_key(session, participant.id, idempotency_key, key_hash, resp.id):
        # The key was taken by a parallel request for another slot: undo this row, then answer
        # as that request's key dictates (a 422 for a different request).
        session.execute(delete(Response.__table__).where(Response.__table__.c.id == resp.id))
        return _lost_race(session, participant.id, idempotency_key, key_hash)
    score_rows = _score_rows(resp.id, scores)
    if score_rows:
        # An executemany of one cached statement: a multi-row VALUES statement would be compiled
        # again on every call (SQLAlchemy cannot cache it), which costs more than the insert.
        session.execute(insert(Score.__table__), [s.model_dump(exclude={"id"}) for s in score_rows])
    record(
        session,
        actor,
        "create",
        "response",
        resp.id,
        study_id=participant.study_id,
        site_id=participant.site_id,
        after=checks.created_view(
            participant.id, wave.code, instrument, answers, external_scores, completed_at, out_of_window, status, mode
        ),
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
    params = {"participant_id": participant_id, "study_id": study_id, "code": code, "instrument": instrument_code}
    if key is not None:
        params["key"] = key
    row = session.exec(_wave_study_current_statement(key is not None), params=params).first()
    if row is None:
        raise Unprocessable(["body", "wave"], "no wave with this code in the participant's study", "unknown_wave")
    return row[0], row[1], row[2], (row[3] if key is not None else None)


@lru_cache(maxsize=2)
def _wave_study_current_statement(with_key: bool):
    # Built once with bound parameters: constructing the joined select took longer than running it.
    participant_id: BindParameter[int] = bindparam("participant_id")
    stmt = (
        select(Wave, Study, Response)
        .join(Study, Study.id == Wave.study_id)
        .outerjoin(
            Response,
            and_(
                Response.participant_id == participant_id,
                Response.wave_id == Wave.id,
                Response.instrument == bindparam("instrument"),
            ),
        )
    )
    if with_key:
        same_key = and_(IdempotencyKey.participant_id == participant_id, IdempotencyKey.key == bindparam("key"))
        stmt = stmt.add_columns(IdempotencyKey).outerjoin(IdempotencyKey, same_key)
    return stmt.where(Wave.study_id == bindparam("study_id"), Wave.code == bindparam("code"))


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
        raise checks.already_completed()
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
    return [Score(response_id=response_id, **values) for values in checks.score_values(scores)]


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
        "answers": checks.audit_view(instrument, current.answers),
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
            "answers": checks.audit_view(instrument, answers),
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
