"""The rules a submission passes before anything is written, shared by both ways of storing it.

:func:`api.responses.service.submit_response` (the ORM path, every entry point and both
databases) and :mod:`api.responses.fastpath` (REST submissions on PostgreSQL) call the same
functions here in the same order, so a rule, an error body or a computed value has one home and
the two paths cannot drift apart. Nothing here reads or writes the database: the callers read the
participant, study and wave their own way and pass them in (anything with the attributes that
:class:`Collecting`, :class:`api.studies.dates.Zoned` and :class:`~api.studies.dates.Windowed` name).

Examples
--------
>>> first = request_hash("baseline", "gad7", {"gad7_1": 1}, None, None, False, None)
>>> first == request_hash("baseline", "gad7", {"gad7_1": 1}, None, None, False, None)
True
>>> first == request_hash("baseline", "gad7", {"gad7_1": 2}, None, None, False, None)
False
>>> score_values(instruments.score("gad7", {f"gad7_{i}": 1 for i in range(1, 8)}))[0]["value"]
7.0
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, Protocol

import instruments
from api.errors import Conflict, Unprocessable, error
from api.participants.service import local_date, window
from api.studies import dates
from instruments.model import InstrumentError, ValidationFailed


class Collecting(dates.Enrolled, Protocol):
    """What the checks read of a participant."""

    @property
    def status(self) -> str: ...
    @property
    def voided_at(self) -> datetime | None: ...
    @property
    def follow_up_stopped_on(self) -> date | None: ...
    @property
    def consent_withdrawn_on(self) -> date | None: ...
    @property
    def consent_date(self) -> date: ...


def request_hash(
    wave_code: str,
    instrument_code: str,
    answers: Mapping[str, Any],
    external_scores: Mapping[str, Any] | None,
    completed_at: datetime | None,
    amend: bool,
    reason: str | None,
) -> str:
    """What an Idempotency-Key is bound to: a retry must send the same request."""
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


def audit_view(instrument, answers: Mapping[str, Any]) -> dict[str, Any]:
    """The answers as the audit trail keeps them: items flagged as direct identifiers are audited
    by name only, like contact fields."""
    hidden = {it.code for it in instrument.items if getattr(it, "identifier", False)}
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


def ensure_collecting(participant: Collecting) -> None:
    """409 for a participant voided or withdrawn from data collection."""
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


def instrument_of_wave(instrument_code: str, wave_instruments: Sequence[str]):
    """The instrument definition; 422 when unknown or not part of the wave."""
    try:
        instrument = instruments.get(instrument_code)
    except InstrumentError:
        raise Unprocessable(
            ["body", "instrument"], "unknown instrument; see GET /instruments", "unknown_instrument"
        ) from None
    if instrument_code not in wave_instruments:
        raise Unprocessable(["body", "instrument"], "the wave does not include this instrument", "not_in_wave")
    return instrument


def scored(instrument, answers: Mapping[str, Any], external_scores: Mapping[str, Any] | None) -> tuple[list, str]:
    """(scores, status) from the instrument library; 422 naming each bad answer."""
    try:
        scores = instruments.score(instrument, answers, external_scores)
    except ValidationFailed as exc:
        raise Unprocessable(errors=_problems_to_errors(exc.problems, set(external_scores or ()))) from None
    return scores, instruments.completeness(instrument, answers, scores, external_scores)


def dated(
    study: dates.Zoned, participant: Collecting, wave: dates.Windowed, completed_at: datetime | None, now: datetime
) -> tuple[datetime, bool]:
    """(completed_at, out_of_window): now when not given, else a plausible moment for the study,
    not before consent nor before enrolment (unless the wave opens earlier)."""
    if completed_at is None:
        completed_at = now
    else:
        dates.check(study, {("body", "completed_at"): completed_at}, now=now)
    _, opens, closes, _, _ = window(study, participant, wave)
    day = local_date(study, completed_at)
    _check_after_enrolment(participant, day, opens)
    return completed_at, not (opens <= day <= closes)


def _check_after_enrolment(participant: Collecting, day: date, opens: date) -> None:
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


def already_completed() -> Conflict:
    return Conflict(
        ["body", "instrument"],
        "a complete response exists for this wave and instrument; send amend=true with a reason",
        "already_completed",
    )


def score_values(scores) -> list[dict[str, Any]]:
    """The stored columns of each score (``score`` rows without ids), in the library's order."""
    return [
        {
            "scale": s.scale,
            "value": s.value,
            "band": s.band,
            "level": s.level,
            "items_answered": s.items_answered,
            "items_expected": s.items_expected,
            "prorated": s.prorated,
            "missing_reason": s.missing_reason,
            "flags": list(s.flags or []),
        }
        for s in scores
    ]


def created_view(
    participant_id: int,
    wave_code: str,
    instrument,
    answers: Mapping[str, Any],
    external_scores: Mapping[str, Any] | None,
    completed_at: datetime,
    out_of_window: bool,
    status: str,
    mode: str,
) -> dict[str, Any]:
    """The ``after`` of the audit event of a new response."""
    return {
        "participant_id": participant_id,
        "wave": wave_code,
        "instrument": instrument.code,
        "instrument_version": str(instrument.version),
        "answers": audit_view(instrument, answers),
        "external_scores": external_scores,
        "completed_at": completed_at.isoformat(),
        "out_of_window": out_of_window,
        "status": status,
        "mode": mode,
    }
