"""Safety monitoring on SQLite and PostgreSQL: alerts raised in the submission's transaction, the
fallback when nobody is named, notifications through the staff outbox and a real SMTP server,
escalation on an injected clock, adverse events with overdue follow-up, scoping, the DMC views
and the ``safety`` export."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlmodel import Session, select

from api.audit.models import AuditEvent
from api.reminders.clock import FixedClock
from api.reminders.dispatcher import Dispatcher
from api.reminders.models import StaffNotification
from api.safety.escalation import sweep
from api.safety.models import SafetyAlert
from tests.api.reminders_support import SmtpServer
from tests.conftest import phq9_answers

TZ = ZoneInfo("Europe/London")
ITEM9 = phq9_answers(0) | {"phq9_9": 1}  # total 1: only the item-9 rule
SEVERE = phq9_answers(3) | {"phq9_9": 0}  # total 24: only the total rule
CLINICAL_WORDS = ("phq", "depress", "suicid", "self-harm", "harm", "score", "item", "anxiety", "gad")


@pytest.fixture(scope="module")
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="module")
def mail_settings(settings, smtp):
    return settings.model_copy(
        update={"smtp_port": smtp.port, "smtp_host": "127.0.0.1", "base_url": "https://peerlens.example.org"}
    )


def today() -> str:
    return str(datetime.now(TZ).date() - timedelta(days=1))


@pytest.fixture(scope="module")
def trial(client, admin, make_study, make_user, enrol):
    """A study with a PI, a safety contact at north (none at south) and the GAD-7 rule."""

    def _make(contacts=True, pi=True, rules=True):
        study = make_study()
        coord_n = make_user("coordinator", [study.sites["north"]])
        coord_s = make_user("coordinator", [study.sites["south"]])
        emails = {u.id: _email(client, u) for u in (coord_n, coord_s)}
        pi_user = make_user("admin")
        body = {"escalate_after_hours": 24, "sae_follow_up_days": 7}
        if pi:
            body["pi"] = _email(client, pi_user)
        if contacts:
            body["contacts"] = {"north": [emails[coord_n.id]]}
        if rules:
            body["rules"] = [
                {
                    "code": "gad7_severe",
                    "instrument": "gad7",
                    "kind": "scale",
                    "target": "gad7",
                    "op": ">=",
                    "value": 15,
                }
            ]
        r = client.put(f"/studies/{study.id}/safety/settings", json=body, headers=admin.headers)
        assert r.status_code == 200, r.text
        north = enrol(study, site="north", enrolled_on=today(), arm="group", contact={"name": "Alma Quist"})
        south = enrol(study, site="south", enrolled_on=today(), arm="usual_care")
        return {"study": study, "coord_n": coord_n, "coord_s": coord_s, "pi": pi_user, "north": north, "south": south}

    return _make


def _email(client, user) -> str:
    return client.get("/me", headers=user.headers).json()["email"]


def submit(client, who, participant, answers, instrument="phq9", wave="baseline", key=None, **extra):
    headers = dict(who.headers)
    if key:
        headers["Idempotency-Key"] = key
    return client.post(
        f"/participants/{participant['id']}/responses",
        json={"wave": wave, "instrument": instrument, "answers": answers, **extra},
        headers=headers,
    )


def outbox(engine, study_id):
    with Session(engine) as s:
        return s.exec(
            select(StaffNotification).where(StaffNotification.study_id == study_id).order_by(StaffNotification.id)
        ).all()


def audit(engine, entity, entity_id=None):
    with Session(engine) as s:
        q = select(AuditEvent).where(AuditEvent.entity == entity)
        if entity_id is not None:
            q = q.where(AuditEvent.entity_id == str(entity_id))
        return s.exec(q.order_by(AuditEvent.id)).all()


def dispatch(engine, settings, at=None):
    clock = FixedClock(at or datetime.now(UTC))
    d = Dispatcher(engine, settings, clock=clock)
    try:
        return d.run_once()
    finally:
        d.close()


# ---- alerts from answers -------------------------------------------------------------------------


def test_rest_submission_raises_one_alert_mails_the_contact_and_a_retry_raises_nothing(
    client, admin, trial, engine, mail_settings, smtp
):
    t = trial()
    sid = t["study"].id
    r = submit(client, t["coord_n"], t["north"], ITEM9, key="tablet-1")
    assert r.status_code == 201, r.text
    alerts = r.json()["alerts"]
    assert [a["rule"] for a in alerts] == ["phq9_item9"] and alerts[0]["status"] == "open"
    again = submit(client, t["coord_n"], t["north"], ITEM9, key="tablet-1")
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert [a["id"] for a in again.json()["alerts"]] == [alerts[0]["id"]]

    listed = client.get(f"/studies/{sid}/alerts", headers=admin.headers).json()
    assert len(listed) == 1
    a = listed[0]
    assert (a["rule"], a["observed"], a["status"], a["routing"], a["response_mode"]) == (
        "phq9_item9",
        1.0,
        "open",
        "site_contacts",
        "rest",
    )
    assert a["study_code"] == t["north"]["study_code"] and a["wave"] == "baseline"

    notes = outbox(engine, sid)
    assert [(n.kind, n.user_id, n.status) for n in notes] == [("alert_raised", t["coord_n"].id, "pending")]
    created = audit(engine, "safety_alert", a["id"])
    assert [e.action for e in created] == ["create"] and created[0].after["notified_user_ids"] == [t["coord_n"].id]
    assert created[0].request_id and created[0].source == "api"

    smtp.handler.clear()
    stats = dispatch(engine, mail_settings)
    assert stats.staff_sent == 1
    [msg] = smtp.handler.messages
    assert msg["To"] == _email(client, t["coord_n"])
    subject = msg["Subject"].lower()
    assert not any(w in subject for w in CLINICAL_WORDS) and not any(
        ch.isdigit() for ch in subject.replace(f"#{a['id']}", "")
    )
    body = msg.get_content()
    assert t["north"]["study_code"] in body and f"https://peerlens.example.org/alerts/{a['id']}" in body
    assert "Alma" not in body and not any(w in body.lower() for w in ("phq", "depress", "suicid", "self-harm"))
    assert "List-Unsubscribe" not in msg
    sent = audit(engine, "staff_notification", notes[0].id)
    assert [e.action for e in sent] == ["send"] and sent[0].after["message_id"] == msg["Message-ID"]
    assert dispatch(engine, mail_settings).staff_sent == 0  # sent once


def test_amendment_meeting_the_same_rule_raises_nothing_but_a_new_rule_raises_its_alert(client, trial, engine):
    t = trial()
    assert submit(client, t["coord_n"], t["north"], ITEM9).status_code == 201
    amended = submit(client, t["coord_n"], t["north"], ITEM9 | {"phq9_1": 1}, amend=True, reason="paper copy")
    assert amended.status_code == 201 and [a["rule"] for a in amended.json()["alerts"]] == ["phq9_item9"]
    both = SEVERE | {"phq9_9": 2}
    amended = submit(client, t["coord_n"], t["north"], both, amend=True, reason="paper copy, second page")
    assert sorted(a["rule"] for a in amended.json()["alerts"]) == ["phq9_item9", "phq9_severe"]
    with Session(engine) as s:
        rows = s.exec(select(SafetyAlert).where(SafetyAlert.study_id == t["study"].id)).all()
    assert sorted(r.rule_code for r in rows) == ["phq9_item9", "phq9_severe"]


def test_a_study_rule_raises_an_alert_and_answers_below_every_rule_raise_none(client, admin, trial):
    t = trial()
    calm = submit(client, t["coord_n"], t["north"], phq9_answers(1))  # total 9, item 9 = 1
    assert [a["rule"] for a in calm.json()["alerts"]] == ["phq9_item9"]
    r = submit(client, t["coord_n"], t["north"], {f"gad7_{i}": 2 for i in range(1, 8)}, instrument="gad7")
    assert r.json()["alerts"] == []  # 14 < 15
    r = submit(client, t["coord_n"], t["south"], {f"gad7_{i}": 3 for i in range(1, 8)}, instrument="gad7")
    assert r.status_code == 404  # another site's participant
    r = submit(client, admin, t["south"], {f"gad7_{i}": 3 for i in range(1, 8)}, instrument="gad7")
    assert [a["rule"] for a in r.json()["alerts"]] == ["gad7_severe"]
    rules = client.get(f"/studies/{t['study'].id}/safety/settings", headers=admin.headers).json()["rules"]
    assert {(r["code"], r["origin"]) for r in rules} >= {
        ("phq9_item9", "instrument"),
        ("phq9_severe", "instrument"),
        ("gad7_severe", "study"),
    }


def test_failed_submission_writes_no_alert(client, trial, engine):
    t = trial()
    r = submit(client, t["coord_n"], t["north"], ITEM9 | {"phq9_3": 7})
    assert r.status_code == 422
    with Session(engine) as s:
        assert s.exec(select(SafetyAlert).where(SafetyAlert.study_id == t["study"].id)).all() == []
    assert outbox(engine, t["study"].id) == []


def test_redcap_import_raises_the_alert_in_the_import_transaction_and_a_dry_run_raises_none(
    client, admin, trial, engine
):
    t = trial()
    code = t["north"]["study_code"]
    fields = ",".join(f"phq9_{i}" for i in range(1, 11))
    values = ",".join(str(ITEM9.get(f"phq9_{i}", "")) for i in range(1, 11))
    csv = (
        f"record_id,redcap_event_name,redcap_data_access_group,{fields},phq9_complete\n"
        f"{code},baseline_arm_1,north,{values},2\n"
    )

    def post(dry):
        return client.post(
            f"/studies/{t['study'].id}/imports/redcap",
            files={"records": ("records.csv", csv.encode(), "text/csv")},
            data={"event_map": '{"baseline_arm_1": "baseline"}', "dry_run": str(dry).lower()},
            headers=admin.headers,
        )

    assert post(True).status_code == 200
    assert client.get(f"/studies/{t['study'].id}/alerts", headers=admin.headers).json() == []
    r = post(False)
    assert r.status_code == 200, r.text
    [a] = client.get(f"/studies/{t['study'].id}/alerts", headers=admin.headers).json()
    assert (a["rule"], a["response_mode"]) == ("phq9_item9", "import")
    assert [e.source for e in audit(engine, "safety_alert", a["id"])] == ["import"]
    assert [n.kind for n in outbox(engine, t["study"].id)] == ["alert_raised"]
    assert post(False).status_code == 422  # the same file again: a duplicate, nothing written
    assert len(client.get(f"/studies/{t['study'].id}/alerts", headers=admin.headers).json()) == 1


# ---- nobody named: the fallback and the warnings -------------------------------------------------


def test_without_contacts_alerts_go_to_the_pi_and_without_a_pi_to_every_admin_with_warnings(
    client, admin, trial, engine
):
    t = trial(contacts=False, pi=True)
    status = client.get(f"/studies/{t['study'].id}/safety/status", headers=t["coord_n"].headers).json()
    assert any("site north has no safety contact" in w and "principal investigator" in w for w in status["warnings"])
    assert not any("south" in w for w in status["warnings"])  # a coordinator sees their own sites
    r = submit(client, t["coord_n"], t["north"], ITEM9)
    [alert] = client.get(f"/studies/{t['study'].id}/alerts", headers=admin.headers).json()
    assert alert["routing"] == "pi" and alert["id"] == r.json()["alerts"][0]["id"]
    assert [n.user_id for n in outbox(engine, t["study"].id)] == [t["pi"].id]

    t = trial(contacts=False, pi=False)
    status = client.get(f"/studies/{t['study'].id}/safety/status", headers=admin.headers).json()
    assert any("no principal investigator" in w for w in status["warnings"])
    assert sum("has no safety contact: its alerts go to every administrator" in w for w in status["warnings"]) == 2
    submit(client, t["coord_n"], t["north"], ITEM9)
    [alert] = client.get(f"/studies/{t['study'].id}/alerts", headers=admin.headers).json()
    assert alert["routing"] == "admins"
    from api.auth.models import User

    with Session(engine) as s:
        admins = set(s.exec(select(User.id).where(User.role == "admin", User.active)).all())
    assert {n.user_id for n in outbox(engine, t["study"].id)} == admins
    assert admin.id in admins


def test_settings_reject_bad_input_naming_the_field(client, admin, trial, make_user):
    t = trial()
    url = f"/studies/{t['study'].id}/safety/settings"
    analyst = make_user("analyst")
    cases = [
        ({"pi": _email(client, t["coord_n"])}, ["body", "pi"], "pi_not_admin"),
        ({"pi": "nobody@example.org"}, ["body", "pi"], "unknown_user"),
        ({"contacts": {"east": []}}, ["body", "contacts", "east"], "unknown_site"),
        (
            {"contacts": {"south": [_email(client, t["coord_n"])]}},
            ["body", "contacts", "south", 0],
            "contact_not_allowed",
        ),
        ({"contacts": {"north": [_email(client, analyst)]}}, ["body", "contacts", "north", 0], "contact_not_allowed"),
        (
            {
                "rules": [
                    {"code": "x", "instrument": "gad7", "kind": "item", "target": "gad7_99", "op": ">", "value": 1}
                ]
            },
            ["body", "rules", 0, "target"],
            "unknown_target",
        ),
        (
            {"rules": [{"code": "x", "instrument": "nope", "kind": "scale", "target": "x", "op": ">", "value": 1}]},
            ["body", "rules", 0, "instrument"],
            "unknown_instrument",
        ),
        (
            {
                "rules": [
                    {
                        "code": "phq9_item9",
                        "instrument": "phq9",
                        "kind": "scale",
                        "target": "phq9",
                        "op": ">",
                        "value": 1,
                    }
                ]
            },
            ["body", "rules", 0, "code"],
            "duplicate_rule",
        ),
        ({"escalate_after_hours": 0}, ["body", "escalate_after_hours"], "greater_than_equal"),
        (
            {"crisis_numbers": [{"label": "x", "number": "call me"}]},
            ["body", "crisis_numbers", 0, "number"],
            "string_pattern_mismatch",
        ),
    ]
    for body, loc, kind in cases:
        r = client.put(url, json=body, headers=admin.headers)
        assert r.status_code == 422, (body, r.text)
        assert (r.json()["detail"][0]["loc"], r.json()["detail"][0]["type"]) == (loc, kind), body
    assert client.put(url, json={"pi": None}, headers=t["coord_n"].headers).status_code == 403
    before = client.get(url, headers=admin.headers).json()
    assert client.put(url, json={}, headers=admin.headers).json()["contacts"] == before["contacts"]  # {} keeps all


# ---- escalation on the injected clock ---------------------------------------------------------


def test_an_unacknowledged_alert_escalates_to_the_pi_then_to_every_admin_until_acknowledged(
    client, admin, trial, engine, settings
):
    t = trial()
    submit(client, t["coord_n"], t["north"], ITEM9)
    [alert] = client.get(f"/studies/{t['study'].id}/alerts", headers=admin.headers).json()
    raised = datetime.fromisoformat(alert["raised_at"])
    factory = lambda: Session(engine, expire_on_commit=False)  # noqa: E731
    clock = FixedClock(raised + timedelta(hours=23, minutes=59))
    assert sweep(factory, clock, study_ids=[t["study"].id]).escalated == 0
    clock.set(raised + timedelta(hours=24, minutes=1))
    assert sweep(factory, clock, study_ids=[t["study"].id]).escalated == 1
    assert sweep(factory, clock, study_ids=[t["study"].id]).escalated == 0  # once per interval
    after = client.get(f"/alerts/{alert['id']}", headers=admin.headers).json()
    assert after["escalation_level"] == 1 and after["status"] == "open"
    kinds = [(n.kind, n.user_id) for n in outbox(engine, t["study"].id)]
    assert kinds == [("alert_raised", t["coord_n"].id), ("alert_escalated", t["pi"].id)]
    clock.set(raised + timedelta(hours=48, minutes=1))
    assert sweep(factory, clock, study_ids=[t["study"].id]).escalated == 1
    second = [n for n in outbox(engine, t["study"].id) if n.topic.endswith(":escalation:2")]
    from api.auth.models import User

    with Session(engine) as s:
        admins = set(s.exec(select(User.id).where(User.role == "admin", User.active)).all())
    assert {n.user_id for n in second} == admins | {t["pi"].id}
    assert [
        e.after["escalation_level"] for e in audit(engine, "safety_alert", alert["id"]) if e.action == "escalate"
    ] == [1, 2]

    r = client.post(f"/alerts/{alert['id']}/acknowledge", json={}, headers=t["coord_n"].headers)
    assert r.status_code == 200, r.text
    assert r.json()["owner"]["id"] == t["coord_n"].id and r.json()["notifications"]["pending"] == 0
    assert {n.status for n in outbox(engine, t["study"].id)} == {"cancelled"}  # nothing was sent yet
    clock.set(raised + timedelta(days=10))
    assert sweep(factory, clock, study_ids=[t["study"].id]).escalated == 0  # acknowledged alerts are not chased


def test_a_worker_that_was_stopped_sends_one_escalation_at_the_level_reached(client, admin, trial, engine):
    t = trial()
    submit(client, t["coord_n"], t["north"], ITEM9)
    [alert] = client.get(f"/studies/{t['study'].id}/alerts", headers=admin.headers).json()
    raised = datetime.fromisoformat(alert["raised_at"])
    factory = lambda: Session(engine, expire_on_commit=False)  # noqa: E731
    assert sweep(factory, FixedClock(raised + timedelta(hours=73)), study_ids=[t["study"].id]).escalated == 1
    escalations = [n.topic for n in outbox(engine, t["study"].id) if n.kind == "alert_escalated"]
    assert escalations and all(x.endswith(":escalation:3") for x in escalations)


# ---- the alert life cycle ------------------------------------------------------------------------


def test_acknowledge_resolve_and_assign_rules(client, admin, trial, make_user):
    t = trial()
    submit(client, t["coord_n"], t["north"], ITEM9)
    [alert] = client.get(f"/studies/{t['study'].id}/alerts", headers=admin.headers).json()
    url = f"/alerts/{alert['id']}"
    assert client.get(url, headers=t["coord_s"].headers).status_code == 404
    assert client.post(url + "/acknowledge", json={}, headers=t["coord_s"].headers).status_code == 404
    r = client.patch(url, json={"owner_id": t["coord_s"].id}, headers=admin.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "owner_not_allowed"
    assert client.patch(url, json={"owner_id": t["pi"].id}, headers=admin.headers).json()["owner"]["id"] == t["pi"].id
    r = client.post(url + "/resolve", json={"action": "no_action"}, headers=t["coord_n"].headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "note"]
    r = client.post(
        url + "/resolve", json={"action": "called_participant", "note": "spoke, safe"}, headers=t["coord_n"].headers
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["action"], body["owner"]["id"]) == ("resolved", "called_participant", t["pi"].id)
    assert body["acknowledged_at"] and body["resolved_by"] == t["coord_n"].id
    r = client.post(url + "/acknowledge", json={}, headers=admin.headers)
    assert r.status_code == 409 and r.json()["detail"][0]["type"] == "already_resolved"
    assert client.get(f"/studies/{t['study'].id}/alerts?status=open", headers=admin.headers).json() == []
    assert len(client.get(f"/studies/{t['study'].id}/alerts?status=resolved", headers=admin.headers).json()) == 1
    assert (
        client.get(f"/participants/{t['north']['id']}/alerts", headers=t["coord_n"].headers).json()[0]["id"]
        == alert["id"]
    )


# ---- adverse events ------------------------------------------------------------------------------


def ae(**extra) -> dict:
    body = {
        "description": "Fell on the stairs after a group walk; bruised knee",
        "onset_date": today(),
        "seriousness": [],
        "severity": "mild",
        "relatedness": "unlikely",
        "expectedness": "expected",
        "reporter": "participant",
    }
    return body | extra


def test_adverse_events_are_checked_classified_and_scoped(client, admin, trial, engine):
    t = trial()
    url = f"/participants/{t['north']['id']}/adverse-events"
    h = t["coord_n"].headers
    r = client.post(url, json=ae(), headers=h)
    assert r.status_code == 201, r.text
    mild = r.json()
    assert (mild["serious"], mild["related"], mild["susar"], mild["follow_up_due_at"], mild["overdue"]) == (
        False,
        False,
        False,
        None,
        False,
    )
    assert outbox(engine, t["study"].id) == []  # a non-serious event notifies nobody
    day_before = str(datetime.fromisoformat(today()).date() - timedelta(days=1))
    tomorrow = str(datetime.now(TZ).date() + timedelta(days=1))
    bad = [
        (ae(onset_date=day_before), ["body", "onset_date"], "before_consent"),
        (ae(onset_date=tomorrow), ["body", "onset_date"], "in_future"),
        (ae(resolution_date=day_before), ["body", "resolution_date"], "before_onset"),
        (ae(seriousness=["death"]), ["body", "outcome"], "inconsistent_outcome"),
        (ae(outcome="fatal"), ["body", "outcome"], "inconsistent_outcome"),
        (ae(peer_supporter_id=4), ["body", "peer_supporter_involved"], "inconsistent"),
        (ae(seriousness=["hospitalised"]), ["body", "seriousness", 0], "literal_error"),
        (ae(severity="grave"), ["body", "severity"], "literal_error"),
        (ae(alert_id=999999), ["body", "alert_id"], "unknown_alert"),
        (
            ae(peer_supporter_involved=True, peer_supporter_id=999999),
            ["body", "peer_supporter_id"],
            "unknown_reference",
        ),
        (
            ae(group_session_involved=True, delivery_session_id=999999),
            ["body", "delivery_session_id"],
            "unknown_reference",
        ),
        ({k: v for k, v in ae().items() if k != "reporter"}, ["body", "reporter"], "missing"),
    ]
    for body, loc, kind in bad:
        r = client.post(url, json=body, headers=h)
        assert r.status_code == 422, (body, r.text)
        assert (r.json()["detail"][0]["loc"], r.json()["detail"][0]["type"]) == (loc, kind), body
    r = client.post(
        f"/studies/{t['study'].id}/delivery/supporters",
        json={"code": "PS-12", "site": "north", "start_date": today()},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    supporter_id = r.json()["id"]
    r = client.post(
        url,
        json=ae(
            description="Admitted overnight with chest pain during a peer session",
            seriousness=["hospitalisation", "life_threatening"],
            severity="severe",
            relatedness="possibly",
            expectedness="unexpected",
            reporter="peer_supporter",
            peer_supporter_involved=True,
            peer_supporter_id=supporter_id,
            group_session_involved=True,
        ),
        headers=h,
    )
    assert r.status_code == 201, r.text
    sae = r.json()
    assert sae["serious"] and sae["susar"] and sae["seriousness"] == ["life_threatening", "hospitalisation"]
    due = datetime.fromisoformat(sae["follow_up_due_at"])
    assert due - datetime.fromisoformat(sae["reported_at"]) == timedelta(days=7) and not sae["overdue"]
    notes = [(n.kind, n.user_id) for n in outbox(engine, t["study"].id)]
    assert notes == [("sae_reported", t["pi"].id), ("sae_reported", t["coord_n"].id)]
    [created] = [e for e in audit(engine, "adverse_event", sae["id"]) if e.action == "create"]
    assert created.after["notified_user_ids"] == [t["pi"].id, t["coord_n"].id]
    assert client.get(f"/adverse-events/{sae['id']}", headers=t["coord_s"].headers).status_code == 404
    assert client.get(f"/studies/{t['study'].id}/adverse-events", headers=t["coord_s"].headers).json() == []
    listed = client.get(f"/studies/{t['study'].id}/adverse-events?serious=true", headers=admin.headers).json()
    assert [e["id"] for e in listed] == [sae["id"]]
    assert client.post(url, json=ae(), headers=t["coord_s"].headers).status_code == 404


def test_corrections_need_a_reason_and_becoming_serious_notifies(client, admin, trial, engine):
    t = trial()
    event = client.post(f"/participants/{t['north']['id']}/adverse-events", json=ae(), headers=admin.headers).json()
    url = f"/adverse-events/{event['id']}"
    r = client.patch(url, json={"severity": "moderate"}, headers=admin.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "reason"]
    r = client.patch(url, json={"reason": "nothing"}, headers=admin.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "no_changes"
    r = client.patch(
        url, json={"reason": "GP letter: admitted", "seriousness": ["hospitalisation"]}, headers=t["coord_n"].headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["serious"] and r.json()["version"] == 2
    assert [n.kind for n in outbox(engine, t["study"].id)] == ["sae_reported", "sae_reported"]
    [upd] = [e for e in audit(engine, "adverse_event", event["id"]) if e.action == "update"]
    assert upd.reason == "GP letter: admitted"
    assert upd.before["seriousness"] == [] and upd.after["seriousness"] == ["hospitalisation"]


def test_a_serious_event_without_follow_up_shows_as_overdue_until_followed_up(client, admin, trial, engine):
    t = trial()
    sid = t["study"].id
    reported = datetime.now(UTC) - timedelta(days=8)
    r = client.post(
        f"/participants/{t['north']['id']}/adverse-events",
        json=ae(seriousness=["hospitalisation"], severity="severe", reported_at=reported.isoformat()),
        headers=admin.headers,
    )
    sae = r.json()
    assert sae["overdue"] is True
    assert datetime.fromisoformat(sae["follow_up_due_at"]) == reported + timedelta(days=7)
    assert [
        e["id"] for e in client.get(f"/studies/{sid}/adverse-events?overdue=true", headers=admin.headers).json()
    ] == [sae["id"]]
    assert client.get(f"/studies/{sid}/safety/status", headers=admin.headers).json()["overdue_serious_events"] == 1
    factory = lambda: Session(engine, expire_on_commit=False)  # noqa: E731
    now = FixedClock(datetime.now(UTC))
    assert sweep(factory, now, study_ids=[sid]).overdue_notices == 1
    assert sweep(factory, now, study_ids=[sid]).overdue_notices == 0  # one notice per missed due date
    overdue_notes = [n for n in outbox(engine, sid) if n.kind == "sae_overdue"]
    assert {n.user_id for n in overdue_notes} == {t["pi"].id, t["coord_n"].id}

    r = client.post(f"/adverse-events/{sae['id']}/follow-ups", json={"note": "Discharged home"}, headers=admin.headers)
    assert r.status_code == 201, r.text
    followed = r.json()
    assert followed["overdue"] is False and len(followed["follow_ups"]) == 1
    assert datetime.fromisoformat(followed["follow_up_due_at"]) > datetime.now(UTC) + timedelta(days=6)
    assert {n.status for n in outbox(engine, sid) if n.kind == "sae_overdue"} == {"cancelled"}
    assert client.get(f"/studies/{sid}/adverse-events?overdue=true", headers=admin.headers).json() == []
    r = client.post(
        f"/adverse-events/{sae['id']}/follow-ups",
        json={"note": "Recovered fully", "outcome": "recovered", "resolution_date": today()},
        headers=admin.headers,
    )
    done = r.json()
    assert (done["outcome"], done["resolution_date"], done["follow_up_due_at"]) == ("recovered", today(), None)
    # the injected clock: nothing is due any more, however late
    assert sweep(factory, FixedClock(datetime.now(UTC) + timedelta(days=90)), study_ids=[sid]).overdue_notices == 0


# ---- DMC views and the export --------------------------------------------------------------------


@pytest.fixture(scope="module")
def dmc(client, admin, trial, enrol):
    """group: 3 participants (P1 two events, one serious and related; P2 one mild); usual care: 2
    participants (P4 one fatal event)."""
    t = trial()
    study = t["study"]
    people = {
        "P1": enrol(study, site="north", enrolled_on=today(), arm="group"),
        "P2": enrol(study, site="north", enrolled_on=today(), arm="group"),
        "P3": enrol(study, site="south", enrolled_on=today(), arm="group"),
        "P4": enrol(study, site="south", enrolled_on=today(), arm="usual_care"),
    }
    # trial() enrolled one more in each of group (north) and usual_care (south): N = 4 and 2.
    events = [
        ("P1", ae(severity="moderate", relatedness="not_related")),
        ("P1", ae(seriousness=["hospitalisation"], severity="severe", relatedness="possibly", description="=cmd()")),
        ("P2", ae()),
        ("P4", ae(seriousness=["death"], outcome="fatal", severity="severe", relatedness="not_related")),
    ]
    for who, body in events:
        r = client.post(f"/participants/{people[who]['id']}/adverse-events", json=body, headers=admin.headers)
        assert r.status_code == 201, r.text
    return t


def _rows(summary, measure, level=None):
    return {
        r["arm"]: (r["n_participants"], r["N"], r["n_events"])
        for r in summary["rows"]
        if r["measure"] == measure and (level is None or r["level"] == level)
    }


def test_dmc_summary_counts_by_arm_and_masks_arms_for_those_who_may_not_see_allocation(client, admin, analyst, dmc):
    sid = dmc["study"].id
    s = client.get(f"/studies/{sid}/safety/summary", headers=admin.headers).json()
    assert s["masked"] is False
    assert {a["arm"]: (a["kind"], a["n"]) for a in s["arms"]} == {
        "group": ("intervention", 4),
        "online": ("intervention", 0),
        "usual_care": ("control", 2),
    }
    assert _rows(s, "any") == {"group": (2, 4, 3), "usual_care": (1, 2, 1)}
    assert _rows(s, "serious") == {"group": (1, 4, 1), "usual_care": (1, 2, 1)}
    assert _rows(s, "seriousness", "death") == {"group": (0, 4, 0), "usual_care": (1, 2, 1)}
    assert _rows(s, "related") == {"group": (1, 4, 1), "usual_care": (0, 2, 0)}
    assert _rows(s, "severity", "severe") == {"group": (1, 4, 1), "usual_care": (1, 2, 1)}
    group_any = next(r for r in s["rows"] if r["arm"] == "group" and r["measure"] == "any")
    # 2/4, exact 95% limits found by bisection on the binomial tails (P(X >= 2 | p) = 0.025 and
    # P(X <= 2 | p) = 0.025): 0.0675860, 0.9324140
    assert group_any["ci_lower"] == pytest.approx(0.0675860, abs=1e-6)
    assert group_any["ci_upper"] == pytest.approx(0.9324140, abs=1e-6)

    masked = client.get(f"/studies/{sid}/safety/summary", headers=analyst.headers).json()
    assert masked["masked"] is True
    assert [a["arm"] for a in masked["arms"]] == ["Arm A", "Arm B", "Arm C"]
    assert sorted(a["n"] for a in masked["arms"]) == [0, 2, 4]
    assert all(a["kind"] is None for a in masked["arms"])
    text = str(masked)
    assert not any(w in text for w in ("group", "online", "usual_care"))
    assert {r["arm"] for r in masked["rows"]} <= {"Arm A", "Arm B", "Arm C"}
    assert sorted(_rows(masked, "any").values()) == sorted(_rows(s, "any").values())
    again = client.get(f"/studies/{sid}/safety/summary", headers=analyst.headers).json()
    assert _rows(again, "any") == _rows(masked, "any")  # the same mask every time
    assert client.get(f"/studies/{sid}/safety/summary", headers=dmc["coord_n"].headers).status_code == 403


def test_line_listing_for_admins_as_json_and_csv(client, admin, analyst, dmc):
    sid = dmc["study"].id
    rows = client.get(f"/studies/{sid}/safety/line-listing", headers=admin.headers).json()
    assert len(rows) == 4 and {r["arm"] for r in rows} == {"group", "usual_care"}
    fatal = next(r for r in rows if "death" in r["seriousness"])
    assert fatal["outcome"] == "fatal" and fatal["onset_day"] == 0
    r = client.get(f"/studies/{sid}/safety/line-listing?format=csv", headers=admin.headers)
    df = pd.read_csv(io.StringIO(r.text))
    assert len(df) == 4 and "'=cmd()" in set(df["description"])  # never a spreadsheet formula
    assert set(df["seriousness"].fillna("")) == {"", "hospitalisation", "death"}
    assert set(df["serious"]) == {True, False}
    assert client.get(f"/studies/{sid}/safety/line-listing", headers=analyst.headers).status_code == 403


def test_safety_export_is_deidentified_for_analysts(client, admin, analyst, dmc):
    sid = dmc["study"].id
    client.post(
        f"/participants/{dmc['north']['id']}/responses",
        headers=admin.headers,
        json={"wave": "baseline", "instrument": "phq9", "answers": ITEM9},
    )
    staff = pd.read_csv(io.StringIO(client.get(f"/studies/{sid}/exports/safety", headers=admin.headers).text))
    assert set(staff["record"]) == {"adverse_event", "safety_alert"}
    assert staff["description"].notna().sum() == 4 and staff["onset_date"].notna().all()
    alert = staff[staff["record"] == "safety_alert"].iloc[0]
    assert (alert["rule"], alert["observed"], alert["alert_status"]) == ("phq9_item9", 1.0, "open")
    ana = client.get(f"/studies/{sid}/exports/safety", headers=analyst.headers)
    assert ana.status_code == 200, ana.text
    df = pd.read_csv(io.StringIO(ana.text))
    assert df["description"].isna().all() and df["onset_date"].isna().all() and df["reported_at"].isna().all()
    # enrolled yesterday: the events started that day, the alerting answer came today
    assert df.groupby("record")["onset_days"].agg(set).to_dict() == {"adverse_event": {0}, "safety_alert": {1}}
    assert "Fell on the stairs" not in ana.text
    # the harms table from the export equals the service's summary
    from analysis.safety import harms_table

    people = pd.DataFrame(client.get(f"/studies/{sid}/participants", headers=analyst.headers).json())
    people = people.rename(columns={"study_code": "participant"})[["participant", "arm"]]
    table = harms_table(df[df["record"] == "adverse_event"], people)
    any_ = table[table["measure"] == "any"].set_index("arm")
    # Analysts are blind to the arms: "group" is the neutral label its participants carry.
    staff = pd.DataFrame(client.get(f"/studies/{sid}/participants", headers=admin.headers).json())
    group = set(people.set_index("participant").loc[staff.loc[staff["arm"] == "group", "study_code"], "arm"])
    assert len(group) == 1 and group <= {"A", "B", "C"}
    assert any_.loc[group.pop(), ["n_participants", "N", "n_events"]].tolist() == [2, 4, 3]
    d = client.get(f"/studies/{sid}/exports/safety/dictionary", headers=analyst.headers).json()
    assert [c["name"] for c in d["columns"]][:6] == ["participant", "site", "arm", "arm_kind", "record", "record_id"]


# ---- what the participant sees -------------------------------------------------------------------


def test_the_form_shows_the_support_message_of_the_site_after_an_alerting_answer(client, admin, trial):
    from api.safety.configuration import DEFAULT_SUPPORT_MESSAGE, EMERGENCY_LINE

    t = trial()
    sid = t["study"].id
    pages = {}
    for who in ("north", "south"):
        link = client.post(f"/participants/{t[who]['id']}/links", json={"wave": "baseline"}, headers=admin.headers)
        pages[who] = "/f/" + link.json()["token"]
    assert "Support is available" not in client.get(pages["north"]).text
    submit(client, admin, t["north"], ITEM9)  # entered on paper by staff: the form shows it too
    page = client.get(pages["north"]).text
    assert "Support is available" in page and DEFAULT_SUPPORT_MESSAGE.split(".")[0] in page
    assert EMERGENCY_LINE in page
    r = client.put(
        f"/studies/{sid}/safety/settings",
        json={
            "support_message": "Call the study nurse on weekdays.",
            "crisis_numbers": [{"label": "Crisis line", "number": "0800 123 456"}],
            "site_support": {"south": {"support_message": "South clinic duty phone, day and night."}},
        },
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    page = client.get(pages["north"]).text
    assert "Call the study nurse on weekdays." in page and 'href="tel:0800123456"' in page and EMERGENCY_LINE in page
    submit(client, admin, t["south"], ITEM9)
    page = client.get(pages["south"]).text
    assert "South clinic duty phone" in page and "Call the study nurse" not in page
    assert 'href="tel:0800123456"' in page  # the site sets no numbers of its own: the study's apply
    assert "Support is available" not in client.get(pages["south"].replace("/f/", "/f/x")).text


def test_a_contact_who_no_longer_covers_the_site_is_not_told(client, admin, trial, engine):
    from api.auth.models import UserSite

    t = trial()
    with Session(engine) as s:
        s.delete(s.get(UserSite, (t["coord_n"].id, t["study"].sites["north"])))
        s.commit()
    status = client.get(f"/studies/{t['study'].id}/safety/status", headers=admin.headers).json()
    assert any(w.startswith("site north has no safety contact") for w in status["warnings"])
    submit(client, admin, t["north"], ITEM9)
    [alert] = client.get(f"/studies/{t['study'].id}/alerts", headers=admin.headers).json()
    assert alert["routing"] == "pi" and [n.user_id for n in outbox(engine, t["study"].id)] == [t["pi"].id]


def test_safety_export_shifts_dates_by_the_participants_secret_offset(client, admin, analyst, dmc, settings):
    from api.exports.deid import shift_days

    sid = dmc["study"].id
    r = client.put(f"/studies/{sid}/export-settings", json={"date_mode": "shift"}, headers=admin.headers)
    assert r.status_code == 200, r.text
    try:
        staff = pd.read_csv(io.StringIO(client.get(f"/studies/{sid}/exports/safety", headers=admin.headers).text))
        ana = pd.read_csv(io.StringIO(client.get(f"/studies/{sid}/exports/safety", headers=analyst.headers).text))
    finally:
        client.put(f"/studies/{sid}/export-settings", json={"date_mode": "relative"}, headers=admin.headers)
    people = {
        p["study_code"]: p["id"] for p in client.get(f"/studies/{sid}/participants", headers=admin.headers).json()
    }
    merged = staff.merge(ana, on=["record", "record_id"], suffixes=("_staff", "_analyst"))
    assert len(merged) == len(staff) > 0
    for _, row in merged.iterrows():
        shift = timedelta(days=shift_days(settings.secret_key, sid, people[row["participant_staff"]]))
        onset = datetime.fromisoformat(row["onset_date_staff"]).date()
        assert datetime.fromisoformat(row["onset_date_analyst"]).date() == onset - shift
        assert row["onset_days_analyst"] == row["onset_days_staff"]  # intervals survive
        assert pd.isna(row["description_analyst"])


def test_an_undeliverable_safety_message_is_shown_and_the_alert_still_escalates(
    client, admin, trial, engine, mail_settings, smtp, caplog
):
    t = trial()
    sid = t["study"].id
    address = _email(client, t["coord_n"])
    smtp.handler.refuse[address] = "550 5.1.1 mailbox unavailable"
    try:
        submit(client, t["coord_n"], t["north"], ITEM9)
        with caplog.at_level("ERROR", logger="peerlens.reminders"):
            assert dispatch(engine, mail_settings).staff_failed == 1
    finally:
        smtp.handler.refuse.clear()
    assert any("staff notification" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)
    status = client.get(f"/studies/{sid}/safety/status", headers=t["coord_n"].headers).json()
    assert status["failed_notifications"] == 1 and any("could not be delivered" in w for w in status["warnings"])
    [failed] = client.get(f"/studies/{sid}/safety/notifications?status=failed", headers=t["coord_n"].headers).json()
    assert failed["kind"] == "alert_raised" and failed["recipient"]["id"] == t["coord_n"].id
    assert "550" in failed["last_error"] and address not in failed["last_error"]
    assert client.get(f"/studies/{sid}/safety/notifications", headers=t["coord_s"].headers).json() == []
    [alert] = client.get(f"/studies/{sid}/alerts", headers=admin.headers).json()
    assert alert["notifications"]["failed"] == 1
    factory = lambda: Session(engine, expire_on_commit=False)  # noqa: E731
    later = FixedClock(datetime.fromisoformat(alert["raised_at"]) + timedelta(hours=25))
    assert sweep(factory, later, study_ids=[sid]).escalated == 1  # nobody acknowledged: the PI is told


def test_backfill_raises_alerts_for_answers_stored_before_a_rule_and_only_once(
    client, admin, trial, engine, db_url, monkeypatch
):
    from typer.testing import CliRunner

    from api.cli import app
    from api.config import get_settings

    t = trial(rules=False)
    sid = t["study"].id
    severe_gad = {f"gad7_{i}": 3 for i in range(1, 8)}
    assert submit(client, admin, t["south"], severe_gad, instrument="gad7").json()["alerts"] == []
    r = client.put(
        f"/studies/{sid}/safety/settings",
        json={
            "rules": [
                {
                    "code": "gad7_severe",
                    "instrument": "gad7",
                    "kind": "scale",
                    "target": "gad7",
                    "op": ">=",
                    "value": 15,
                }
            ]
        },
        headers=admin.headers,
    )
    assert r.status_code == 200
    monkeypatch.setenv("DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        dry = runner.invoke(app, ["safety", "backfill", str(sid), "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert "would raise 1 alert(s)" in dry.output
        assert client.get(f"/studies/{sid}/alerts", headers=admin.headers).json() == []
        done = runner.invoke(app, ["safety", "backfill", str(sid)])
        assert "raised 1 alert(s)" in done.output
        assert "raised 0 alert(s)" in runner.invoke(app, ["safety", "backfill", str(sid)]).output
        status = runner.invoke(app, ["safety", "status", str(sid)])
        assert status.exit_code == 1 and "site south has no safety contact" in status.output  # trial(): north only
        assert "open_alerts: 1" in status.output
    finally:
        get_settings.cache_clear()
    [alert] = client.get(f"/studies/{sid}/alerts", headers=admin.headers).json()
    assert (alert["rule"], alert["routing"]) == ("gad7_severe", "pi")
    assert [e.source for e in audit(engine, "safety_alert", alert["id"])] == ["system"]
