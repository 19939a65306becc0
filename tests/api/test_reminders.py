"""Reminders on SQLite and PostgreSQL: plans, the set-based planner, the dispatcher over a real
SMTP server on loopback, the unsubscribe link, retries, leases, pause, listing and audit."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import Session, select

from api.audit.models import AuditEvent
from api.participants.models import Participant, ParticipantContact
from api.reminders.clock import FixedClock
from api.reminders.dispatcher import Dispatcher
from api.reminders.models import Reminder
from api.reminders.planner import plan_study
from api.reminders.timing import step_due
from api.studies.models import Study, Wave
from tests.api.reminders_support import SmsHook, SmtpServer
from tests.conftest import pam13_answers, phq9_answers

BODY = "Hello {name}, your {wave} questionnaire for {study} is ready: {link} (open until {closes_on})."


def utc(*a):
    return datetime(*a, tzinfo=UTC)


@pytest.fixture(scope="module")
def settings(settings):
    # The SMS provider of these tests is a loopback server: the operator allows that network.
    return settings.model_copy(update={"webhook_allowed_networks": "127.0.0.0/8"})


@pytest.fixture(scope="module")
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="module")
def mail_settings(settings, smtp):
    return settings.model_copy(
        update={
            "smtp_port": smtp.port,
            "smtp_host": "127.0.0.1",
            "base_url": "http://testserver",
            "reminder_max_attempts": 3,
            "reminder_backoff_seconds": 60.0,
            "reminder_lease_seconds": 300,
        }
    )


def plan_body(wave="baseline", steps=((0, 0), (3, 0), (7, 0)), quiet=("21:00", "08:00"), **extra):
    plan = {
        "wave": wave,
        "channel": "preferred",
        "steps": [{"offset_days": d, "offset_hours": h} for d, h in steps],
        "subject": "{study}: your {wave} questionnaire",
        "body": BODY,
        "form_url": "https://forms.example.org/peerlens",
        **extra,
    }
    body = {"plans": [plan]}
    if quiet:
        body["quiet_hours"] = {"start": quiet[0], "end": quiet[1]}
    return body


@pytest.fixture(scope="module")
def setup(client, admin, make_study, enrol):
    """``setup(n=3, enrolled_on=..., tz=..., body=...)`` → (study handle, [participant JSON])."""

    def _setup(n=3, enrolled_on="2026-01-05", tz="Europe/London", body=None, channel="email", **kw):
        study = make_study(time_zone=tz, **kw)
        people = []
        for i in range(n):
            contact = {
                "name": f"Person Number{i}",
                "email": f"person{i}.{study.id}@example.org",
                "phone": f"+44 7700 900{i:03d}",
                "preferred_channel": channel,
            }
            people.append(enrol(study, enrolled_on=enrolled_on, contact=contact))
        r = client.put(f"/studies/{study.id}/reminder-plans", json=body or plan_body(), headers=admin.headers)
        assert r.status_code == 200, r.text
        return study, people

    return _setup


def run_planner(engine, study_id, clock):
    with Session(engine, expire_on_commit=False) as s:
        stats = plan_study(s, s.get(Study, study_id), clock)
        s.commit()
    return stats


def reminders(engine, study_id):
    with Session(engine) as s:
        return s.exec(
            select(Reminder)
            .where(Reminder.study_id == study_id)
            .order_by(Reminder.participant_id, Reminder.wave_id, Reminder.step)
        ).all()


def audit(engine, study_id, action=None):
    with Session(engine) as s:
        q = select(AuditEvent).where(AuditEvent.study_id == study_id, AuditEvent.entity == "reminder")
        if action:
            q = q.where(AuditEvent.action == action)
        return s.exec(q).all()


# -- plans ---------------------------------------------------------------------------------------


def test_plans_round_trip_and_bad_input_is_422_naming_the_field(client, admin, analyst, make_study):
    study = make_study()
    url = f"/studies/{study.id}/reminder-plans"
    bad = [
        (plan_body(wave="nope"), ["body", "plans", 0, "wave"], "unknown_wave"),
        (
            {**plan_body(), "quiet_hours": {"start": "25:00", "end": "08:00"}},
            ["body", "quiet_hours", "start"],
            "time_format",
        ),
        (plan_body(body="Hi {email}"), ["body", "plans", 0, "body"], "template"),
        (plan_body(steps=((3, 0), (1, 0))), ["body", "plans", 0, "steps"], "steps_order"),
        (plan_body(channel="sms"), ["body", "sms_webhook_url"], "missing_webhook"),
        (plan_body(form_url="ftp://x"), ["body", "plans", 0, "form_url"], "url"),
        (plan_body(steps=((-1, 0),)), ["body", "plans", 0, "steps", 0, "offset_days"], "greater_than_equal"),
    ]
    for body, loc, kind in bad:
        r = client.put(url, json=body, headers=admin.headers)
        assert r.status_code == 422, (body, r.text)
        errors = r.json()["detail"]
        assert any(e["loc"] == loc and e["type"] == kind for e in errors), errors
    assert client.get(url, headers=admin.headers).json()["plans"] == []  # nothing half-written
    assert client.put(url, json=plan_body(), headers=analyst.headers).status_code == 403

    r = client.put(url, json=plan_body(), headers=admin.headers)
    assert r.status_code == 200, r.text
    got = client.get(url, headers=admin.headers).json()
    assert got["quiet_hours"] == {"start": "21:00", "end": "08:00"}
    assert [s["offset_days"] for s in got["plans"][0]["steps"]] == [0, 3, 7]
    assert got["plans"][0]["wave"] == "baseline" and got["paused"] is False


# -- planner ---------------------------------------------------------------------------------------


def test_planner_is_idempotent_and_follows_a_changed_window(setup, engine):
    study, people = setup(n=3)
    clock = FixedClock(utc(2026, 1, 1))
    first = run_planner(engine, study.id, clock)
    rows = reminders(engine, study.id)
    assert first.planned == 9 and len(rows) == 9
    # Quiet hours 21:00-08:00 move the midnight opening to 08:00 (GMT in January).
    assert sorted({r.due_at for r in rows}) == [utc(2026, 1, 5, 8), utc(2026, 1, 8, 8), utc(2026, 1, 12, 8)]
    assert {r.window_closes_at for r in rows} == {utc(2026, 1, 20)}
    again = run_planner(engine, study.id, clock)
    assert again.planned == 0 and len(reminders(engine, study.id)) == 9

    with Session(engine) as s:  # the study design changes: the baseline window opens two days earlier
        w = s.get(Wave, study.waves["baseline"])
        w.window_before_days = 2
        s.add(w)
        s.commit()
    moved = run_planner(engine, study.id, clock)
    rows = reminders(engine, study.id)
    assert moved.planned == 9 and len(rows) == 9
    assert sorted({r.due_at for r in rows}) == [utc(2026, 1, 3, 8), utc(2026, 1, 6, 8), utc(2026, 1, 10, 8)]


def test_planner_sql_agrees_with_core_window_across_dst(setup, engine, enrol, client, admin):
    # No quiet hours: steps at 00:00, 01:00 (missing/ambiguous on change days) and +1 day 01:00.
    body = plan_body(wave="m1", steps=((0, 0), (0, 1), (1, 1)), quiet=None)
    study, _ = setup(n=0, body=body)
    days = [date(2026, 1, 1) + timedelta(days=d) for d in range(0, 365, 1)]
    # m1 opens 23 days after enrolment: choose enrolments so openings cover both DST changes.
    wanted = [
        d
        for d in days
        if date(2026, 3, 25) <= d + timedelta(days=23) <= date(2026, 4, 1)
        or date(2026, 10, 21) <= d + timedelta(days=23) <= date(2026, 10, 28)
    ]
    for d in wanted:
        enrol(
            study, enrolled_on=d.isoformat(), contact={"email": f"x{d:%m%d}@example.org", "preferred_channel": "email"}
        )
    clock = FixedClock(utc(2026, 1, 1))

    def compare(quiet):
        run_planner(engine, study.id, clock)
        with Session(engine) as s:
            st = s.get(Study, study.id)
            wave = s.get(Wave, study.waves["m1"])
            people = {p.id: p for p in s.exec(select(Participant).where(Participant.study_id == study.id))}
            steps = [{"offset_days": 0}, {"offset_hours": 1}, {"offset_days": 1, "offset_hours": 1}]
            rows = s.exec(select(Reminder).where(Reminder.study_id == study.id)).all()
            assert len(rows) == 3 * len(wanted)
            for r in rows:
                due_at, opens_at, closes_at = step_due(st, people[r.participant_id], wave, steps[r.step], quiet)
                assert (r.due_at, r.window_opens_at, r.window_closes_at) == (due_at, opens_at, closes_at), r
        return rows

    rows = compare(None)
    # The gap (29 March 01:00) and the fold (25 October 01:00) both read as GMT.
    assert utc(2026, 3, 29, 1) in {r.due_at for r in rows} and utc(2026, 10, 25, 1) in {r.due_at for r in rows}
    r = client.put(
        f"/studies/{study.id}/reminder-plans",
        json={**body, "quiet_hours": {"start": "21:00", "end": "08:00"}},
        headers=admin.headers,
    )
    assert r.status_code == 200
    rows = compare((21 * 60, 8 * 60))
    assert {r.due_at.hour for r in rows} == {7, 8}  # 08:00 local: 07:00Z in summer time, 08:00Z in winter


def test_planner_cancels_when_withdrawn_opted_out_unreachable_or_completed(setup, engine, client, admin):
    study, people = setup(n=5)
    clock = FixedClock(utc(2026, 1, 1))
    run_planner(engine, study.id, clock)
    a, b, c, d, e = (p["id"] for p in people)
    h = admin.headers
    assert (
        client.patch(
            f"/participants/{a}",
            json={"status": "withdrawn", "status_date": "2026-01-05", "reason": "moved away"},
            headers=h,
        ).status_code
        == 200
    )
    assert client.patch(f"/participants/{b}", json={"contact": {"opt_out": True}}, headers=h).status_code == 200
    assert (
        client.patch(f"/participants/{c}", json={"contact": {"preferred_channel": "none"}}, headers=h).status_code
        == 200
    )
    for code, answers in (
        ("pam13", pam13_answers()),
        ("phq9", phq9_answers()),
        ("gad7", {f"gad7_{i}": 1 for i in range(1, 8)}),
    ):
        r = client.post(
            f"/participants/{d}/responses", json={"wave": "baseline", "instrument": code, "answers": answers}, headers=h
        )
        assert r.status_code == 201, r.text
    stats = run_planner(engine, study.id, clock)
    assert stats.by_reason == {"participant_withdrawn": 3, "opted_out": 3, "no_contact": 3, "completed": 3}
    by_pid = {}
    for r in reminders(engine, study.id):
        by_pid.setdefault(r.participant_id, set()).add((r.status, r.cancel_reason))
    assert by_pid[e] == {("pending", None)}
    assert by_pid[a] == {("cancelled", "participant_withdrawn")}
    events = audit(engine, study.id, "cancel")
    assert len(events) == 12 and {ev.after["reason"] for ev in events} >= {"opted_out", "completed"}
    assert run_planner(engine, study.id, clock).planned == 0  # cancelled rows are not planned again
    from api.participants.service import schedule

    with Session(engine) as s:  # the planner's "completed" is the participant schedule's
        assert {w.wave: w.state for w in schedule(s, s.get(Participant, d), today=date(2026, 1, 6))}[
            "baseline"
        ] == "completed"
        assert {w.wave: w.state for w in schedule(s, s.get(Participant, e), today=date(2026, 1, 6))}[
            "baseline"
        ] == "open"


# -- dispatcher --------------------------------------------------------------------------------------


def test_email_arrives_with_link_message_id_and_working_unsubscribe(setup, engine, smtp, mail_settings, client, admin):
    study, people = setup(n=2)
    clock = FixedClock(utc(2026, 1, 5, 9))
    run_planner(engine, study.id, clock)
    smtp.handler.clear()
    disp = Dispatcher(engine, mail_settings, clock=clock, study_ids=[study.id])
    stats = disp.run_once()
    disp.close()
    assert stats.sent == 2 and stats.claimed == 2
    msgs = sorted(smtp.handler.messages, key=lambda m: m["To"])
    assert [m["To"] for m in msgs] == sorted(p["contact"]["email"] for p in people)
    rows = {r.id: r for r in reminders(engine, study.id) if r.status == "sent"}
    assert {m["Message-ID"] for m in msgs} == {r.message_id for r in rows.values()}
    m = msgs[0]
    body = m.get_content()
    assert m["Subject"].endswith("your baseline questionnaire")
    assert "Person Number" in body and "open until 2026-01-19" in body
    assert "http://testserver/f/" in body or "https://forms.example.org/peerlens" in body
    unsubscribe = m["List-Unsubscribe"].strip("<>")
    assert unsubscribe.startswith("http://testserver/u/") and unsubscribe in body
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    path = unsubscribe.removeprefix("http://testserver")
    page = client.get(path)
    assert page.status_code == 200 and 'method="post"' in page.text
    pid = next(p["id"] for p in people if p["contact"]["email"] == m["To"])
    with Session(engine) as s:
        assert s.get(ParticipantContact, pid).opt_out is False  # a GET changes nothing
    assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    with Session(engine) as s:
        assert s.get(ParticipantContact, pid).opt_out is True
        left = s.exec(select(Reminder.status, Reminder.cancel_reason).where(Reminder.participant_id == pid)).all()
    assert sorted(left) == [("cancelled", "opted_out"), ("cancelled", "opted_out"), ("sent", None)]
    assert client.post(path).status_code == 200  # idempotent
    bad = client.post("/u/" + path.rsplit("/", 1)[1][:-2] + "xx")
    assert bad.status_code == 404 and bad.json()["detail"][0]["loc"] == ["path", "token"]
    assert client.get("/u/not a token").status_code in (404, 422)

    # The audit trail has every send and cancellation, without addresses or names.
    sends = audit(engine, study.id, "send")
    assert len(sends) == 2 and {ev.after["message_id"] for ev in sends} == {r.message_id for r in rows.values()}
    with Session(engine) as s:
        dump = " ".join(
            str((ev.before, ev.after, ev.reason))
            for ev in s.exec(select(AuditEvent).where(AuditEvent.study_id == study.id)).all()
        )
    assert "@example.org" not in dump and "Person Number" not in dump and "7700" not in dump


def test_a_participant_marked_completed_is_not_chased_at_send_time(setup, engine, smtp, mail_settings, client, admin):
    study, people = setup(n=1)
    clock = FixedClock(utc(2026, 1, 5, 9))
    run_planner(engine, study.id, clock)
    # the status changes after planning: the claim-time recheck cancels the row
    with Session(engine) as s:
        p = s.get(Participant, people[0]["id"])
        p.status = "completed"
        s.add(p)
        s.commit()
    smtp.handler.clear()
    stats = Dispatcher(engine, mail_settings, clock=clock, study_ids=[study.id]).run_once()
    assert stats.sent == 0 and smtp.handler.messages == []  # a participant who completed is not chased


def test_a_wave_whose_instruments_the_form_cannot_show_sends_no_reminder(setup, engine, smtp, mail_settings):
    # PAM-13 ships without its licensed wording: staff collect it (a coordinator task), nobody is reminded.
    study, _ = setup(n=1, waves=(("baseline", 0, 0, 14, ["pam13"]),))
    clock = FixedClock(utc(2026, 1, 5, 9))
    run_planner(engine, study.id, clock)
    smtp.handler.clear()
    Dispatcher(engine, mail_settings, clock=clock, study_ids=[study.id]).run_once()
    assert smtp.handler.messages == [] and reminders(engine, study.id) == []


def test_the_personal_link_fills_link(setup, engine, smtp, mail_settings):
    study, _ = setup(n=1)
    clock = FixedClock(utc(2026, 1, 5, 9))
    run_planner(engine, study.id, clock)
    smtp.handler.clear()
    Dispatcher(engine, mail_settings, clock=clock, study_ids=[study.id]).run_once()
    (m,) = smtp.handler.messages
    assert "http://testserver/f/" in m.get_content()


def test_completion_after_planning_is_rechecked_at_send_time(setup, engine, smtp, mail_settings, client, admin):
    study, people = setup(n=1)
    clock = FixedClock(utc(2026, 1, 5, 9))
    run_planner(engine, study.id, clock)
    pid = people[0]["id"]
    for code, answers in (
        ("pam13", pam13_answers()),
        ("phq9", phq9_answers()),
        ("gad7", {f"gad7_{i}": 1 for i in range(1, 8)}),
    ):
        assert (
            client.post(
                f"/participants/{pid}/responses",
                json={"wave": "baseline", "instrument": code, "answers": answers},
                headers=admin.headers,
            ).status_code
            == 201
        )
    smtp.handler.clear()
    stats = Dispatcher(engine, mail_settings, clock=clock, study_ids=[study.id]).run_once()
    assert stats.sent == 0 and stats.cancelled == 1 and smtp.handler.messages == []
    (row,) = [r for r in reminders(engine, study.id) if r.step == 0]
    assert (row.status, row.cancel_reason) == ("cancelled", "completed")


def test_retries_back_off_then_fail_visibly(setup, engine, smtp, mail_settings, client, admin):
    study, people = setup(n=2)
    temp, perm = (p["contact"]["email"] for p in people)
    smtp.handler.refuse[temp] = "451 4.3.0 mailbox busy for " + temp
    smtp.handler.refuse[perm] = "550 5.1.1 no such user " + perm
    clock = FixedClock(utc(2026, 1, 5, 9))
    run_planner(engine, study.id, clock)
    disp = Dispatcher(engine, mail_settings, clock=clock, study_ids=[study.id])
    try:
        s1 = disp.run_once()
        assert (s1.sent, s1.retried, s1.failed) == (0, 1, 1)  # 550 is permanent, 451 is retried
        assert disp.run_once().claimed == 0  # not before the backoff
        clock.advance(timedelta(seconds=59))
        assert disp.run_once().claimed == 0
        clock.advance(timedelta(seconds=1))  # 60 s after attempt 1
        assert disp.run_once().retried == 1
        clock.advance(timedelta(seconds=119))
        assert disp.run_once().claimed == 0  # 120 s after attempt 2
        clock.advance(timedelta(seconds=1))
        assert disp.run_once().failed == 1  # attempt 3 of 3
    finally:
        disp.close()
        smtp.handler.refuse.clear()
    r = client.get(f"/studies/{study.id}/reminders", params={"status": "failed"}, headers=admin.headers)
    failed = r.json()
    assert len(failed) == 2 and {f["attempts"] for f in failed} == {1, 3}
    for f in failed:
        assert f["last_error"] and "@" not in f["last_error"] and "example.org" not in f["last_error"]
    assert {ev.after["status"] for ev in audit(engine, study.id, "send_failed")} == {"pending"}
    assert len(audit(engine, study.id, "fail")) == 2


def test_expired_lease_is_reclaimed_with_the_same_message_id(setup, engine, smtp, mail_settings):
    study, _ = setup(n=1)
    clock = FixedClock(utc(2026, 1, 5, 9))
    run_planner(engine, study.id, clock)
    crashed = Dispatcher(engine, mail_settings, clock=clock, worker_id="crashed", study_ids=[study.id])
    from api.reminders.dispatcher import DispatchStats

    (out,) = crashed.claim_batch(DispatchStats())  # claimed, then the worker "dies" before sending
    crashed.close()
    other = Dispatcher(engine, mail_settings, clock=clock, worker_id="other", study_ids=[study.id])
    clock.advance(timedelta(seconds=299))
    assert other.run_once().claimed == 0  # lease (300 s) still held
    clock.advance(timedelta(seconds=1))
    smtp.handler.clear()
    assert other.run_once().sent == 1
    other.close()
    (m,) = smtp.handler.messages
    (row,) = [r for r in reminders(engine, study.id) if r.step == 0]
    assert m["Message-ID"] == out.message_id == row.message_id and row.attempts == 2 and row.status == "sent"


def test_pause_and_resume(setup, engine, smtp, mail_settings, client, admin):
    study, _ = setup(n=2)
    clock = FixedClock(utc(2026, 1, 5, 9))
    run_planner(engine, study.id, clock)
    r = client.post(f"/studies/{study.id}/reminders/pause", headers=admin.headers)
    assert r.status_code == 200 and r.json()["paused"] is True
    assert client.get(f"/studies/{study.id}/reminder-plans", headers=admin.headers).json()["paused"] is True
    disp = Dispatcher(engine, mail_settings, clock=clock, study_ids=[study.id])
    assert disp.run_once().claimed == 0
    assert client.post(f"/studies/{study.id}/reminders/resume", headers=admin.headers).json()["paused"] is False
    assert disp.run_once().sent == 2
    disp.close()
    with Session(engine) as s:
        actions = s.exec(
            select(AuditEvent.action).where(AuditEvent.study_id == study.id, AuditEvent.entity == "reminder_config")
        ).all()
    assert "pause" in actions and "resume" in actions


def test_sms_goes_to_the_study_webhook(setup, engine, mail_settings):
    with SmsHook() as hook:
        body = plan_body(sms_body="{study}: {wave} form {link}")
        body["sms_webhook_url"] = hook.url
        study, people = setup(n=1, body=body, channel="sms")
        clock = FixedClock(utc(2026, 1, 5, 9))
        run_planner(engine, study.id, clock)
        stats = Dispatcher(engine, mail_settings, clock=clock, study_ids=[study.id]).run_once()
        assert stats.sent == 1
        (got,) = hook.received
        (row,) = [r for r in reminders(engine, study.id) if r.step == 0]
        assert got["to"] == people[0]["contact"]["phone"] and got["message_id"] == row.message_id
        assert "baseline form" in got["body"] and row.channel == "sms" and row.provider_ref == "sms-1"


def test_listing_filters_pagination_and_site_scope(setup, engine, client, admin, make_user, enrol):
    study, people = setup(n=3)
    enrol(study, site="south", contact={"email": "south@example.org", "preferred_channel": "email"})
    run_planner(engine, study.id, FixedClock(utc(2026, 1, 1)))
    h = admin.headers
    url = f"/studies/{study.id}/reminders"
    all_rows = client.get(url, headers=h).json()
    assert len(all_rows) == 12 and all("email" not in r and "name" not in r for r in all_rows)
    page1 = client.get(url, params={"limit": 5}, headers=h).json()
    page2 = client.get(url, params={"limit": 5, "after": page1[-1]["id"]}, headers=h).json()
    assert [r["id"] for r in page1 + page2] == [r["id"] for r in all_rows[:10]]
    assert len(client.get(url, params={"site": "south"}, headers=h).json()) == 3
    assert len(client.get(url, params={"wave": "baseline", "status": "pending"}, headers=h).json()) == 12
    assert client.get(url, params={"wave": "m1"}, headers=h).json() == []
    r = client.get(url, params={"wave": "zz"}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "wave"]
    r = client.get(url, params={"status": "lost"}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "status"]
    south = make_user("coordinator", site_ids=[study.sites["south"]])
    assert {r["site"] for r in client.get(url, headers=south.headers).json()} == {"south"}
    mine = client.get(f"/participants/{people[0]['id']}/reminders", headers=h).json()
    assert [r["step"] for r in mine] == [0, 1, 2]
    assert client.get(f"/participants/{people[0]['id']}/reminders", headers=south.headers).status_code == 404
