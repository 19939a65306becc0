"""Clocks: the planner and the dispatcher ask a clock for the time, so tests can control it.

Examples
--------
>>> from datetime import datetime, timedelta, timezone
>>> c = FixedClock(datetime(2026, 3, 28, 12, tzinfo=timezone.utc))
>>> c.advance(timedelta(days=1)).isoformat()
'2026-03-29T12:00:00+00:00'
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that moves only when told to."""

    def __init__(self, at: datetime):
        if at.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._at = at.astimezone(UTC)

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> datetime:
        self._at = at.astimezone(UTC)
        return self._at

    def advance(self, delta: timedelta) -> datetime:
        self._at += delta
        return self._at
