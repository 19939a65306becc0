"""Seeded identifiers never reach analysts, error bodies or logs.

A study gets participants with distinctive names, emails, phones and dates of birth, free text
in an instrument item flagged as an identifier, and link tokens. Every GET route an analyst may
call is then called, the error paths are provoked, and every body and every captured log line
is scanned for the seeds.

Calendar dates are identifiers too: a participant enrolled long ago (so no date of theirs falls on
the days the test's own records are created) has every calendar date of theirs — enrolment,
consent, wave windows, completion, a date answer — scanned for in every analyst response. The
REST reads and the exports apply one policy: with ``date_mode: shift`` both move the same dates by
the same days.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.routing import APIRoute

import instruments
from instruments.model import Instrument, Item, Scale

SEEDS = {
    "name": "Philippa Quernmouth-Abernethy",
    "email": "p.quernmouth.5173@example.org",
    "phone": "+44 7700 900519",
    "date_of_birth": "1943-07-21",
}
FREE_TEXT = "lives with Ambrose Quernmouth at 14 Larkspur Wynd"
STORY = "my neighbour Tamsin Vellacott-Ruddock drove me to the clinic"
#: Process notes typed by staff (a fidelity note, an adaptation's description) that name a person.
PROCESS_TEXT = "Perpetua Ashcombe-Lund"
SECRET_WORDS = [
    "Quernmouth",
    "Abernethy",
    "quernmouth.5173",  # the email's number, not "5173" alone: microseconds and request ids hold that by chance
    "900519",
    "1943-07-21",
    "Larkspur",
    "Vellacott",
    "Tarrant",
    "900733",
    "Ashcombe",
]
#: A peer supporter's identifiers (the supporter vault): never shown to analysts either.
SUPPORTER = {"name": "Gwendolyn Tarrant-Oakes", "email": "g.tarrant.oakes@example.org", "phone": "+44 7700 900733"}

NOTES = Instrument(
    code="ctxnotes",
    name="Context notes",
    version="1",
    citation="test",
    licence="test",
    items=(
        Item(code="ctxnotes_support", text="Who helps you at home?", kind="text", scored=False, identifier=True),
        # Not an identifier by definition: a coordinator flags it for the study.
        Item(code="ctxnotes_story", text="Tell us about your week", kind="text", scored=False),
        Item(code="ctxnotes_visits", text="Visits per month", kind="integer", min=0, max=60),
        Item(code="ctxnotes_lastvisit", text="Last hospital stay", kind="date", scored=False),
    ),
    scales=(
        Scale(
            code="ctxnotes_visits",
            label="Visits",
            items=("ctxnotes_visits",),
            method="item",
            min_items=1,
            range=(0, 60),
        ),
    ),
)


@pytest.fixture(scope="module")
def seeded(client, app, make_study, enrol, make_user, admin):
    instruments.register(NOTES, replace=True)
    tz = ZoneInfo("Europe/London")
    study = make_study(waves=(("baseline", 0, 0, 14, ["phq9", "ctxnotes"]),))
    coord = make_user("coordinator", [study.sites["north"]])
    p = enrol(
        study,
        site="north",
        enrolled_on=str(datetime.now(tz).date() - timedelta(days=1)),
        arm="group",
        contact={**SEEDS, "preferred_channel": "sms"},
        headers=coord.headers,
    )
    r = client.post(
        f"/participants/{p['id']}/responses",
        headers=coord.headers,
        json={
            "wave": "baseline",
            "instrument": "ctxnotes",
            "answers": {"ctxnotes_support": FREE_TEXT, "ctxnotes_story": STORY, "ctxnotes_visits": 3},
        },
    )
    assert r.status_code == 201, r.text
    flag = client.put(
        f"/studies/{study.id}/export-settings",
        headers=admin.headers,
        json={"free_text_items": ["ctxnotes.ctxnotes_story"]},
    )
    assert flag.status_code == 200, flag.text
    # the coordinator sees what was entered: the seeds are really stored
    assert SEEDS["email"] in client.get(f"/participants/{p['id']}", headers=coord.headers).text
    link = client.post(f"/participants/{p['id']}/links", json={"wave": "baseline"}, headers=coord.headers)
    assert link.status_code == 201
    # enrolled 100 days ago: every calendar date of theirs is far from the days records are made
    enrolled = datetime.now(tz).date() - timedelta(days=100)
    old = enrol(
        study,
        site="north",
        enrolled_on=str(enrolled),
        arm="group",
        contact={"email": "old.timer.3391@example.org", "preferred_channel": "email"},
        headers=coord.headers,
    )
    consent = enrolled - timedelta(days=2)
    r = client.patch(
        f"/participants/{old['id']}",
        headers=coord.headers,
        json={"consent": {"date": str(consent), "version": "v2"}, "reason": "re-consented"},
    )
    assert r.status_code == 200, r.text
    completed = datetime.combine(enrolled + timedelta(days=2), datetime.min.time(), tz) + timedelta(hours=10)
    last_visit = enrolled - timedelta(days=30)
    for instrument, answers in (
        ("phq9", {f"phq9_{i}": 1 for i in range(1, 10)}),
        ("ctxnotes", {"ctxnotes_visits": 2, "ctxnotes_lastvisit": str(last_visit)}),
    ):
        r = client.post(
            f"/participants/{old['id']}/responses",
            headers=coord.headers,
            json={
                "wave": "baseline",
                "instrument": instrument,
                "answers": answers,
                "completed_at": completed.isoformat(),
            },
        )
        assert r.status_code == 201, r.text
    # delivery records of the old participant: a supporter (identifiers in the vault), a group, a
    # delivered session with its register, a call
    r = client.post(
        f"/studies/{study.id}/delivery/supporters",
        headers=coord.headers,
        json={"code": "PS-1", "site": "north", "arm": "group", "start_date": str(enrolled), "identifiers": SUPPORTER},
    )
    assert r.status_code == 201, r.text
    supporter = r.json()["id"]
    assert SUPPORTER["email"] in client.get(f"/delivery/supporters/{supporter}", headers=coord.headers).text
    g = client.post(
        f"/studies/{study.id}/delivery/groups",
        headers=coord.headers,
        json={"code": "G1", "site": "north", "arm": "group", "supporter_ids": [supporter]},
    ).json()
    r = client.post(
        f"/delivery/groups/{g['id']}/members",
        headers=coord.headers,
        json={"participant_id": old["id"], "joined_on": str(enrolled)},
    )
    assert r.status_code == 201, r.text
    day = str(enrolled + timedelta(days=10))
    s = client.post(
        f"/studies/{study.id}/delivery/sessions",
        headers=coord.headers,
        json={
            "group_id": g["id"],
            "supporter_id": supporter,
            "planned_date": day,
            "delivered_on": day,
            "duration_minutes": 90,
        },
    ).json()
    r = client.put(
        f"/delivery/sessions/{s['id']}/attendance",
        headers=coord.headers,
        json={"records": [{"participant_id": old["id"], "status": "attended"}]},
    )
    assert r.status_code == 200, r.text
    r = client.post(
        f"/participants/{old['id']}/peer-contacts",
        headers=coord.headers,
        json={"kind": "call", "on_date": day, "duration_minutes": 15, "supporter_id": supporter},
    )
    assert r.status_code == 201, r.text
    # a fidelity rating of that session and an adaptation whose free text names the supporter
    r = client.post(
        f"/studies/{study.id}/fidelity/checklists", headers=admin.headers, json={"template": "peer_group_session"}
    )
    assert r.status_code == 201, r.text
    items = [i["code"] for i in r.json()["definition"]["items"]]
    r = client.post(
        f"/studies/{study.id}/fidelity/ratings",
        headers=admin.headers,
        json={
            "session_id": s["id"],
            "checklist": "peer_group_session",
            "method": "live_observation",
            "rated_on": day,
            "answers": dict.fromkeys(items, 2),
            "note": f"{PROCESS_TEXT} ran it well",
        },
    )
    assert r.status_code == 201, r.text
    r = client.post(
        f"/studies/{study.id}/adaptations",
        headers=coord.headers,
        json={
            "arm": "group",
            "site": "north",
            "session_id": s["id"],
            "adapted_on": day,
            "phase": "implementation",
            "what": "content",
            "level": "group",
            "nature": "adding",
            "planned": False,
            "decided_by": ["peer_supporter"],
            "reasons": ["recipient_preferences"],
            "description": f"{PROCESS_TEXT} added a walk",
            "reason_detail": f"asked by {PROCESS_TEXT}",
        },
    )
    assert r.status_code == 201, r.text
    today = datetime.now(tz).date()
    calendar = {str(enrolled + timedelta(days=k)) for k in range(-45, 400)} - {
        str(today + timedelta(days=k)) for k in (-1, 0, 1)
    }
    yield {
        "study": study,
        "p": p,
        "coord": coord,
        "link": link.json()["token"],
        "old": old,
        "calendar": calendar,
        "enrolled": enrolled,
        "completed": completed,
        "last_visit": last_visit,
    }
    instruments.unregister("ctxnotes")


def _fill(path: str, seeded, shape: str = "long", who: str = "p") -> str:
    return (
        path.replace("{study_id}", str(seeded["study"].id))
        .replace("{participant_id}", str(seeded[who]["id"]))
        .replace("{wave_code}", "baseline")
        .replace("{code}", "phq9")
        .replace("{token}", seeded["link"])
        .replace("{shape}", shape)
    )


def _urls(path: str, seeded) -> list[str]:
    # Export routes are read once per shape, as JSON too, so the scan covers what analysts download;
    # participant routes are read for both participants.
    if "{participant_id}" in path:
        return [_fill(path, seeded, who=who) for who in ("p", "old")]
    if "{shape}" not in path:
        return [_fill(path, seeded)]
    shapes = (
        "long",
        "wide",
        "items",
        "delivery",
        "dose",
        "delivery_sessions",
        "supporter_training",
        "fidelity",
        "adaptations",
    )
    urls = [_fill(path, seeded, shape) for shape in shapes]
    return urls + [u + "?format=json" for u in urls if u.endswith(shapes)]


def _secrets_in(text: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [w for w in (*SECRET_WORDS, *extra) if w in text]


def test_analyst_sees_no_identifier_on_any_route(client, app, seeded, analyst):
    seen = exports = 0
    for route in app.routes:
        if not isinstance(route, APIRoute) or "GET" not in route.methods or route.path.startswith("/f/"):
            continue
        for url in _urls(route.path, seeded):
            r = client.get(url, headers=analyst.headers)
            assert r.status_code < 500, url
            assert not _secrets_in(r.text, (seeded["link"],)), f"{url} leaks to analysts"
            dates = sorted(d for d in seeded["calendar"] if d in r.text)
            assert not dates, f"{url} shows analysts calendar dates of a participant: {dates[:5]}"
            seen += r.status_code == 200
            exports += r.status_code == 200 and "/exports/" in url
    assert seen >= 10  # the scan really read data
    assert exports >= 6  # ... including the exports in every shape
    resp = client.get(f"/participants/{seeded['p']['id']}/responses", headers=analyst.headers).json()
    notes = [x for x in resp if x["instrument"] == "ctxnotes"][0]
    assert notes["answers"]["ctxnotes_visits"] == 3  # study data stays; the flagged free text does not
    assert notes["answers"].get("ctxnotes_support") in (None, "<identifier>")
    assert notes["answers"].get("ctxnotes_story") in (None, "<identifier>")
    # what is left of the dates is what the exports give: days since enrolment
    old = client.get(f"/participants/{seeded['old']['id']}", headers=analyst.headers).json()
    assert old["enrolled_on"] is None and old["consent"]["date"] is None and old["created_at"] is None
    assert old["dates"] == "relative"
    resp = client.get(f"/participants/{seeded['old']['id']}/responses", headers=analyst.headers).json()
    ctx = [x for x in resp if x["instrument"] == "ctxnotes"][0]
    assert ctx["completed_at"] is None and ctx["days"] == 2
    assert ctx["answers"]["ctxnotes_lastvisit"] == -30
    long = client.get(f"/studies/{seeded['study'].id}/exports/long?format=json", headers=analyst.headers).json()
    rows = [r for r in long if r["participant"] == seeded["old"]["study_code"]]
    assert rows and {r["days"] for r in rows} == {2} and {r["completed_at"] for r in rows} == {None}


def test_shifted_dates_are_the_same_on_rest_reads_and_exports(client, seeded, analyst, admin):
    """One policy: with date_mode shift, REST reads and exports move a participant's dates alike."""
    from datetime import date

    from api.exports.deid import shift_days

    sid, old = seeded["study"].id, seeded["old"]
    assert client.put(f"/studies/{sid}/export-settings", json={"date_mode": "shift"}, headers=admin.headers).is_success
    try:
        shift = shift_days("test-secret", sid, old["id"])
        assert shift > 0  # the test is only meaningful if the dates do move
        person = client.get(f"/participants/{old['id']}", headers=analyst.headers).json()
        assert person["dates"] == "shift"
        assert date.fromisoformat(person["enrolled_on"]) == seeded["enrolled"] - timedelta(days=shift)
        resp = client.get(f"/participants/{old['id']}/responses", headers=analyst.headers).json()
        ctx = [x for x in resp if x["instrument"] == "ctxnotes"][0]
        rest_completed = datetime.fromisoformat(ctx["completed_at"].replace("Z", "+00:00"))
        assert rest_completed == seeded["completed"] - timedelta(days=shift)
        assert ctx["answers"]["ctxnotes_lastvisit"] == str(seeded["last_visit"] - timedelta(days=shift))
        items = client.get(f"/studies/{sid}/exports/items?format=json", headers=analyst.headers).json()
        mine = [r for r in items if r["participant"] == old["study_code"]]
        exported = {r["item"]: r for r in mine}
        assert exported["ctxnotes_lastvisit"]["value_text"] == ctx["answers"]["ctxnotes_lastvisit"]
        long = client.get(f"/studies/{sid}/exports/long?format=json", headers=analyst.headers).json()
        stamps = {r["completed_at"] for r in long if r["participant"] == old["study_code"]}
        assert {datetime.fromisoformat(x.replace("Z", "+00:00")) for x in stamps} == {rest_completed}
        schedule = client.get(f"/participants/{old['id']}/schedule", headers=analyst.headers).json()
        assert schedule[0]["due_on"] == person["enrolled_on"]
        # staff keep calendar dates
        staff = client.get(f"/participants/{old['id']}", headers=seeded["coord"].headers).json()
        assert staff["enrolled_on"] == str(seeded["enrolled"]) and staff["dates"] == "calendar"
    finally:
        client.put(f"/studies/{sid}/export-settings", json={"date_mode": "relative"}, headers=admin.headers)


