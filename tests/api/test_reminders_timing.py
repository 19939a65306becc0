"""Pure parts of reminders: wall-clock steps, quiet hours across DST, backoff, templates, tokens."""

from __future__ import annotations

from datetime import UTC, date, datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from api.reminders import templates, tokens
from api.reminders.channels import scrub
from api.reminders.clock import FixedClock
from api.reminders.timing import (
    backoff_delay,
    local_to_utc,
    parse_hhmm,
    shift_out_of_quiet,
    sqlite_local_to_utc,
    step_due,
)

LONDON = ZoneInfo("Europe/London")
QUIET = (21 * 60, 8 * 60)


def utc(*a):
    return datetime(*a, tzinfo=UTC)


@pytest.mark.parametrize(
    "local, expected",
    [
        (datetime(2026, 1, 5, 0, 0), datetime(2026, 1, 5, 8, 0)),  # after midnight: same morning
        (datetime(2026, 1, 5, 22, 30), datetime(2026, 1, 6, 8, 0)),  # evening: next morning
        (datetime(2026, 1, 5, 21, 0), datetime(2026, 1, 6, 8, 0)),  # start is inclusive
        (datetime(2026, 1, 5, 8, 0), datetime(2026, 1, 5, 8, 0)),  # end is exclusive
        (datetime(2026, 1, 5, 14, 0), datetime(2026, 1, 5, 14, 0)),
    ],
)
def test_quiet_hours_spanning_midnight(local, expected):
    assert shift_out_of_quiet(local, QUIET) == expected


def test_quiet_hours_within_a_day_and_none():
    assert shift_out_of_quiet(datetime(2026, 1, 5, 12, 30), (12 * 60, 14 * 60)) == datetime(2026, 1, 5, 14, 0)
    assert shift_out_of_quiet(datetime(2026, 1, 5, 11, 59), (12 * 60, 14 * 60)) == datetime(2026, 1, 5, 11, 59)
    assert shift_out_of_quiet(datetime(2026, 1, 5, 3, 0), None) == datetime(2026, 1, 5, 3, 0)


def test_quiet_hours_end_is_local_time_across_dst():
    # 08:00 in London is 08:00 UTC before the spring change and 07:00 UTC after it, and back in autumn.
    for day, expected in (
        (date(2026, 3, 28), utc(2026, 3, 28, 8)),
        (date(2026, 3, 29), utc(2026, 3, 29, 7)),
        (date(2026, 10, 24), utc(2026, 10, 24, 7)),
        (date(2026, 10, 25), utc(2026, 10, 25, 8)),
    ):
        local = shift_out_of_quiet(datetime.combine(day, datetime.min.time()), QUIET)
        assert local_to_utc(local, LONDON) == expected


def test_gap_and_fold_read_as_standard_time():
    # 01:30 does not exist on 29 March and exists twice on 25 October: both are read as GMT.
    assert local_to_utc(datetime(2026, 3, 29, 1, 30), LONDON) == utc(2026, 3, 29, 1, 30)
    assert local_to_utc(datetime(2026, 10, 25, 1, 30), LONDON) == utc(2026, 10, 25, 1, 30)
    assert sqlite_local_to_utc("2026-10-25 01:30:00", "Europe/London") == "2026-10-25 01:30:00.000000"
    # Sydney: standard time is AEST (+10) in both directions.
    sydney = ZoneInfo("Australia/Sydney")
    assert local_to_utc(datetime(2026, 4, 5, 2, 30), sydney) == utc(2026, 4, 4, 16, 30)
    assert local_to_utc(datetime(2026, 10, 4, 2, 30), sydney) == utc(2026, 10, 3, 16, 30)


def test_step_due_uses_the_core_window():
    study = SimpleNamespace(time_zone="Europe/London")
    participant = SimpleNamespace(enrolled_on=date(2026, 3, 20))
    wave = SimpleNamespace(offset_days=10, window_before_days=1, window_after_days=5)
    due_at, opens_at, closes_at = step_due(study, participant, wave, {"offset_days": 3}, QUIET)
    assert opens_at == utc(2026, 3, 29, 0, 0)  # opens 29 March, local midnight (still GMT)
    assert closes_at == utc(2026, 4, 4, 23, 0)  # end of 4 April BST
    assert due_at == utc(2026, 4, 1, 7, 0)  # 08:00 BST


def test_backoff_doubles_and_is_capped():
    assert [backoff_delay(n, base_seconds=30).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert backoff_delay(40, base_seconds=60, cap_seconds=3600).total_seconds() == 3600


def test_parse_hhmm_rejects_nonsense():
    assert parse_hhmm("08:05") == 485
    for bad in ("8", "24:00", "12:60", "ab:cd", "12:5"):
        with pytest.raises(ValueError):
            parse_hhmm(bad)


def test_templates_accept_known_placeholders_only():
    assert templates.problems("Hi {name}, your {wave} form: {link} (until {closes_on})") == []
    assert "unknown placeholder {email}" in templates.problems("{email}")[0]
    assert "format spec" in templates.problems("{name!r}")[0]
    assert "malformed" in templates.problems("{name")[0]
    assert templates.render("{name}: {link}", {"link": "u"}) == ": u"


def test_tokens_round_trip_and_resist_tampering():
    t = tokens.sign("secret", 12345)
    assert tokens.verify("secret", t) == 12345
    head, mac = t.split(".")
    assert tokens.verify("secret", tokens.sign("secret", 12346).split(".")[0] + "." + mac) is None
    assert tokens.verify("secret", t[:-1] + ("A" if t[-1] != "A" else "B")) is None
    assert tokens.verify("secret", "garbage") is None


def test_scrub_removes_addresses_and_numbers():
    out = scrub("550 <ana.lopez@example.org> unknown; call +44 20 7946 0958", "Ana Lopez")
    assert "ana.lopez" not in out and "7946" not in out


def test_fixed_clock_requires_aware_time():
    with pytest.raises(ValueError):
        FixedClock(datetime(2026, 1, 1))
