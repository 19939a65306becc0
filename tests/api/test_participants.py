"""Enrolment, randomisation, contacts, status and schedules."""

from __future__ import annotations

from collections import Counter
from datetime import date

from api.participants import randomisation
from tests.conftest import phq9_answers

CONTACT = {
    "name": "Ada Example",
    "email": "ada@example.org",
    "phone": "+44 20 7946 0000",
    "date_of_birth": "1950-02-03",
    "preferred_channel": "email",
}


def test_enrol_with_arm_and_generated_code(client, make_study, enrol):
    study = make_study()
    p = enrol(study, arm="usual_care")
    assert p["arm"] == "usual_care" and p["randomised"] is False
    assert p["study_code"].startswith("P-") and p["status"] == "active"
    assert p["consent"] == {"date": "2026-01-05", "version": "v1"}


def test_randomisation_is_balanced_by_site_and_reproducible_from_seed(client, admin, make_study, enrol):
    study = make_study(arms=(("a", "intervention", 2), ("b", "control", 1)), seed="fixed-seed")
    got = {"north": [], "south": []}
    for i in range(24):
        site = "north" if i % 3 else "south"
        got[site].append(enrol(study, site=site)["arm"])
    for site, seq in got.items():
        expected = [randomisation.arm_at("fixed-seed", site, [("a", 2), ("b", 1)], i)[0] for i in range(len(seq))]
        assert seq == expected
    report = client.get(f"/studies/{study.id}/allocation", headers=admin.headers).json()
    assert report["randomisation_seed"] == "fixed-seed"
    for site in ("north", "south"):
        rows = [a for a in report["allocations"] if a["site"] == site]
        assert [a["sequence"] for a in rows] == list(range(len(rows)))
        # every completed block honours the 2:1 ratio
        for block in {a["block"] for a in rows}:
            members = [a for a in rows if a["block"] == block]
            if len(members) == members[0]["block_size"]:
                c = Counter(a["arm"] for a in members)
                assert c["a"] == 2 * c["b"]


def test_allocation_hidden_from_coordinators_and_analysts(client, make_study, make_user, analyst):
    study = make_study()
    coord = make_user("coordinator", [study.sites["north"]])
    for user in (coord, analyst):
        assert client.get(f"/studies/{study.id}/allocation", headers=user.headers).status_code == 403


def test_contacts_visible_to_admin_and_site_coordinator_only(client, admin, analyst, make_study, make_user, enrol):
    study = make_study()
    north = make_user("coordinator", [study.sites["north"]])
    south = make_user("coordinator", [study.sites["south"]])
    p = enrol(study, site="north", contact=CONTACT)
    assert p["contact"]["email"] == "ada@example.org"
    assert client.get(f"/participants/{p['id']}", headers=admin.headers).json()["contact"]["name"] == "Ada Example"
    assert client.get(f"/participants/{p['id']}", headers=north.headers).json()["contact"]["phone"]
    assert client.get(f"/participants/{p['id']}", headers=analyst.headers).json()["contact"] is None
    listed = client.get(f"/studies/{study.id}/participants", headers=analyst.headers).json()
    assert all(x["contact"] is None for x in listed)
    # another site's coordinator does not even see the participant
    assert client.get(f"/participants/{p['id']}", headers=south.headers).status_code == 404
    assert p["id"] not in [
        x["id"] for x in client.get(f"/studies/{study.id}/participants", headers=south.headers).json()
    ]


def test_contact_changes_are_audited_by_field_name_only(client, admin, make_study, enrol):
    study = make_study()
    p = enrol(study, contact=CONTACT)
    r = client.patch(
        f"/participants/{p['id']}",
        headers=admin.headers,
        json={"contact": {"email": "new.address@example.org", "opt_out": True}, "reason": "moved"},
    )
    assert r.status_code == 200 and r.json()["contact"]["opt_out"] is True
    events = client.get(
        "/audit", params={"entity": "participant_contact", "entity_id": str(p["id"])}, headers=admin.headers
    ).json()
    assert [e["after"] for e in events] == [
        {"fields": ["date_of_birth", "email", "name", "opt_out", "phone", "preferred_channel"]},
        {"fields": ["email", "opt_out"]},
    ]
    dump = str(client.get("/audit", params={"study_id": study.id, "limit": 1000}, headers=admin.headers).json())
    for value in ("ada@example.org", "new.address@example.org", "Ada Example", "7946", "1950-02-03"):
        assert value not in dump


def test_coordinator_enrols_only_at_own_site(client, make_study, make_user, enrol):
    study = make_study()
    north = make_user("coordinator", [study.sites["north"]])
    enrol(study, site="north", headers=north.headers)
    r = enrol(study, site="south", headers=north.headers, expect=404)
    assert r["detail"][0]["loc"] == ["body", "site"]