def test_error_bodies_do_not_echo_identifiers(client, seeded):
    pid = seeded["p"]["id"]
    h = seeded["coord"].headers
    bad = [
        ("PATCH", f"/participants/{pid}", {"contact": {"email": "not-an-email Quernmouth"}}),
        ("PATCH", f"/participants/{pid}", {"contact": {"phone": "Quernmouth 900519"}}),
        ("PATCH", f"/participants/{pid}", {"contact": {"date_of_birth": "2999-01-01"}, "x": "Larkspur"}),
        (
            "POST",
            f"/studies/{seeded['study'].id}/participants",
            {
                "site": "north",
                "enrolled_on": "2026-01-05",
                "consent": {"date": "2026-01-05", "version": "v1"},
                "contact": {"name": "Abernethy", "email": "Quernmouth@", "preferred_channel": "email"},
            },
        ),
        (
            "POST",
            f"/participants/{pid}/responses",
            {"wave": "baseline", "instrument": "ctxnotes", "answers": {"ctxnotes_support": ["Larkspur"]}},
        ),
    ]
    for method, url, body in bad:
        r = client.request(method, url, json=body, headers=h)
        assert r.status_code == 422, (url, r.text)
        assert r.json()["detail"][0]["loc"], r.text
        assert not _secrets_in(r.text), f"{method} {url} echoes an identifier: {r.text}"


