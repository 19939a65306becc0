"""Study-known terms reach de-identification: sites, staff user names and registered sources."""

from __future__ import annotations

import uuid

import pytest
from sqlmodel import Session

from api.auth.service import create_user
from api.transcripts.terms import name_from_email, register_term_source, study_terms, unregister_term_source

ROSTER = ["Sandra Kowalski", "Desmond Afolabi"]

TEXT = (
    "Interviewer: Who did you see at Calder North?\n"
    "TT-101: Sandy mostly, and Des once. Helen Marsh booked me in at Calder North.\n"
    "TT-101: Sandra Kowalski rang on Tuesday. I'm Gloria Nwachukwu, Gloria to the group.\n"
    "TT-101: Hope that helps. I will come in May. Mrs Marsh is kind; my COPD and GP review went well.\n"
)
GONE = ["Sandy", "Des ", "Helen", "Marsh", "Calder North", "Sandra", "Kowalski", "Gloria", "Nwachukwu"]
STAY = ["Hope that helps", "I will come in May", "COPD", "GP", "Mrs ", "Tuesday"]


@pytest.fixture
def roster_source():
    def roster(session, study):
        return {"PERSON": ROSTER}

    register_term_source(roster)
    yield roster
    unregister_term_source(roster)


@pytest.fixture
def world(client, make_study, enrol, engine, admin):
    study = make_study()
    r = client.post(
        f"/studies/{study.id}/sites", json={"code": "calder", "name": "Calder North"}, headers=admin.headers
    )
    assert r.status_code == 201, r.text
    enrol(
        study,
        site="calder",
        study_code="TT-101",
        contact={"name": "Gloria Nwachukwu", "email": "gloria.n@example.org", "preferred_channel": "email"},
    )
    with Session(engine) as s:
        create_user(s, f"helen.marsh@{uuid.uuid4().hex[:8]}.example.org", "coordinator", [r.json()["id"]])
        s.commit()
    return study


def test_name_from_email():
    assert name_from_email("helen.marsh@x.org") == "Helen Marsh"
    assert name_from_email("h_marsh@x.org") is None  # one letter is no name
    assert name_from_email("desk@x.org") is None


def test_registered_sources_sites_and_staff_are_terms(client, world, admin, analyst, engine, roster_source):
    from api.studies.models import Study

    with Session(engine) as s:
        terms = study_terms(s, s.get(Study, world.id))
    assert "Helen Marsh" in terms["PERSON"] and set(ROSTER) <= set(terms["PERSON"])
    assert "Calder North" in terms["ORG"] and any(e.startswith("helen.marsh@") for e in terms["EMAIL"])

    r = client.post(
        f"/studies/{world.id}/transcripts",
        headers=admin.headers,
        data={"participants": "TT-101"},
        files={"file": ("tt.txt", TEXT.encode(), "text/plain")},
    )
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    text = client.get(f"/transcripts/{tid}", headers=analyst.headers).json()["text"]
    for s in GONE:
        assert s not in text, s
    for s in STAY:
        assert s in text, s
    # Roster full name, first name and nickname are one placeholder.
    line = text.splitlines()[1]
    assert line.startswith("TT-101: [PERSON_1] mostly")
    assert text.splitlines()[2].startswith("TT-101: [PERSON_1] rang")


def test_without_the_source_the_roster_name_is_still_caught_by_rules(client, world, admin, analyst):
    r = client.post(
        f"/studies/{world.id}/transcripts",
        headers=admin.headers,
        data={"participants": "TT-101"},
        files={"file": ("tt.txt", TEXT.encode(), "text/plain")},
    )
    assert r.status_code == 201, r.text
    text = client.get(f"/transcripts/{r.json()['id']}", headers=analyst.headers).json()["text"]
    assert "Kowalski" not in text and "Helen Marsh" not in text
