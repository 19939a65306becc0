"""Plausible dates: the one policy for every date and timestamp a client can send.

Two layers:

* :data:`PlausibleDate` and :data:`PlausibleMoment` are ``Annotated`` types for request bodies.
  They refuse what no study can mean (before 1900-01-01, or more than a year ahead) with a 422
  naming the field, before any service runs, so ``0001-01-01`` or ``9999-12-31`` never reach
  the database or date arithmetic.
* :class:`DateWindow` is the study-level window a service checks once it knows the study: not
  earlier than the study's start (the day its record was created) minus
  ``PEERLENS_DATES_BEFORE_START_DAYS``, and not later than today in the study's time zone
  (dates of things that have happened: enrolment, consent, status changes, adverse events) or
  now plus ``PEERLENS_DATES_FUTURE_MINUTES`` (timestamps, which allow for a device clock
  running a little fast). :func:`check` raises one 422 listing every field out of range.

Stored values from before this policy may still be out of range; :func:`add_days` and
:func:`at_midnight` saturate instead of raising ``OverflowError`` so schedules, links and
exports of everyone else keep working, and :func:`plausible` lets a reader flag them.

Examples
--------
>>> from datetime import UTC, date, datetime
>>> w = DateWindow(earliest=date(2021, 1, 1), today=date(2026, 3, 1),
...                now=datetime(2026, 3, 1, 12, tzinfo=UTC))
>>> w.problems({("body", "enrolled_on"): date(2026, 3, 2)})[0]["type"]
'in_future'
>>> w.problems({("body", "enrolled_on"): date(2020, 12, 31)})[0]["type"]
'date_before_study'
>>> w.problems({("body", "enrolled_on"): date(2026, 3, 1)})
[]
>>> add_days(date.max, 30)
datetime.date(9999, 12, 29)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Protocol
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, AwareDatetime
from pydantic_core import PydanticCustomError

# Absolute bounds, whatever the study: nobody in a peer-support evaluation was enrolled, consented
# or answered before 1900, and nothing is recorded more than a year ahead.
EARLIEST = date(1900, 1, 1)
HORIZON = timedelta(days=366)

# Defaults of the study-level window (overridden by configure(), which create_app calls with the
# settings): how long before the study's record a date may lie (data collected on paper first,
# records imported from an earlier system), and how far ahead of the server a timestamp may be.
DEFAULT_BEFORE_START_DAYS = 1826
DEFAULT_FUTURE_MINUTES = 5


class Zoned(Protocol):
    """What date arithmetic reads of a study: its time zone and when its record was created."""

    @property
    def time_zone(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...


class Enrolled(Protocol):
    """What a wave window reads of a participant."""

    @property
    def enrolled_on(self) -> date: ...


class Windowed(Protocol):
    """What a wave window reads of a wave."""

    @property
    def offset_days(self) -> int: ...
    @property
    def window_before_days(self) -> int: ...
    @property
    def window_after_days(self) -> int: ...


# The ``type`` of every error this policy raises.
ERROR_TYPES = ("date_implausible", "date_before_study", "in_future")


@dataclass
class _Margins:
    before_start_days: int = DEFAULT_BEFORE_START_DAYS
    future_minutes: int = DEFAULT_FUTURE_MINUTES


_margins = _Margins()


def configure(before_start_days: int | None = None, future_minutes: int | None = None) -> None:
    """Set the margins of every study window (``create_app`` passes the settings' values)."""
    if before_start_days is not None:
        _margins.before_start_days = int(before_start_days)
    if future_minutes is not None:
        _margins.future_minutes = int(future_minutes)


def margins() -> tuple[int, int]:
    """(days before the study's start, minutes into the future) currently in force."""
    return _margins.before_start_days, _margins.future_minutes


def _today_utc() -> date:
    return datetime.now(UTC).date()


def _plausible_date(v: date) -> date:
    if v < EARLIEST:
        raise PydanticCustomError("date_implausible", "date is before 1900-01-01")
    if v > _today_utc() + HORIZON:
        raise PydanticCustomError("in_future", "date is more than a year in the future")
    return v


def _plausible_moment(v: datetime) -> datetime:
    _plausible_date(v.date())
    if v.tzinfo is not None:
        try:
            v.astimezone(UTC)
        except OverflowError:
            raise PydanticCustomError("date_implausible", "timestamp cannot be expressed in UTC") from None
    return v


PlausibleDate = Annotated[date, AfterValidator(_plausible_date)]
"""A ``date`` between 1900-01-01 and a year from today (422 ``date_implausible`` otherwise)."""

PlausibleMoment = Annotated[datetime, AfterValidator(_plausible_moment)]
"""A ``datetime`` in the same absolute range (naive values are read as UTC)."""

PlausibleAwareMoment = Annotated[AwareDatetime, AfterValidator(_plausible_moment)]
"""A ``datetime`` with a UTC offset, in the same absolute range."""


@dataclass(frozen=True)
class DateWindow:
    """The plausible range of one study's dates.

    ``earliest``: first acceptable calendar date; ``today``: the current date in the study's time
    zone (the last date of something that has happened); ``now``: the current UTC time plus the
    allowed clock skew (the last acceptable timestamp).
    """

    earliest: date
    today: date
    now: datetime

    def problems(
        self, fields: Mapping[tuple[str | int, ...], date | datetime | None], *, time_zone: str = "UTC"
    ) -> list[dict[str, Any]]:
        """One error entry per field outside the window (``None`` values are skipped)."""
        out = []
        for loc, value in fields.items():
            if value is None:
                continue
            if isinstance(value, datetime):
                moment = value if value.tzinfo else value.replace(tzinfo=UTC)
                try:
                    day = moment.astimezone(ZoneInfo(time_zone)).date()
                except OverflowError:
                    day = date.min
                late = moment > self.now
            else:
                day, late = value, value > self.today
            if day < self.earliest:
                out.append(
                    _error(
                        loc,
                        f"date is before the study's plausible range (earliest {self.earliest.isoformat()})",
                        "date_before_study",
                    )
                )
            elif late:
                out.append(_error(loc, "date is in the future", "in_future"))
        return out

    def check(self, fields: Mapping[tuple[str | int, ...], date | datetime | None], *, time_zone: str = "UTC"):
        """Raise a 422 (:class:`api.errors.Unprocessable`) naming every field out of the window."""
        from api.errors import Unprocessable

        errors = self.problems(fields, time_zone=time_zone)
        if errors:
            raise Unprocessable(errors=errors)


def _error(loc: Sequence[str | int], msg: str, type_: str) -> dict[str, Any]:
    return {"loc": list(loc), "msg": msg, "type": type_}


def window_for(study: Any, now: datetime | None = None) -> DateWindow:
    """The window of ``study`` (anything with ``created_at`` and ``time_zone``) at ``now``."""
    before, future = margins()
    now = now or datetime.now(UTC)
    created = study.created_at or now
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    tz = ZoneInfo(study.time_zone or "UTC")
    start = created.astimezone(tz).date()
    return DateWindow(
        earliest=max(EARLIEST, add_days(start, -before)),
        today=now.astimezone(tz).date(),
        now=now + timedelta(minutes=future),
    )


def check(study: Any, fields: Mapping[tuple[str | int, ...], date | datetime | None], now: datetime | None = None):
    """Check ``fields`` (loc → value) against the study's window; 422 naming each bad field."""
    window_for(study, now).check(fields, time_zone=study.time_zone or "UTC")


def plausible(value: date | datetime | None) -> bool:
    """Whether a stored value lies in the absolute range (False flags a value stored before the policy)."""
    if value is None:
        return True
    day = value.date() if isinstance(value, datetime) else value
    return EARLIEST <= day <= _today_utc() + HORIZON


# --- arithmetic that never overflows, for values already stored --------------------------------

_SAFE_MIN = date.min + timedelta(days=2)
_SAFE_MAX = date.max - timedelta(days=2)


def add_days(d: date, days: int) -> date:
    """``d + days``, saturating at the ends of the calendar instead of raising ``OverflowError``.

    The result stays two days inside ``date.min``/``date.max`` so that a following time-zone
    conversion or "+ 1 day" cannot overflow either.
    """
    try:
        out = d + timedelta(days=days)
    except OverflowError:
        return _SAFE_MAX if days > 0 else _SAFE_MIN
    return min(max(out, _SAFE_MIN), _SAFE_MAX)


def at_midnight(d: date, tz: ZoneInfo) -> datetime:
    """The start of ``d`` in ``tz`` as an aware UTC datetime (saturating, like :func:`add_days`)."""
    d = min(max(d, _SAFE_MIN), _SAFE_MAX)
    return datetime.combine(d, time(0), tzinfo=tz).astimezone(UTC)


def on_day(d: date, at: time, tz: ZoneInfo, now: datetime | None = None) -> datetime:
    """``d`` at local time ``at`` in ``tz``, but never later than ``now`` (UTC, aware).

    A date-only value ("measured on 2 Dec") is given a nominal time of day; when the day is today
    and that time has not come yet, the moment is now instead, so it is not refused as future.
    """
    moment = datetime.combine(d, at, tzinfo=tz).astimezone(UTC)
    return min(moment, now or datetime.now(UTC))


def add_time(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta``, saturating near the ends of the calendar."""
    try:
        return moment + delta
    except OverflowError:
        edge = _SAFE_MAX if delta > timedelta(0) else _SAFE_MIN
        return datetime.combine(edge, time(0), tzinfo=UTC)


# --- values stored before the policy -------------------------------------------------------------


def stored_problems(session: Any, study: Any, now: datetime | None = None) -> list[dict[str, Any]]:
    """Dates already stored in ``study`` that the policy would refuse today, for correction.

    One entry per finding: ``participant`` (study code), ``field`` (``enrolled_on``,
    ``consent_date``, ``status_date``, or ``response <id> completed_at``), ``value`` and ``type``
    (as the 422 would say, or ``before_enrolment`` for an answer dated before enrolment). Read
    only; ``peerlens check-dates`` prints it.
    """
    from sqlmodel import select

    from api.participants.models import Participant
    from api.responses.models import Response
    from api.studies.models import Wave

    win = window_for(study, now)
    tz = study.time_zone or "UTC"
    out: list[dict[str, Any]] = []
    people = session.exec(select(Participant).where(Participant.study_id == study.id)).all()
    codes = {p.id: p for p in people}
    for p in people:
        for name in ("enrolled_on", "consent_date", "status_date"):
            for e in win.problems({(name,): getattr(p, name)}, time_zone=tz):
                out.append(
                    {"participant": p.study_code, "field": name, "value": str(getattr(p, name)), "type": e["type"]}
                )
    opens_before = dict(session.exec(select(Wave.id, Wave.window_before_days).where(Wave.study_id == study.id)).all())
    offsets = dict(session.exec(select(Wave.id, Wave.offset_days).where(Wave.study_id == study.id)).all())
    rows = session.exec(
        select(Response.id, Response.participant_id, Response.wave_id, Response.completed_at).where(
            Response.study_id == study.id
        )
    ).all()
    for rid, pid, wid, moment in rows:
        p = codes.get(pid)
        if p is None or moment is None:
            continue
        field = f"response {rid} completed_at"
        found = win.problems({(field,): moment}, time_zone=tz)
        if not found:
            try:
                day = moment.astimezone(ZoneInfo(tz)).date()
            except OverflowError:
                day = date.min
            opens = add_days(add_days(p.enrolled_on, offsets.get(wid, 0)), -opens_before.get(wid, 0))
            if day < min(p.enrolled_on, opens):
                found = [{"type": "before_enrolment"}]
        for e in found:
            out.append({"participant": p.study_code, "field": field, "value": moment.isoformat(), "type": e["type"]})
    return out
