"""When a reminder is due: wall-clock steps after the window opens, quiet hours, backoff.

This module is the reference for the planner's SQL (which must give the same instants) and is
what SQLite calls for time-zone conversion, since SQLite has no time zones of its own.

Local times are naive ``datetime`` values read in the study's time zone. A local time that does
not exist (spring-forward gap) or exists twice (fall-back) is read as *standard* time, the rule
PostgreSQL's ``AT TIME ZONE`` applies, so both backends agree.

Examples
--------
>>> from datetime import datetime
>>> from zoneinfo import ZoneInfo
>>> shift_out_of_quiet(datetime(2026, 3, 29, 0, 0), (21 * 60, 8 * 60))
datetime.datetime(2026, 3, 29, 8, 0)
>>> local_to_utc(datetime(2026, 3, 29, 8, 0), ZoneInfo("Europe/London")).isoformat()
'2026-03-29T07:00:00+00:00'
>>> backoff_delay(3, base_seconds=60).total_seconds()
240.0
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

Quiet = tuple[int, int] | None  # (start, end) in minutes after local midnight

# SQLAlchemy's storage format of DateTime on SQLite; SQL comparisons are string comparisons there.
SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def local_to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time in ``tz`` (standard time when ambiguous or missing)."""
    a = local.replace(tzinfo=tz, fold=0)
    b = local.replace(tzinfo=tz, fold=1)
    if a.utcoffset() == b.utcoffset():
        return a.astimezone(UTC)
    for cand in (a, b):
        if not cand.dst():
            return cand.astimezone(UTC)
    return a.astimezone(UTC)


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def sqlite_local_to_utc(local: str | None, tz: str) -> str | None:
    """SQL function ``pl_local_to_utc(local_text, tz)`` of SQLite: text in, stored UTC text out."""
    if local is None:
        return None
    return local_to_utc(datetime.fromisoformat(local), _zone(tz)).replace(tzinfo=None).strftime(SQLITE_FORMAT)


def shift_out_of_quiet(local: datetime, quiet: Quiet) -> datetime:
    """Move a local time that falls in quiet hours to the end of them.

    Quiet hours are ``[start, end)``; ``start > end`` spans midnight.
    """
    if quiet is None or quiet[0] == quiet[1]:
        return local
    start, end = quiet
    minute = local.hour * 60 + local.minute
    day = datetime.combine(local.date(), time(0))
    if start < end:
        if start <= minute < end:
            return day + timedelta(minutes=end)
        return local
    if minute >= start:
        return day + timedelta(days=1, minutes=end)
    if minute < end:
        return day + timedelta(minutes=end)
    return local


def step_minutes(step: dict) -> int:
    """Minutes after local midnight of the opening day for a plan step."""
    return int(step.get("offset_days", 0)) * 1440 + int(step.get("offset_hours", 0)) * 60


def step_due(study, participant, wave, step: dict, quiet: Quiet) -> tuple[datetime, datetime, datetime]:
    """(due_at, window_opens_at, window_closes_at) in UTC for one step, using the core's window.

    The window comes from :func:`api.participants.service.window`, the same function the
    participant schedule uses; the step is added in wall-clock time of the study's time zone.
    """
    from api.participants.service import window

    _due, opens, _closes, opens_at, closes_at = window(study, participant, wave)
    local = datetime.combine(opens, time(0)) + timedelta(minutes=step_minutes(step))
    local = shift_out_of_quiet(local, quiet)
    return local_to_utc(local, ZoneInfo(study.time_zone)), opens_at, closes_at


def backoff_delay(attempts: int, *, base_seconds: float = 60.0, cap_seconds: float = 6 * 3600) -> timedelta:
    """Delay before the next try after ``attempts`` failed attempts: base · 2^(attempts−1), capped."""
    return timedelta(seconds=min(cap_seconds, base_seconds * 2 ** max(0, attempts - 1)))


def parse_hhmm(value: str) -> int:
    """``"21:30"`` → 1290 minutes; raises ValueError on anything else."""
    hh, sep, mm = value.partition(":")
    if not sep or not hh.isdigit() or not mm.isdigit() or len(mm) != 2 or len(hh) not in (1, 2):
        raise ValueError("time must be HH:MM")
    h, m = int(hh), int(mm)
    if h > 23 or m > 59:
        raise ValueError("time must be HH:MM between 00:00 and 23:59")
    return h * 60 + m


def format_hhmm(minutes: int | None) -> str | None:
    return None if minutes is None else f"{minutes // 60:02d}:{minutes % 60:02d}"