def test_logs_hold_no_identifier_and_no_link_token(client, seeded, analyst, admin, caplog):
    with caplog.at_level(logging.DEBUG):
        client.get(f"/f/{seeded['link']}")
        client.post(f"/f/{seeded['link']}", data={"csrf": "x", "instrument": "phq9"})
        client.patch(
            f"/participants/{seeded['p']['id']}",
            headers=seeded["coord"].headers,
            json={"contact": {"email": "bad Quernmouth"}},
        )
        client.get(f"/participants/{seeded['p']['id']}", headers=analyst.headers)
        client.get(f"/studies/{seeded['study'].id}/audit", headers=admin.headers)
    text = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert not _secrets_in(text, (seeded["link"],))


def test_audit_trail_names_contact_fields_not_values(client, seeded, admin):
    events = client.get(f"/studies/{seeded['study'].id}/audit", headers=admin.headers).json()["items"]
    assert events
    # Free text flagged after it was entered, and process notes staff typed, stay in the admin-only,
    # append-only trail as recorded; identifier items and contact fields never enter it.
    leaked = [w for w in _secrets_in(str(events), (seeded["link"],)) if w not in ("Vellacott", "Ashcombe")]
    assert not leaked


def test_analysts_get_no_upload_time_of_a_transcript(client, seeded, analyst):
    """An interview's upload time dates the interview: analysts see none, staff do."""
    sid, p = seeded["study"].id, seeded["p"]
    files = {"file": ("week.txt", b"Interviewer: How was it?\nParticipant: Fine.\n", "text/plain")}
    r = client.post(
        f"/studies/{sid}/transcripts",
        files=files,
        data={"participants": p["study_code"]},
        headers=seeded["coord"].headers,
    )
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    staff = client.get(f"/studies/{sid}/transcripts", headers=seeded["coord"].headers).json()
    assert all(t["created_at"] for t in staff)
    listed = client.get(f"/studies/{sid}/transcripts", headers=analyst.headers).json()
    assert listed and all(t["created_at"] is None for t in listed)
    assert client.get(f"/transcripts/{tid}", headers=analyst.headers).json()["created_at"] is None
