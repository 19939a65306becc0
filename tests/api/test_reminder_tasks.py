"""Reminders stop when the participant has answered everything the form can show; instruments the
form cannot show become coordinator tasks; participants see the study's public title only."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import Session, select

from api.reminders.clock import FixedClock
from api.reminders.dispatcher import Dispatcher
from api.reminders.models import Reminder
from api.reminders.planner import plan_study
from api.studies.models import Study
from tests.api.reminders_support import SmtpServer
from tests.conftest import pam13_answers, phq9_answers

INTERNAL = "Peer support in heart failure"
PUBLIC = "Living Well Together"


@pytest.fixture(scope="module")
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="module")
def mail_settings(settings, smtp):
    return settings.model_copy(
        update={"smtp_port": smtp.port, "smtp_host": "127.0.0.1", "base_url": "http://testserver"}
    )


def _plan(client, admin, study):
    body = {
        "plans": [
            {
                "wave": "baseline",
                "channel": "email",
                "steps": [{"offset_days": 0, "offset_hours": 0}, {"offset_days": 3, "offset_hours": 0}],
                "subject": "{study}: your {wave} questionnaire",
                "body": "Hello {name}, {study} asks you to fill in: {link}",
            }
        ]
    }
    r = client.put(f"/studies/{study.id}/reminder-plans", json=body, headers=admin.headers)
    assert r.status_code == 200, r.text


def _run_planner(engine, study_id, now):
    with Session(engine, expire_on_commit=False) as s:
        stats = plan_study(s, s.get(Study, study_id), FixedClock(now))
        s.commit()
    return stats


def _rows(engine, study_id):
    with Session(engine) as s:
        return s.exec(select(Reminder).where(Reminder.study_id == study_id).order_by(Reminder.id)).all()


@pytest.fixture(scope="module")
def licensed_wave(client, admin, make_study, enrol):
    """Baseline asks PHQ-9 (on the form) and PAM-13 (licensed wording not loaded): enrolled two days ago."""
    study = make_study(waves=(("baseline", 0, 0, 14, ["phq9", "pam13"]),))
    r = client.patch(f"/studies/{study.id}", json={"title": INTERNAL, "public_title": PUBLIC}, headers=admin.headers)
    assert r.status_code == 200 and r.json()["public_title"] == PUBLIC
    enrolled = str(date.today() - timedelta(days=2))
    people = [
        enrol(
            study,
            enrolled_on=enrolled,
            arm="group",
            contact={
                "name": f"Pat Example{i}",
                "email": f"pat{i}.{study.id}@example.org",
                "preferred_channel": "email",
            },
        )
        for i in range(2)
    ]
    _plan(client, admin, study)
    return study, people


def test_reminders_stop_once_the_form_part_is_done(client, admin, engine, licensed_wave):
    study, (done, waiting) = licensed_wave
    now = datetime.now(UTC)
    _run_planner(engine, study.id, now)
    assert {r.participant_id for r in _rows(engine, study.id)} == {done["id"], waiting["id"]}
    r = client.post(
        f"/participants/{done['id']}/responses",
        json={"wave": "baseline", "instrument": "phq9", "answers": phq9_answers(0)},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    stats = _run_planner(engine, study.id, now)
    assert stats.by_reason == {"completed": 2}  # both steps of the participant who answered PHQ-9
    states = {(r.participant_id, r.step): (r.status, r.cancel_reason) for r in _rows(engine, study.id)}
    assert states[(done["id"], 0)] == ("cancelled", "completed")
    assert states[(waiting["id"], 0)] == ("pending", None)


def test_a_wave_with_nothing_for_the_form_sends_no_reminder(client, admin, make_study, enrol, engine):
    study = make_study(waves=(("baseline", 0, 0, 14, ["pam13"]),))
    enrol(study, enrolled_on=str(date.today()), contact={"email": "x@example.org", "preferred_channel": "email"})
    _plan(client, admin, study)
    _run_planner(engine, study.id, datetime.now(UTC))
    assert _rows(engine, study.id) == []
    tasks = client.get(f"/studies/{study.id}/tasks", headers=admin.headers).json()
    assert [(t["wave"], t["instrument"]) for t in tasks] == [("baseline", "pam13")]


def test_staff_administered_instruments_are_coordinator_tasks(client, admin, analyst, make_user, licensed_wave):
    study, people = licensed_wave
    north = make_user("coordinator", [study.sites["north"]])
    south = make_user("coordinator", [study.sites["south"]])
    r = client.get(f"/studies/{study.id}/tasks", headers=north.headers)
    assert r.status_code == 200, r.text
    tasks = r.json()
    assert sorted((t["participant_id"], t["instrument"]) for t in tasks) == sorted((p["id"], "pam13") for p in people)
    t = tasks[0]
    assert t["state"] == "open" and t["wave"] == "baseline" and "wording" in t["reason"]
    assert t["due_on"] == str(date.today() - timedelta(days=2))
    assert client.get(f"/studies/{study.id}/tasks", headers=south.headers).json() == []
    assert client.get(f"/studies/{study.id}/tasks", headers=analyst.headers).status_code == 403
    assert client.get(f"/studies/{study.id}/tasks?state=later", headers=admin.headers).status_code == 422
    # staff enter PAM-13 through the API: the task is done
    r = client.post(
        f"/participants/{people[1]['id']}/responses",
        json={"wave": "baseline", "instrument": "pam13", "answers": pam13_answers()},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    left = client.get(f"/studies/{study.id}/tasks", headers=admin.headers).json()
    assert [t["participant_id"] for t in left] == [people[0]["id"]]
    assert client.get(f"/studies/{study.id}/tasks?state=closed", headers=admin.headers).json() == []


def test_participants_see_the_public_title_only(client, admin, engine, smtp, mail_settings, licensed_wave):
    study, (_, waiting) = licensed_wave
    now = datetime.now(UTC)
    _run_planner(engine, study.id, now)
    smtp.handler.clear()
    disp = Dispatcher(engine, mail_settings, clock=FixedClock(now), study_ids=[study.id])
    disp.run_once()
    disp.close()
    msgs = [m for m in smtp.handler.messages if m["To"] == waiting["contact"]["email"]]
    assert msgs, "the participant still to answer PHQ-9 gets a reminder"
    for m in msgs:
        assert m["Subject"].startswith(PUBLIC) and INTERNAL not in m["Subject"]
        assert INTERNAL not in m.get_content() and PUBLIC in m.get_content()
    link = client.get(f"/participants/{waiting['id']}/links", headers=admin.headers).json()
    url = next(x["url"] for x in link if x.get("url"))
    page = client.get(url.removeprefix("http://testserver"))
    assert page.status_code == 200 and PUBLIC in page.text and INTERNAL not in page.text
    assert client.patch(f"/studies/{study.id}", json={"public_title": "a\nb"}, headers=admin.headers).status_code == 422


def test_a_wave_can_have_staff_administer_an_instrument(client, admin, make_study, enrol, engine):
    study = make_study(waves=(("baseline", 0, 0, 14, ["phq9"]),))
    bad = client.post(
        f"/studies/{study.id}/waves",
        json={"code": "m1", "offset_days": 30, "instruments": ["phq9"], "staff_instruments": ["gad7"]},
        headers=admin.headers,
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "staff_instruments"]
    r = client.post(
        f"/studies/{study.id}/waves",
        json={
            "code": "m1",
            "offset_days": 2,
            "window_before_days": 2,
            "window_after_days": 14,
            "instruments": ["phq9", "gad7"],
            "staff_instruments": ["gad7"],
        },
        headers=admin.headers,
    )
    assert r.status_code == 201 and r.json()["staff_instruments"] == ["gad7"]
    waves = client.get(f"/studies/{study.id}/waves", headers=admin.headers).json()
    assert [w["staff_instruments"] for w in waves] == [[], ["gad7"]]
    p = enrol(
        study,
        arm="group",
        enrolled_on=str(date.today()),
        contact={"email": "s@example.org", "preferred_channel": "email"},
    )
    body = {
        "plans": [
            {
                "wave": "m1",
                "channel": "email",
                "steps": [{"offset_days": 0, "offset_hours": 0}],
                "subject": "{study}: your {wave} questionnaire",
                "body": "Hello {name}: {link}",
            }
        ]
    }
    assert client.put(f"/studies/{study.id}/reminder-plans", json=body, headers=admin.headers).status_code == 200
    # the form offers PHQ-9 only; GAD-7 is the coordinator's
    link = client.post(f"/participants/{p['id']}/links", json={"wave": "m1"}, headers=admin.headers).json()
    offered = {i["instrument"]: (i["offered"], i["reason"]) for i in link["instruments"]}
    assert offered["phq9"] == (True, None) and offered["gad7"][0] is False and "staff" in offered["gad7"][1]
    sched = client.get(f"/participants/{p['id']}/schedule", headers=admin.headers).json()
    m1 = {i["instrument"]: i["collected_by"] for i in sched[1]["instruments"]}
    assert m1 == {"phq9": "participant", "gad7": "staff"}
    tasks = client.get(f"/studies/{study.id}/tasks", headers=admin.headers).json()
    assert [(t["wave"], t["instrument"], t["reason"]) for t in tasks] == [
        ("m1", "gad7", "administered by staff (the wave's staff_instruments)")
    ]
    now = datetime.now(UTC)
    _run_planner(engine, study.id, now)
    assert [r.status for r in _rows(engine, study.id)] == ["pending"]
    r = client.post(
        f"/participants/{p['id']}/responses",
        json={"wave": "m1", "instrument": "phq9", "answers": phq9_answers(0)},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    assert _run_planner(engine, study.id, now).by_reason == {"completed": 1}  # GAD-7 is not the participant's
    assert len(client.get(f"/studies/{study.id}/tasks", headers=admin.headers).json()) == 1