def test_withdrawal_keeps_data_and_blocks_new_data(client, admin, make_study, enrol):
    study = make_study()
    p = enrol(study, enrolled_on="2026-01-05")
    r = client.post(
        f"/participants/{p['id']}/responses",
        headers=admin.headers,
        json={
            "wave": "baseline",
            "instrument": "phq9",
            "answers": phq9_answers(),
            "completed_at": "2026-01-06T09:00:00Z",
        },
    )
    assert r.status_code == 201
    r = client.patch(
        f"/participants/{p['id']}",
        headers=admin.headers,
        json={"status": "withdrawn", "status_date": "2026-02-01", "reason": "no longer wishes to take part"},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "withdrawn" and body["status_date"] == "2026-02-01"
    assert len(client.get(f"/participants/{p['id']}/responses", headers=admin.headers).json()) == 1
    r = client.post(
        f"/participants/{p['id']}/responses",
        headers=admin.headers,
        json={"wave": "baseline", "instrument": "gad7", "answers": {}, "completed_at": "2026-01-06T09:00:00Z"},
    )
    assert r.status_code == 409 and r.json()["detail"][0]["type"] == "participant_withdrawn"
    events = client.get(
        "/audit", params={"entity": "participant", "entity_id": str(p["id"])}, headers=admin.headers
    ).json()
    assert events[-1]["action"] == "status_change" and events[-1]["reason"] == "no longer wishes to take part"
    r = client.patch(f"/participants/{p['id']}", headers=admin.headers, json={"status": "withdrawn"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "missing_status_date"


def test_schedule_states_and_windows_in_study_time_zone(client, admin, make_study, enrol):
    from sqlmodel import Session

    from api.participants.service import schedule

    study = make_study(time_zone="Pacific/Auckland")
    p = enrol(study, enrolled_on="2026-01-05")
    # The baseline window closes on 01-19 (Auckland). 11:30 UTC on 01-19 is already 00:30 on 01-20
    # there, so the response is late although its UTC date is in the window.
    r = client.post(
        f"/participants/{p['id']}/responses",
        headers=admin.headers,
        json={
            "wave": "baseline",
            "instrument": "phq9",
            "answers": phq9_answers(),
            "completed_at": "2026-01-19T11:30:00Z",
        },
    )
    assert r.json()["out_of_window"] is True
    sched = client.get(f"/participants/{p['id']}/schedule", headers=admin.headers).json()
    base = sched[0]
    assert base["due_on"] == "2026-01-05" and base["window_closes_on"] == "2026-01-19"
    assert base["opens_at"] == "2026-01-04T11:00:00Z"  # midnight NZDT (UTC+13)
    assert base["state"] == "partial"
    assert {i["instrument"]: i["state"] for i in base["instruments"]} == {
        "pam13": "pending",
        "phq9": "completed",
        "gad7": "pending",
    }
    from api.participants.models import Participant

    engine = client.app.state.engine
    with Session(engine) as s:
        part = s.get(Participant, p["id"])
        states = [w.state for w in schedule(s, part, today=date(2026, 2, 5))]
        assert states == ["partial", "open", "upcoming", "upcoming", "upcoming"]
        states = [w.state for w in schedule(s, part, today=date(2026, 2, 20))]
        assert states[1] == "missed"
        # m6 closes in winter (NZST, UTC+12): the UTC boundary follows daylight saving
        m6 = schedule(s, part, today=date(2026, 2, 20))[3]
        assert m6.closes_at.isoformat().endswith("12:00:00+00:00")


def test_participant_of_another_study_is_not_found(client, admin, make_study, enrol):
    a, b = make_study(), make_study()
    p = enrol(a)
    assert client.get(f"/studies/{a.id}/participants/{p['id']}", headers=admin.headers).status_code == 200
    r = client.get(f"/studies/{b.id}/participants/{p['id']}", headers=admin.headers)
    assert r.status_code == 404 and r.json()["detail"][0]["loc"] == ["path", "participant_id"]


def test_list_pagination_and_filters(client, admin, make_study, enrol):
    study = make_study()
    ids = [enrol(study, site="south" if i % 2 else "north")["id"] for i in range(5)]
    page1 = client.get(f"/studies/{study.id}/participants", params={"limit": 2}, headers=admin.headers).json()
    page2 = client.get(
        f"/studies/{study.id}/participants", params={"limit": 2, "after": page1[-1]["id"]}, headers=admin.headers
    ).json()
    assert [x["id"] for x in page1 + page2] == ids[:4]
    south = client.get(f"/studies/{study.id}/participants", params={"site": "south"}, headers=admin.headers).json()
    assert len(south) == 2
