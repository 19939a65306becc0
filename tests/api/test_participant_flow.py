"""Corrections, voiding, the three kinds of withdrawal and the participant flow (CONSORT counts),
on SQLite and PostgreSQL: what exports, analyses, reminders, links and analysts see of each."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pandas as pd
import pytest
from sqlmodel import Session, select

from api.analyses.cohort import load_frame
from api.audit.models import AuditEvent
from api.auth.service import Actor
from api.reminders.clock import FixedClock
from api.reminders.models import Reminder
from api.reminders.planner import plan_study
from api.studies.models import Study
from tests.conftest import phq9_answers

WAVES = (("baseline", 0, 0, 14, ["phq9"]), ("m3", 90, 14, 14, ["phq9"]))


def _csv(client, user, study_id, shape="long") -> pd.DataFrame:
    r = client.get(f"/studies/{study_id}/exports/{shape}", params={"format": "csv"}, headers=user.headers)
    assert r.status_code == 200, r.text
    return pd.read_csv(io.BytesIO(r.content), dtype=str, keep_default_na=False)


def _answer(client, admin, pid, wave="baseline"):
    r = client.post(
        f"/participants/{pid}/responses",
        json={"wave": wave, "instrument": "phq9", "answers": phq9_answers(0)},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text


def _events(engine, pid, action):
    with Session(engine) as s:
        return s.exec(
            select(AuditEvent).where(
                AuditEvent.entity == "participant", AuditEvent.entity_id == str(pid), AuditEvent.action == action
            )
        ).all()


# -- corrections ----------------------------------------------------------------------------------


def test_enrolment_correction_needs_a_reason_and_is_audited(client, admin, make_study, make_user, enrol, engine):
    study = make_study(waves=WAVES)
    p = enrol(study, enrolled_on="2026-01-05")
    url = f"/participants/{p['id']}/corrections"
    r = client.post(url, json={"enrolled_on": "2026-01-07"}, headers=admin.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "reason"]
    body = {"enrolled_on": "2026-01-07", "site": "south", "consent_version": "v2", "reason": "typed the wrong day"}
    r = client.post(url, json=body, headers=admin.headers)
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["enrolled_on"], got["site"], got["consent"]["version"]) == ("2026-01-07", "south", "v2")
    (ev,) = _events(engine, p["id"], "correct")
    assert ev.before == {"enrolled_on": "2026-01-05", "site_id": study.sites["north"], "consent_version": "v1"}
    assert ev.after["enrolled_on"] == "2026-01-07" and ev.reason == "typed the wrong day"
    # the schedule follows the corrected date
    sched = client.get(f"/participants/{p['id']}/schedule", headers=admin.headers).json()
    assert sched[0]["due_on"] == "2026-01-07"
    # consent after the corrected enrolment date, nothing to change, unknown site: 422 naming the field
    bad = client.post(url, json={"enrolled_on": "2026-01-01", "reason": "x"}, headers=admin.headers)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "enrolled_on"]
    for day in ("0001-01-01", "2999-01-01"):
        far = client.post(url, json={"enrolled_on": day, "reason": "x"}, headers=admin.headers)
        assert far.status_code == 422 and far.json()["detail"][0]["loc"] == ["body", "enrolled_on"]
    same = client.post(url, json={"site": "south", "reason": "x"}, headers=admin.headers)
    assert same.status_code == 422 and same.json()["detail"][0]["type"] == "no_change"
    nosite = client.post(url, json={"site": "east", "reason": "x"}, headers=admin.headers)
    assert nosite.status_code == 422 and nosite.json()["detail"][0]["loc"] == ["body", "site"]
    # a coordinator of the new site only cannot move the participant away from a site they do not cover
    north = make_user("coordinator", [study.sites["north"]])
    moved = client.post(url, json={"site": "north", "reason": "x"}, headers=north.headers)
    assert moved.status_code == 404


# -- void ---------------------------------------------------------------------------------------------


def test_void_keeps_the_audit_but_removes_the_participant_everywhere(client, admin, analyst, make_study, enrol, engine):
    study = make_study(waves=WAVES)
    keep = enrol(study, contact={"email": "keep@example.org", "preferred_channel": "email"})
    dup = enrol(study, contact={"email": "dup@example.org", "preferred_channel": "email"})
    for p in (keep, dup):
        _answer(client, admin, p["id"])
    r = client.put(
        f"/studies/{study.id}/reminder-plans",
        json={
            "plans": [
                {
                    "wave": "m3",
                    "channel": "email",
                    "steps": [{"offset_days": 0, "offset_hours": 0}],
                    "subject": "Your questionnaire",
                    "body": "Hello {name}: {link}",
                }
            ]
        },
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    clock = FixedClock(datetime(2026, 3, 25, 12, tzinfo=UTC))
    with Session(engine, expire_on_commit=False) as s:
        plan_study(s, s.get(Study, study.id), clock)
        s.commit()

    r = client.post(
        f"/participants/{dup['id']}/void", json={"reason": "duplicate of " + keep["study_code"]}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["voided"] is True
    again = client.post(f"/participants/{dup['id']}/void", json={"reason": "again"}, headers=admin.headers)
    assert again.status_code == 409
    assert client.post(f"/participants/{dup['id']}/void", json={}, headers=admin.headers).status_code == 422

    # exports (staff and analysts) and the analysis frame leave the voided participant out
    for user in (admin, analyst):
        frame = _csv(client, user, study.id)
        assert set(frame["participant"]) == {keep["study_code"]}
    with Session(engine) as s:
        assert set(load_frame(s, s.get(Study, study.id), Actor.system())["participant"]) == {keep["study_code"]}
    # listings: gone by default, back for staff on request, never for analysts
    listed = client.get(f"/studies/{study.id}/participants", headers=admin.headers).json()
    assert [p["id"] for p in listed] == [keep["id"]]
    listed = client.get(f"/studies/{study.id}/participants?include_voided=true", headers=admin.headers).json()
    assert {p["id"] for p in listed} == {keep["id"], dup["id"]}
    listed = client.get(f"/studies/{study.id}/participants?include_voided=true", headers=analyst.headers).json()
    assert [p["id"] for p in listed] == [keep["id"]]
    assert client.get(f"/participants/{dup['id']}", headers=analyst.headers).status_code == 404
    # no new data, no links; pending reminders cancelled with the reason
    r = client.post(
        f"/participants/{dup['id']}/responses",
        json={"wave": "m3", "instrument": "phq9", "answers": phq9_answers(0)},
        headers=admin.headers,
    )
    assert r.status_code == 409 and r.json()["detail"][0]["type"] == "participant_voided"
    with Session(engine) as s:
        rows = s.exec(
            select(Reminder.participant_id, Reminder.status, Reminder.cancel_reason).where(
                Reminder.study_id == study.id
            )
        ).all()
    assert (dup["id"], "cancelled", "participant_voided") in rows and (keep["id"], "pending", None) in rows
    # the audit trail keeps the creation, the answers and the void
    (ev,) = _events(engine, dup["id"], "void")
    assert ev.reason.startswith("duplicate of") and len(_events(engine, dup["id"], "create")) == 1
    flow = client.get(f"/studies/{study.id}/participant-flow", headers=admin.headers).json()
    assert flow["enrolled"] == 2 and flow["voided"] == 1
    assert sum(a["allocated"] for a in flow["arms"]) == 1


# -- withdrawal kinds -----------------------------------------------------------------------------------


def test_each_kind_of_withdrawal_acts_on_reminders_exports_and_analyses(
    client, admin, analyst, make_study, enrol, engine
):
    study = make_study(waves=WAVES)
    people = [enrol(study, contact={"email": f"w{i}@example.org", "preferred_channel": "email"}) for i in range(4)]
    stay, stop_int, stop_fu, no_consent = people
    for p in people:
        _answer(client, admin, p["id"])
    h = admin.headers

    def withdraw(p, kind, day, reason):
        return client.post(
            f"/participants/{p['id']}/withdrawals", json={"kind": kind, "date": day, "reason": reason}, headers=h
        )

    assert withdraw(stop_int, "intervention", "2026-02-04", "could not travel to groups").status_code == 200
    r = withdraw(stop_fu, "follow_up", "2026-02-14", "moved away")
    assert r.status_code == 200 and r.json()["status"] == "withdrawn"
    r = withdraw(no_consent, "consent", "2026-02-24", "does not want data used")
    assert r.status_code == 200
    assert r.json()["withdrawals"] == [{"kind": "consent", "date": "2026-02-24", "reason": "does not want data used"}]
    # a second kind adds to the first; the same kind twice is a conflict; dates are checked
    both = withdraw(stop_int, "follow_up", "2026-03-01", "moved away too")
    assert [w["kind"] for w in both.json()["withdrawals"]] == ["intervention", "follow_up"]
    assert withdraw(stop_int, "intervention", "2026-03-02", "again").status_code == 409
    early = withdraw(stay, "intervention", "2025-12-01", "x")
    assert early.status_code == 422 and early.json()["detail"][0]["loc"] == ["body", "date"]
    bad = withdraw(stay, "holiday", "2026-02-01", "x")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "kind"]
    assert len(_events(engine, stop_fu["id"], "withdraw")) == 1

    # exports: consent withdrawal drops the data; the others carry their day offsets
    for user in (admin, analyst):
        frame = _csv(client, user, study.id).drop_duplicates("participant").set_index("participant")
        assert no_consent["study_code"] not in frame.index
        assert float(frame.loc[stop_int["study_code"], "intervention_stopped_days"]) == 30
        assert float(frame.loc[stop_int["study_code"], "follow_up_stopped_days"]) == 55
        assert float(frame.loc[stop_fu["study_code"], "follow_up_stopped_days"]) == 40
        assert frame.loc[stay["study_code"], "intervention_stopped_days"] == ""
    wide = _csv(client, analyst, study.id, "wide")
    assert "intervention_stopped_days" in wide.columns and no_consent["study_code"] not in set(wide["participant"])
    with Session(engine) as s:
        seen = set(load_frame(s, s.get(Study, study.id), Actor.system())["participant"])
    assert no_consent["study_code"] not in seen and stop_fu["study_code"] in seen
    # analysts cannot open the consent-withdrawn participant's record or answers
    assert client.get(f"/participants/{no_consent['id']}/responses", headers=analyst.headers).status_code == 404

    # reminders: follow-up stop and consent withdrawal stop them, stopping the intervention does not
    r = client.put(
        f"/studies/{study.id}/reminder-plans",
        json={
            "plans": [
                {
                    "wave": "m3",
                    "channel": "email",
                    "steps": [{"offset_days": 0, "offset_hours": 0}],
                    "subject": "Your questionnaire",
                    "body": "Hello {name}: {link}",
                }
            ]
        },
        headers=h,
    )
    assert r.status_code == 200, r.text
    int_only = enrol(study, contact={"email": "w9@example.org", "preferred_channel": "email"})
    assert withdraw(int_only, "intervention", "2026-01-20", "prefers online").status_code == 200
    with Session(engine, expire_on_commit=False) as s:
        plan_study(s, s.get(Study, study.id), FixedClock(datetime(2026, 3, 25, 12, tzinfo=UTC)))
        s.commit()
        planned = {r.participant_id for r in s.exec(select(Reminder).where(Reminder.study_id == study.id)).all()}
    assert planned == {stay["id"], int_only["id"]}


# -- participant flow ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flow_study(client, admin, make_study, enrol):
    """Two arms, known histories; the expected counts are worked out by hand below."""
    study = make_study(
        arms=(("peer", "intervention", 1), ("usual", "control", 1)),
        waves=(("baseline", 0, 0, 14, ["phq9"]), ("m3", 90, 14, 14, ["phq9"]), ("m6", 180, 21, 21, ["phq9"])),
    )
    h = admin.headers
    ids = {}
    for name, arm in (("a", "peer"), ("b", "peer"), ("c", "peer"), ("d", "peer"), ("e", "usual"), ("f", "usual")):
        ids[name] = enrol(study, arm=arm, enrolled_on="2025-01-06")["id"]
    for name, waves in {
        "a": ["baseline", "m3", "m6"],
        "b": ["baseline"],
        "c": ["baseline", "m3"],
        "d": ["baseline"],
        "e": ["baseline", "m3"],
        "f": [],
    }.items():
        for w in waves:
            _answer(client, admin, ids[name], w)

    def post(name, path, body):
        r = client.post(f"/participants/{ids[name]}/{path}", json=body, headers=h)
        assert r.status_code == 200, r.text

    post("b", "withdrawals", {"kind": "intervention", "date": "2025-02-05", "reason": "too far to travel"})
    post("b", "withdrawals", {"kind": "follow_up", "date": "2025-03-07", "reason": "moved away"})
    post("c", "withdrawals", {"kind": "intervention", "date": "2025-01-26", "reason": "too far to travel"})
    r = client.patch(
        f"/participants/{ids['d']}",
        json={"status": "lost_to_follow_up", "status_date": "2025-03-17", "reason": "no reply to calls"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    post("e", "withdrawals", {"kind": "consent", "date": "2025-05-01", "reason": "changed mind"})
    return study, ids


def test_a_withdrawal_or_void_recorded_in_error_is_taken_back(client, admin, make_study, make_user, enrol, engine):
    """Retracting a withdrawal (and restoring a voided participant) needs a reason, is audited with the
    fields before, returns the participant to reminders, exports and the flow, and is site-scoped."""
    study = make_study(waves=WAVES)
    today = datetime.now(UTC).date().isoformat()
    p = enrol(study, enrolled_on=today, contact={"email": "retract.me@example.org", "preferred_channel": "email"})
    plan = {"wave": "baseline", "channel": "email", "steps": [{"offset_days": 1, "offset_hours": 0}]}
    plan |= {"subject": "Your questionnaire", "body": "Hello {name}: {link}"}
    r = client.put(f"/studies/{study.id}/reminder-plans", json={"plans": [plan]}, headers=admin.headers)
    assert r.status_code == 200, r.text

    def reminders():
        with Session(engine) as s:
            plan_study(s, s.get(Study, study.id), FixedClock(datetime.now(UTC)))
            s.commit()
            return [x.status for x in s.exec(select(Reminder).where(Reminder.participant_id == p["id"]))]

    assert reminders() == ["pending"]
    r = client.post(
        f"/participants/{p['id']}/withdrawals",
        json={"kind": "follow_up", "date": today, "reason": "entered for the wrong person"},
        headers=admin.headers,
    )
    assert r.status_code == 200 and r.json()["status"] == "withdrawn", r.text
    assert reminders() == ["cancelled"]
    url = f"/participants/{p['id']}/withdrawals/follow_up/retract"
    r = client.post(url, json={}, headers=admin.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "reason"]
    other_site = make_user("coordinator", [study.sites["south"]])
    assert client.post(url, json={"reason": "x"}, headers=other_site.headers).status_code == 404
    r = client.post(url, json={"reason": "recorded against the wrong participant"}, headers=admin.headers)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["status"] == "active" and got["withdrawals"] == []
    (event,) = _events(engine, p["id"], "retract_withdrawal")
    assert event.reason == "recorded against the wrong participant"
    assert event.before["follow_up_stopped_on"] == today and event.after["status"] == "active"
    # Nothing left to retract: a conflict naming the kind.
    r = client.post(url, json={"reason": "again"}, headers=admin.headers)
    assert r.status_code == 409 and r.json()["detail"][0]["loc"] == ["path", "kind"]
    assert reminders() == ["pending"]  # the reminder of the open wave goes again
    # A void recorded in error: restored, and back in the export.
    _answer(client, admin, p["id"])
    r = client.post(f"/participants/{p['id']}/void", json={"reason": "looked like a duplicate"}, headers=admin.headers)
    assert r.status_code == 200, r.text
    assert p["study_code"] not in set(_csv(client, admin, study.id)["participant"])
    r = client.post(
        f"/participants/{p['id']}/restore", json={"reason": "not a duplicate after all"}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    assert p["study_code"] in set(_csv(client, admin, study.id)["participant"])
    (restored,) = _events(engine, p["id"], "restore")
    assert restored.reason == "not a duplicate after all"
    r = client.post(f"/participants/{p['id']}/restore", json={"reason": "again"}, headers=admin.headers)
    assert r.status_code == 409


def test_participant_flow_counts_per_arm_match_the_histories(client, admin, analyst, make_user, flow_study):
    study, ids = flow_study
    r = client.get(f"/studies/{study.id}/participant-flow", headers=admin.headers)
    assert r.status_code == 200, r.text
    flow = r.json()
    assert flow["enrolled"] == 6 and flow["voided"] == 0 and flow["blinded"] is False
    # The blinded analyst: neutral letters, the same counts, and no discontinuation (it names the control arm).
    blind = client.get(f"/studies/{study.id}/participant-flow", headers=analyst.headers).json()
    assert blind["blinded"] is True and [a["arm"] for a in blind["arms"]] == ["A", "B"]
    assert sorted(a["allocated"] for a in blind["arms"]) == [2, 4]
    assert all(a["discontinued_intervention"] is None for a in blind["arms"])
    assert "peer" not in str(blind) and "usual" not in str(blind)
    peer, usual = flow["arms"]
    assert [peer["arm"], usual["arm"]] == ["peer", "usual"]
    assert peer["allocated"] == 4 and usual["allocated"] == 2
    assert peer["discontinued_intervention"] == {"n": 2, "reasons": {"too far to travel": 2}}
    m3 = {w["wave"]: w for w in peer["waves"]}["m3"]
    # a and c answered; b stopped follow-up on day 60 (<= 90); d was declared lost on day 70
    assert m3["responded"] == 2
    assert m3["withdrew"] == {"n": 1, "reasons": {"moved away": 1}}
    assert m3["lost_to_follow_up"] == {"n": 1, "reasons": {"no reply to calls": 1}}
    assert (m3["missed"], m3["not_yet_due"], m3["data_withdrawn"]["n"]) == (0, 0, 0)
    m6 = {w["wave"]: w for w in peer["waves"]}["m6"]
    assert (m6["responded"], m6["withdrew"]["n"], m6["lost_to_follow_up"]["n"], m6["missed"]) == (1, 1, 1, 1)
    for arm in (peer, usual):
        for w in arm["waves"]:  # the buckets partition the arm at every wave
            parts = w["responded"] + w["missed"] + w["not_yet_due"]
            parts += w["withdrew"]["n"] + w["lost_to_follow_up"]["n"] + w["data_withdrawn"]["n"]
            assert parts == arm["allocated"]
    base = {w["wave"]: w for w in usual["waves"]}["baseline"]
    assert base["responded"] == 0 and base["data_withdrawn"] == {"n": 1, "reasons": {"changed mind": 1}}
    assert base["missed"] == 1  # f never answered and the window has closed
    assert peer["analysed"] == {"n": 4, "excluded": {"n": 0, "reasons": {}}}
    assert usual["analysed"]["n"] == 0
    assert usual["analysed"]["excluded"] == {
        "n": 2,
        "reasons": {"consent for use of data withdrawn": 1, "no outcome data": 1},
    }
    # coordinators count their own sites (everyone here is at north)
    south = make_user("coordinator", [study.sites["south"]])
    scoped = client.get(f"/studies/{study.id}/participant-flow", headers=south.headers).json()
    assert [a["allocated"] for a in scoped["arms"]] == [0, 0]
