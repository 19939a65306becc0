"""Plausible dates (api/studies/dates.py) and response completeness, on both backends."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update
from sqlmodel import Session

from api.participants.models import Participant
from tests.conftest import phq9_answers

TZ = ZoneInfo("Europe/London")


def today() -> date:
    return datetime.now(TZ).date()


@pytest.fixture(scope="module")
def study(make_study):
    return make_study(
        waves=(
            ("baseline", 0, 0, 14, ["phq9", "gad7", "semcd6"]),
            ("m1", 30, 7, 7, ["phq9"]),
        )
    )


def _enrol(client, admin, study, enrolled_on, consent_on=None):
    body = {
        "site": "north",
        "enrolled_on": enrolled_on,
        "consent": {"date": consent_on or enrolled_on, "version": "v1"},
    }
    return client.post(f"/studies/{study.id}/participants", json=body, headers=admin.headers)


def _first_error(r):
    assert r.status_code == 422, r.text
    e = r.json()["detail"][0]
    return e["loc"], e["type"]


@pytest.mark.parametrize(
    "enrolled_on, kind",
    [
        ("0001-01-01", "date_implausible"),
        ("9999-12-31", "in_future"),
        ("1850-06-01", "date_implausible"),
        ("2009-01-01", "date_before_study"),  # before the study's start minus the 5-year margin
    ],
)
def test_enrolment_dates_out_of_range_are_422_naming_the_field(client, admin, study, enrolled_on, kind):
    r = _enrol(client, admin, study, enrolled_on)
    assert _first_error(r) == (["body", "enrolled_on"], kind)


def test_future_enrolment_is_refused_today_is_accepted(client, admin, study):
    tomorrow = str(today() + timedelta(days=1))
    assert _first_error(_enrol(client, admin, study, tomorrow)) == (["body", "enrolled_on"], "in_future")
    r = _enrol(client, admin, study, str(today() - timedelta(days=3)), consent_on=str(today() - timedelta(days=400)))
    assert r.status_code == 201, r.text
    # consent in range but a future status date is refused, naming it
    pid = r.json()["id"]
    r = client.patch(
        f"/participants/{pid}",
        json={"status": "withdrawn", "status_date": str(today() + timedelta(days=2)), "reason": "moved away"},
        headers=admin.headers,
    )
    assert _first_error(r) == (["body", "status_date"], "in_future")
    r = client.patch(
        f"/participants/{pid}", json={"consent": {"date": "0001-01-01", "version": "v2"}}, headers=admin.headers
    )
    assert _first_error(r) == (["body", "consent", "date"], "date_implausible")


def test_consent_date_out_of_range_is_named(client, admin, study):
    r = _enrol(client, admin, study, str(today()), consent_on="2001-02-03")
    assert _first_error(r) == (["body", "consent", "date"], "date_before_study")


def test_completed_at_out_of_range_and_before_enrolment(client, admin, study, engine):
    enrolled = today() - timedelta(days=5)
    p = _enrol(client, admin, study, str(enrolled)).json()
    url = f"/participants/{p['id']}/responses"
    base = {"wave": "baseline", "instrument": "phq9", "answers": phq9_answers(1)}
    for stamp, kind in [
        ("0001-01-01T00:00:00Z", "date_implausible"),
        ("9999-12-31T23:59:59Z", "in_future"),
        ((datetime.now(UTC) + timedelta(hours=2)).isoformat(), "in_future"),
        # a year before enrolment: would be exported as day -365
        (f"{enrolled - timedelta(days=365)}T10:00:00+00:00", "before_consent"),
    ]:
        r = client.post(url, json={**base, "completed_at": stamp}, headers=admin.headers)
        assert _first_error(r) == (["body", "completed_at"], kind), stamp
    # consent a year earlier than enrolment: an answer between consent and enrolment is still refused
    p2 = _enrol(client, admin, study, str(enrolled), consent_on=str(enrolled - timedelta(days=400))).json()
    r = client.post(
        f"/participants/{p2['id']}/responses",
        json={**base, "completed_at": f"{enrolled - timedelta(days=359)}T10:00:00+00:00"},
        headers=admin.headers,
    )
    assert _first_error(r) == (["body", "completed_at"], "before_enrolment")
    r = client.post(url, json={**base, "completed_at": f"{enrolled}T10:00:00+00:00"}, headers=admin.headers)
    assert r.status_code == 201, r.text
    assert r.json()["days"] == 0


def _store_enrolment(engine, pid: int, day: date) -> None:
    """Values stored before the date policy existed (the API refuses them now)."""
    from api.responses.models import Response

    moment = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    with Session(engine) as s:
        s.execute(update(Participant).where(Participant.id == pid).values(enrolled_on=day, consent_date=day))
        s.execute(update(Response).where(Response.participant_id == pid).values(completed_at=moment))
        s.commit()


def _assert_complete(client, user, r) -> None:
    receipt = client.get(r.headers["Peerlens-Export-Receipt"], headers=user.headers)
    assert receipt.status_code == 200 and receipt.json()["complete"] is True, receipt.text
    assert receipt.json()["bytes"] == len(r.content)


@pytest.mark.parametrize("stored", [date(1, 1, 1), date(9999, 12, 31)])
def test_stored_implausible_dates_break_nothing(client, admin, analyst, make_study, engine, stored):
    study = make_study(waves=(("baseline", 0, 0, 14, ["phq9"]), ("m1", 30, 7, 7, ["phq9"])))
    good = _enrol(client, admin, study, str(today() - timedelta(days=40))).json()
    r = client.post(
        f"/participants/{good['id']}/responses",
        json={"wave": "baseline", "instrument": "phq9", "answers": phq9_answers(1)},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    bad = _enrol(client, admin, study, str(today() - timedelta(days=40))).json()
    r = client.post(
        f"/participants/{bad['id']}/responses",
        json={"wave": "baseline", "instrument": "phq9", "answers": phq9_answers(2)},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    _store_enrolment(engine, bad["id"], stored)

    for user in (admin, analyst):
        for shape in ("long", "wide", "items"):
            r = client.get(f"/studies/{study.id}/exports/{shape}", headers=user.headers)
            assert r.status_code == 200, r.text
            rows = list(csv.DictReader(io.StringIO(r.text)))
            assert {row["participant"] for row in rows} == {good["study_code"], bad["study_code"]}, shape
            _assert_complete(client, user, r)
        r = client.get(f"/studies/{study.id}/exports/redcap", headers=user.headers)
        assert r.status_code == 200 and good["study_code"] in r.text and bad["study_code"] in r.text
        _assert_complete(client, user, r)
        r = client.get(f"/studies/{study.id}/exports/safety", headers=user.headers)
        assert r.status_code == 200
        _assert_complete(client, user, r)
    for kind, body in (("retention", {}), ("attrition", {}), ("trajectory", {"outcome": "phq9"})):
        r = client.post(f"/studies/{study.id}/analyses/{kind}", json=body, headers=analyst.headers)
        assert r.status_code < 500, (kind, r.text)
    r = client.get(f"/participants/{bad['id']}/schedule", headers=admin.headers)
    assert r.status_code == 200, r.text
    assert r.json()[0]["instruments"][0]["state"] == "completed"
    r = client.post(f"/participants/{bad['id']}/links", json={"wave": "m1"}, headers=admin.headers)
    assert r.status_code == 409, r.text
    assert r.json()["detail"][0]["loc"] == ["path", "participant_id"]
    assert r.json()["detail"][0]["type"] == "implausible_enrolment_date"
    assert client.get(f"/participants/{bad['id']}/links", headers=admin.headers).status_code == 200


# --- completeness ------------------------------------------------------------------------------


def test_empty_and_near_empty_responses_are_partial_and_resumable(client, admin, study):
    p = _enrol(client, admin, study, str(today() - timedelta(days=1))).json()
    url = f"/participants/{p['id']}/responses"
    r = client.post(url, json={"wave": "baseline", "instrument": "semcd6", "answers": {}}, headers=admin.headers)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "partial"
    three = {"gad7_1": 1, "gad7_2": 0, "gad7_3": 2}
    r = client.post(url, json={"wave": "baseline", "instrument": "gad7", "answers": three}, headers=admin.headers)
    assert r.status_code == 201 and r.json()["status"] == "partial"
    assert r.json()["scores"][0]["value"] is None
    r = client.post(
        url, json={"wave": "baseline", "instrument": "phq9", "answers": phq9_answers(1)}, headers=admin.headers
    )
    assert r.json()["status"] == "complete"

    schedule = client.get(f"/participants/{p['id']}/schedule", headers=admin.headers).json()
    baseline = schedule[0]
    assert baseline["state"] == "partial"
    states = {i["instrument"]: i["state"] for i in baseline["instruments"]}
    assert states == {"phq9": "completed", "gad7": "partial", "semcd6": "partial"}

    # The real answers later: no 409, no amendment reason needed; the same row becomes complete.
    full = {**three, "gad7_4": 1, "gad7_5": 1, "gad7_6": 0, "gad7_7": 1}
    r = client.post(url, json={"wave": "baseline", "instrument": "gad7", "answers": full}, headers=admin.headers)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "complete" and r.json()["scores"][0]["value"] == 6 and r.json()["version"] == 2
    semcd = {f"semcd6_{i}": 7 for i in range(1, 7)}
    r = client.post(url, json={"wave": "baseline", "instrument": "semcd6", "answers": semcd}, headers=admin.headers)
    assert r.status_code == 201 and r.json()["status"] == "complete"
    baseline = client.get(f"/participants/{p['id']}/schedule", headers=admin.headers).json()[0]
    assert baseline["state"] == "completed"
    # A complete response still needs amend + reason.
    r = client.post(url, json={"wave": "baseline", "instrument": "gad7", "answers": full}, headers=admin.headers)
    assert r.status_code == 409 and r.json()["detail"][0]["type"] == "already_completed"
    gad7_id = r.json()["detail"] and next(
        i["response_id"] for i in baseline["instruments"] if i["instrument"] == "gad7"
    )
    audit = client.get("/audit", params={"entity": "response", "action": "resume"}, headers=admin.headers)
    assert audit.status_code == 200, audit.text
    resumed = [e for e in audit.json() if e["entity_id"] == str(gad7_id)]
    assert len(resumed) == 1
    assert resumed[0]["before"]["status"] == "partial" and resumed[0]["after"]["status"] == "complete"


def test_a_partial_response_does_not_stop_the_personal_link(client, admin, study):
    p = _enrol(client, admin, study, str(today() - timedelta(days=1))).json()
    url = f"/participants/{p['id']}/responses"
    for inst, answers in (("phq9", phq9_answers(1)), ("gad7", {f"gad7_{i}": 1 for i in range(1, 8)})):
        r = client.post(url, json={"wave": "baseline", "instrument": inst, "answers": answers}, headers=admin.headers)
        assert r.json()["status"] == "complete"
    r = client.post(url, json={"wave": "baseline", "instrument": "semcd6", "answers": {}}, headers=admin.headers)
    assert r.json()["status"] == "partial"
    r = client.post(f"/participants/{p['id']}/links", json={"wave": "baseline"}, headers=admin.headers)
    assert r.status_code == 201, r.text  # semcd6 is still to be answered


# --- imports ------------------------------------------------------------------------------------


def _records(stamp: str) -> bytes:
    items = ",".join(f"phq9_{i}" for i in range(1, 10))
    values = ",".join("1" for _ in range(9))
    return (
        f"record_id,redcap_event_name,{items},phq9_timestamp,phq9_complete\nRC-9,baseline_arm_1,{values},{stamp},2\n"
    ).encode()


@pytest.mark.parametrize(
    "stamp, kind",
    [("0001-01-01 10:00:00", "date_implausible"), ("2009-03-01 10:00:00", "date_before_study")],
)
def test_imported_dates_out_of_range_are_reported_naming_the_field(client, admin, make_study, stamp, kind):
    study = make_study(waves=(("baseline", 0, 0, 14, ["phq9"]),))
    r = client.post(
        f"/studies/{study.id}/imports/redcap",
        files={"records": ("records.csv", _records(stamp), "text/csv")},
        data={"event_map": '{"baseline_arm_1": "baseline"}', "default_site": "north"},
        headers=admin.headers,
    )
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert (error["loc"][-1], error["type"]) == ("phq9_timestamp", kind), error
    assert client.get(f"/studies/{study.id}/participants", headers=admin.headers).json() == []


def test_policy_doctests_and_saturating_arithmetic():
    import doctest

    from api.studies import dates

    assert doctest.testmod(dates, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0
    tz = ZoneInfo("Pacific/Kiritimati")  # UTC+14: the start of year 1 there is before year 1 in UTC
    assert dates.at_midnight(date(1, 1, 1), tz).year == 1
    assert dates.add_days(date(1, 1, 1), -5) == date(1, 1, 3)
    assert dates.add_time(datetime(9999, 12, 30, tzinfo=UTC), timedelta(days=400)).year == 9999
    assert not dates.plausible(date(1, 1, 1)) and dates.plausible(today())


def test_an_imported_form_dated_before_enrolment_names_its_timestamp(client, admin, make_study, enrol):
    study = make_study(waves=(("baseline", 0, 0, 14, ["phq9"]), ("m1", 30, 7, 7, ["phq9"])))
    items = ",".join(f"phq9_{i}" for i in range(1, 10))
    ones = ",".join("1" for _ in range(9))
    enrolled = today() - timedelta(days=60)
    enrol(study, enrolled_on=str(enrolled), study_code="RC-7")  # enrolled before the import
    early = enrolled - timedelta(days=200)  # the m1 form typed with last year's date
    records = (
        f"record_id,redcap_event_name,{items},phq9_timestamp,phq9_complete\n"
        f"RC-7,baseline_arm_1,{ones},{enrolled} 10:00:00,2\n"
        f"RC-7,month_1_arm_1,{ones},{early} 10:00:00,2\n"
    ).encode()
    r = client.post(
        f"/studies/{study.id}/imports/redcap",
        files={"records": ("records.csv", records, "text/csv")},
        data={"event_map": '{"baseline_arm_1": "baseline", "month_1_arm_1": "m1"}', "default_site": "north"},
        headers=admin.headers,
    )
    assert r.status_code == 422, r.text
    locs = {(tuple(e["loc"][-2:]), e["type"]) for e in r.json()["detail"]}
    assert locs == {((2, "phq9_timestamp"), "before_consent")}  # the second data row


def test_check_dates_lists_stored_values_the_policy_refuses(client, admin, make_study, engine, db_url, monkeypatch):
    from typer.testing import CliRunner

    from api.cli import app as cli
    from api.config import get_settings

    study = make_study(waves=(("baseline", 0, 0, 14, ["phq9"]),))
    fine = _enrol(client, admin, study, str(today() - timedelta(days=3))).json()
    bad = _enrol(client, admin, study, str(today() - timedelta(days=3))).json()
    for p in (fine, bad):
        r = client.post(
            f"/participants/{p['id']}/responses",
            json={"wave": "baseline", "instrument": "phq9", "answers": phq9_answers(1)},
            headers=admin.headers,
        )
        assert r.status_code == 201, r.text
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("PEERLENS_SECRET_KEY", "test-secret")
    get_settings.cache_clear()
    try:
        ok = CliRunner().invoke(cli, ["check-dates", str(study.id)])
        assert ok.exit_code == 0 and "every stored date is in the plausible range" in ok.output, ok.output
        _store_enrolment(engine, bad["id"], date(1, 1, 1))
        found = CliRunner().invoke(cli, ["check-dates", str(study.id)])
    finally:
        get_settings.cache_clear()
    assert found.exit_code == 1
    lines = [line.split("\t") for line in found.output.splitlines() if "\t" in line]
    assert {(c, f.split()[-1], t) for c, f, _, t in lines} == {
        (bad["study_code"], "enrolled_on", "date_before_study"),
        (bad["study_code"], "consent_date", "date_before_study"),
        (bad["study_code"], "completed_at", "date_before_study"),
    }
    assert "3 implausible date(s)" in found.output


def test_a_date_given_today_is_not_moved_into_the_future():
    """A measure or demo response dated today, read at 00:06, is stamped now, not at noon (in the future)."""
    from datetime import time

    from api.studies import dates

    early = datetime(2026, 12, 2, 0, 6, tzinfo=UTC)
    assert dates.on_day(date(2026, 12, 2), time(12), TZ, now=early) == early
    # an earlier day keeps its nominal local time (noon in London is 12:00 UTC in winter)
    assert dates.on_day(date(2026, 12, 1), time(12), TZ, now=early) == datetime(2026, 12, 1, 12, tzinfo=UTC)
    # and the window accepts it
    window = dates.DateWindow(earliest=date(2021, 12, 2), today=date(2026, 12, 2), now=early)
    assert window.problems({("completed_at",): dates.on_day(date(2026, 12, 2), time(10, 30), TZ, now=early)}) == []
