"""Outbound calls go to public addresses only; the unsubscribe pages are as guarded as the forms.

* A study's SMS webhook may not point at link-local (cloud metadata), private or loopback
  addresses — whatever the spelling (``2852039166`` is ``169.254.169.254``) — unless the operator
  allows the network; the check runs when the URL is set (422 naming the field) and before each
  send (the name may resolve elsewhere by then).
* ``/u/<token>`` pages carry the form pages' security headers, and the token never reaches a log.
"""

from __future__ import annotations

import logging

import pytest
from sqlmodel import Session

from api.reminders import tokens
from api.reminders.channels import Outgoing, SendError, SmsWebhookChannel
from tests.api.reminders_support import SmsHook

NOT_PUBLIC = [
    "http://169.254.169.254/latest/meta-data/",
    "http://2852039166/",  # 169.254.169.254 written as one number
    "http://10.0.0.5/sms",
    "http://192.168.1.20:8080/sms",
    "http://localhost:9000/sms",
    "http://127.0.0.1:9000/sms",
    "http://[::1]/sms",
    "http://[::ffff:169.254.169.254]/",
    "http://0.0.0.0/",
]


def _plans(url: str) -> dict:
    return {
        "sms_webhook_url": url,
        "plans": [{"wave": "baseline", "channel": "sms", "steps": [{"offset_days": 0}], "subject": "s", "body": "b"}],
    }


def test_webhooks_to_non_public_addresses_are_refused(client, admin, make_study):
    study = make_study()
    url = f"/studies/{study.id}/reminder-plans"
    for hook in NOT_PUBLIC:
        r = client.put(url, json=_plans(hook), headers=admin.headers)
        assert r.status_code == 422, (hook, r.text)
        assert r.json()["detail"][0]["loc"] == ["body", "sms_webhook_url"], r.text
        assert r.json()["detail"][0]["type"] == "webhook_not_public"
    # documentation space (203.0.113.0/24) is not global either; a public literal is accepted
    # (configuring contacts nothing)
    assert client.put(url, json=_plans("https://203.0.113.7/sms"), headers=admin.headers).status_code == 422
    r = client.put(url, json=_plans("https://8.8.8.8/sms"), headers=admin.headers)
    assert r.status_code == 200, r.text


def test_an_allowed_network_may_be_configured(engine, make_study):
    from api.auth.service import Actor
    from api.reminders import service
    from api.reminders.schemas import PlansIn
    from api.studies.models import Study

    study = make_study()
    with Session(engine) as s:
        st = s.get(Study, study.id)
        body = PlansIn.model_validate(_plans("http://10.20.0.5/sms"))
        with pytest.raises(Exception) as refused:
            service.replace_plans(s, st, body, Actor.system())
        assert refused.value.errors[0]["type"] == "webhook_not_public"
        out = service.replace_plans(s, st, body, Actor.system(), webhook_allowed_networks="10.20.0.0/16")
        assert out.sms_webhook_url == "http://10.20.0.5/sms"
        s.rollback()


def test_each_send_checks_the_address_again():
    out = Outgoing(1, "<m@x>", "sms", "+447700900001", "", "hello", "http://x/u/1")
    with SmsHook() as hook:
        out.webhook_url = hook.url
        channel = SmsWebhookChannel()
        try:
            with pytest.raises(SendError) as e:
                channel.send(out)
            assert e.value.permanent and "not a public address" in str(e.value)
            assert hook.received == []  # nothing left the process
        finally:
            channel.close()
        allowed = SmsWebhookChannel(allowed_networks="127.0.0.0/8")
        try:
            assert allowed.send(out) == "sms-1"
        finally:
            allowed.close()
    assert hook.received[0]["to"] == "+447700900001"


def test_unsubscribe_pages_carry_the_security_headers(client, settings, make_study, enrol):
    study = make_study()
    p = enrol(study, contact={"email": "u.page@example.org", "preferred_channel": "email"})
    token = tokens.sign(settings.secret_key, p["id"])
    for r in (client.get(f"/u/{token}"), client.post(f"/u/{token}")):
        assert r.status_code == 200, r.text
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


def test_unsubscribe_tokens_and_query_values_are_redacted_from_logs(caplog):
    from api.web.logfilter import install_log_redaction

    install_log_redaction()
    token = tokens.sign("k", 987654)
    # uvicorn's access-line format; a logger of its own, since other tests reconfigure uvicorn's
    access = logging.getLogger("peerlens.test.access")
    with caplog.at_level(logging.INFO):
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "POST", f"/u/{token}", "1.1", 200)
        access.info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", "/studies/1/transcripts/search?q=Quernmouth", "1.1", 200
        )
    text = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert token not in text and "/u/<redacted>" in text
    assert "Quernmouth" not in text and "search?q=…" in text
