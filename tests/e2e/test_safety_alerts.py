"""A PHQ-9 with item 9 = 1 through each entry path, against a real uvicorn server, a real SMTP
server (aiosmtpd on loopback) and, for the participant form, headless Chromium.

For each path: exactly one alert, exactly one message to the site's safety contact (nothing
clinical in its subject, nothing identifying in its body beyond the study code and a link), the
audit events of the response, the alert and the message, and no second alert when the same answers
come again (same Idempotency-Key, the form's back button, the same import file). The participant
form shows the study's support message and crisis numbers after the alerting answer and on the
thank-you page.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlmodel import Session, select

from api.audit.models import AuditEvent
from api.reminders.clock import FixedClock
from api.reminders.dispatcher import Dispatcher
from tests.api.reminders_support import SmtpServer
from tests.e2e.test_participant_form import CHROMIUM, PHONE, _shot

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed (make browser)")

ITEM9 = {f"phq9_{i}": 0 for i in range(1, 9)} | {"phq9_9": 1}
SUPPORT = "If today feels too much, the Northside wellbeing line is open until 10 pm."
CRISIS = [{"label": "Samaritans (24 hours)", "number": "116 123"}, {"label": "Emergency", "number": "999"}]
CLINICAL = ("phq", "depress", "suicid", "self-harm", "harm", "score", "item", "anxiety", "mood")


@pytest.fixture(scope="module")
def smtp():
    with SmtpServer() as s:
        yield s


@pytest.fixture
def setup(client, admin, make_study, make_user, enrol):
    tz = ZoneInfo("Europe/London")
    study = make_study(waves=(("baseline", 0, 0, 14, ["phq9", "gad7"]),))
    contact = make_user("coordinator", [study.sites["north"]])
    email = client.get("/me", headers=contact.headers).json()["email"]
    pi = client.get("/me", headers=admin.headers).json()["email"]
    r = client.put(
        f"/studies/{study.id}/safety/settings",
        json={"pi": pi, "contacts": {"north": [email]}, "support_message": SUPPORT, "crisis_numbers": CRISIS},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    p = enrol(
        study,
        site="north",
        enrolled_on=str(datetime.now(tz).date() - timedelta(days=1)),
        arm="group",
        contact={"name": "Wilhelmina Oakes", "email": "w.oakes@example.org", "preferred_channel": "email"},
    )
    return {"study": study, "contact": contact, "email": email, "participant": p}


def _events(engine, entity, **where):
    with Session(engine) as s:
        q = select(AuditEvent).where(AuditEvent.entity == entity)
        for k, v in where.items():
            q = q.where(getattr(AuditEvent, k) == v)
        return s.exec(q.order_by(AuditEvent.id)).all()


def _via_rest(base, s, **_):
    url = f"{base}/participants/{s['participant']['id']}/responses"
    body = {"wave": "baseline", "instrument": "phq9", "answers": ITEM9}
    headers = {**s["contact"].headers, "Idempotency-Key": "tablet-3-0042"}
    first = httpx.post(url, json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = httpx.post(url, json=body, headers=headers)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["alerts"] == first.json()["alerts"]


def _via_redcap(base, s, admin, **_):
    code = s["participant"]["study_code"]
    fields = ",".join(f"phq9_{i}" for i in range(1, 11))
    values = ",".join(str(ITEM9.get(f"phq9_{i}", "")) for i in range(1, 11))
    records = f"record_id,redcap_event_name,{fields},phq9_complete\n{code},baseline_arm_1,{values},2\n"

    def post():
        return httpx.post(
            f"{base}/studies/{s['study'].id}/imports/redcap",
            files={"records": ("records.csv", records.encode(), "text/csv")},
            data={"event_map": '{"baseline_arm_1": "baseline"}'},
            headers=admin.headers,
        )

    r = post()
    assert r.status_code == 200 and r.json()["committed"], r.text
    assert post().status_code == 422  # the same file again: a duplicate response, nothing written


def _via_form(base, s, browser, backend, **_):
    issued = httpx.post(
        f"{base}/participants/{s['participant']['id']}/links", json={"wave": "baseline"}, headers=s["contact"].headers
    )
    assert issued.status_code == 201, issued.text
    url = issued.json()["url"].replace("http://127.0.0.1:8000", base)
    ctx = browser.new_context(viewport=PHONE, device_scale_factor=1)
    page = ctx.new_page()
    page.goto(url)
    assert page.get_by_role("region", name="Support is available").count() == 0  # nothing yet
    # A second tab on the same page: the participant will send the PHQ-9 twice.
    other = browser.new_context(viewport=PHONE, device_scale_factor=1)
    tab = other.new_page()
    tab.goto(url)
    for p in (page, tab):
        for i in range(1, 10):
            p.check(f'input[name="i_phq9_{i}"][value="{ITEM9[f"phq9_{i}"]}"]')
    page.get_by_role("button", name="Save and continue").click()
    page.get_by_role("button", name="Save with 1 question left blank").click()  # item 10 (difficulty)
    assert page.locator("#progress-label").inner_text() == "Part 2 of 2"
    support = page.get_by_role("region", name="Support is available")
    assert SUPPORT in support.inner_text()
    _shot(page, backend, "safety-01-next-part")
    # The same answers from the second tab: no second response, no second alert.
    tab.get_by_role("button", name="Save and continue").click()
    assert tab.locator("#progress-label").inner_text() == "Part 2 of 2"
    other.close()
    page.goto(url)
    for i in range(1, 8):
        page.check(f'input[name="i_gad7_{i}"][value="0"]')
    page.get_by_role("button", name="Submit my answers").click()
    page.get_by_role("button", name="Save with 1 question left blank").click()
    assert page.get_by_role("heading", level=1).inner_text() == "✓ Thank you!"
    support = page.get_by_role("region", name="Support is available")
    text = support.inner_text()
    assert SUPPORT in text and "Samaritans (24 hours): 116 123" in text and "Emergency: 999" in text
    assert page.locator('a[href="tel:116123"]').count() == 1 and page.locator('a[href="tel:999"]').count() == 1
    assert "emergency" in page.locator("main").inner_text().lower()
    _shot(page, backend, "safety-02-thanks")
    ctx.close()


PATHS = {
    "rest": (_via_rest, "api", "rest"),
    "form": (_via_form, "web", "web"),
    "redcap": (_via_redcap, "import", "import"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("path", list(PATHS))
def test_an_alerting_phq9_through_each_entry_path(
    path,
    server,
    browser,
    setup,
    admin,
    engine,
    settings,
    smtp,
    backend,  # noqa: F811
):
    base, _ = server
    submit, source, mode = PATHS[path]
    study_id = setup["study"].id
    submit(base, setup, admin=admin, browser=browser, backend=backend)

    alerts = httpx.get(f"{base}/studies/{study_id}/alerts", headers=admin.headers).json()
    assert len(alerts) == 1, alerts
    [alert] = alerts
    assert (alert["rule"], alert["response_mode"], alert["status"], alert["routing"]) == (
        "phq9_item9",
        mode,
        "open",
        "site_contacts",
    )

    smtp.handler.clear()
    mail = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "base_url": base})
    dispatcher = Dispatcher(engine, mail, clock=FixedClock(datetime.now(UTC)), study_ids=[study_id])
    try:
        assert dispatcher.run_once().staff_sent == 1
    finally:
        dispatcher.close()
    assert len(smtp.handler.messages) == 1
    [msg] = smtp.handler.messages
    assert msg["To"] == setup["email"]
    subject = msg["Subject"].lower()
    assert not any(w in subject for w in CLINICAL)
    assert not re.search(r"\d", subject.replace(f"#{alert['id']}", "")), subject  # no score, no answer
    body = msg.get_content()
    assert setup["participant"]["study_code"] in body and f"{base}/alerts/{alert['id']}" in body
    for identifier in ("Wilhelmina", "Oakes", "w.oakes@example.org"):
        assert identifier not in body and identifier not in msg.as_string()
    assert not any(w in body.lower() for w in ("phq", "depress", "suicid", "self-harm", "score"))
    # the link opens the alert for signed-in staff
    opened = httpx.get(f"{base}/alerts/{alert['id']}", headers=setup["contact"].headers)
    assert opened.status_code == 200 and opened.json()["notifications"]["sent"] == 1
    assert httpx.get(f"{base}/alerts/{alert['id']}").status_code == 401

    responses = [
        e for e in _events(engine, "response", study_id=study_id, action="create") if e.after["instrument"] == "phq9"
    ]
    assert [e.source for e in responses] == [source]  # the PHQ-9 once, however often it was sent
    [created] = _events(engine, "safety_alert", entity_id=str(alert["id"]))
    assert (created.action, created.source, created.after["rule"]) == ("create", source, "phq9_item9")
    assert created.request_id == responses[0].request_id  # one request, one transaction
    sends = _events(engine, "staff_notification", study_id=study_id, action="send")
    assert len(sends) == 1 and sends[0].after["message_id"] == msg["Message-ID"]
