"""Bad input: every case is a 4xx in FastAPI's shape naming the field and the rule; nothing is
half-written; no identifier value is echoed."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session, func, select

from api.audit.models import AuditEvent
from api.participants.models import Participant, ParticipantContact
from tests.conftest import phq9_answers


def _shape(r, status, loc=None, type_=None):
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail
    for e in detail:
        assert set(e) == {"loc", "msg", "type"} and isinstance(e["loc"], list)
    if loc is not None:
        assert [loc, type_] in [[e["loc"], e["type"]] for e in detail], detail
    return detail


@pytest.fixture(scope="module")
def ctx(make_study, enrol):
    study = make_study()
    return study, enrol(study)


def _post(client, admin, pid, body, **headers):
    return client.post(f"/participants/{pid}/responses", json=body, headers={**admin.headers, **headers})


def test_unknown_study(client, admin):
    _shape(client.get("/studies/999999", headers=admin.headers), 404, ["path", "study_id"], "not_found")
    _shape(
        client.post("/studies/999999/sites", json={"code": "x", "name": "x"}, headers=admin.headers),
        404,
        ["path", "study_id"],
        "not_found",
    )
    _shape(client.get("/studies/abc", headers=admin.headers), 422, ["path", "study_id"], "int_parsing")


def test_unknown_participant(client, admin):
    _shape(client.get("/participants/999999", headers=admin.headers), 404, ["path", "participant_id"], "not_found")


def test_unknown_wave_instrument_item_and_bad_option(client, admin, ctx):
    _, p = ctx
    base = {"wave": "baseline", "instrument": "phq9", "answers": phq9_answers()}
    _shape(_post(client, admin, p["id"], {**base, "wave": "m99"}), 422, ["body", "wave"], "unknown_wave")
    _shape(
        _post(client, admin, p["id"], {**base, "instrument": "sf36"}), 422, ["body", "instrument"], "unknown_instrument"
    )
    _shape(
        _post(client, admin, p["id"], {**base, "instrument": "lsns6", "answers": {}}),
        422,
        ["body", "instrument"],
        "not_in_wave",
    )
    _shape(
        _post(client, admin, p["id"], {**base, "answers": {**phq9_answers(), "phq9_99": 1}}),
        422,
        ["body", "answers", "phq9_99"],
        "unknown_item",
    )
    d = _shape(
        _post(client, admin, p["id"], {**base, "answers": {**phq9_answers(), "phq9_3": 4, "phq9_4": "x"}}),
        422,
        ["body", "answers", "phq9_3"],
        "not_an_option",
    )
    assert ["body", "answers", "phq9_4"] in [e["loc"] for e in d]
    _shape(
        _post(
            client,
            admin,
            p["id"],
            {"wave": "baseline", "instrument": "pam13", "answers": {}, "external_scores": {"pam13_activation": 140}},
        ),
        422,
        ["body", "external_scores", "pam13_activation"],
        "external_out_of_range",
    )


def test_wrong_types_and_missing_fields(client, admin, ctx):
    _, p = ctx
    _shape(
        _post(client, admin, p["id"], {"wave": "baseline", "instrument": "phq9", "answers": [1, 2]}),
        422,
        ["body", "answers"],
        "dict_type",
    )
    _shape(_post(client, admin, p["id"], {"wave": "baseline", "answers": {}}), 422, ["body", "instrument"], "missing")
    _shape(
        _post(
            client,
            admin,
            p["id"],
            {"wave": "baseline", "instrument": "phq9", "answers": {}, "completed_at": "2026-01-06T10:00:00"},
        ),
        422,
        ["body", "completed_at"],
        "timezone_aware",
    )
    _shape(
        _post(
            client,
            admin,
            p["id"],
            {"wave": "baseline", "instrument": "phq9", "answers": {}, "completed_at": "2999-01-01T00:00:00Z"},
        ),
        422,
        ["body", "completed_at"],
        "in_future",
    )


def test_malformed_json(client, admin, ctx):
    _, p = ctx
    r = client.post(
        f"/participants/{p['id']}/responses",
        content=b'{"wave": "baseline",',
        headers={**admin.headers, "Content-Type": "application/json"},
    )
    _shape(r, 422)
    assert r.json()["detail"][0]["type"] == "json_invalid"


def test_oversized_body_is_413(client, admin, ctx):
    _, p = ctx
    big = {"wave": "baseline", "instrument": "phq9", "answers": phq9_answers(), "reason": "x" * 70_000}
    _shape(_post(client, admin, p["id"], big), 413, ["body"], "too_large")

    def chunks():
        payload = json.dumps(big).encode()
        for i in range(0, len(payload), 8192):
            yield payload[i : i + 8192]

    r = client.post(
        f"/participants/{p['id']}/responses",
        content=chunks(),
        headers={**admin.headers, "Content-Type": "application/json"},
    )
    _shape(r, 413, ["body"], "too_large")


def test_participant_of_another_site_or_study_unknown_site_and_arm(client, admin, make_study, enrol):
    study = make_study()
    d = enrol(study, site="east", expect=422)
    assert d["detail"][0]["loc"] == ["body", "site"] and d["detail"][0]["type"] == "unknown_site"
    d = enrol(study, arm="placebo", expect=422)
    assert d["detail"][0]["type"] == "unknown_arm"


def test_identifier_values_are_not_echoed(client, admin, make_study):
    study = make_study()
    secret_email = "not-an-email-jane.doe"
    r = client.post(
        f"/studies/{study.id}/participants",
        headers=admin.headers,
        json={
            "site": "north",
            "enrolled_on": "2026-01-05",
            "consent": {"date": "2026-01-05", "version": "v1"},
            "contact": {
                "email": secret_email,
                "phone": "call me maybe",
                "name": "Jane Doe",
                "date_of_birth": "2999-01-01",
            },
        },
    )
    d = _shape(r, 422, ["body", "contact", "email"], "invalid_email")
    assert ["body", "contact", "phone"] in [e["loc"] for e in d]
    assert ["body", "contact", "date_of_birth"] in [e["loc"] for e in d]
    assert secret_email not in r.text and "call me maybe" not in r.text and "2999" not in r.text


def test_nothing_half_written(client, admin, make_study, engine):
    study = make_study()

    def counts():
        with Session(engine) as s:
            return (
                s.exec(select(func.count()).select_from(Participant)).one(),
                s.exec(select(func.count()).select_from(ParticipantContact)).one(),
                s.exec(select(func.count()).select_from(AuditEvent)).one(),
            )

    before = counts()
    # consent after enrolment is found after the site lookup, before anything is written
    r = client.post(
        f"/studies/{study.id}/participants",
        headers=admin.headers,
        json={
            "site": "north",
            "enrolled_on": "2026-01-05",
            "consent": {"date": "2026-01-09", "version": "v1"},
            "contact": {"email": "a@example.org"},
        },
    )
    _shape(r, 422, ["body", "consent", "date"], "consent_after_enrolment")
    # a duplicate study code is found after randomisation slots would have been taken
    ok = client.post(
        f"/studies/{study.id}/participants",
        headers=admin.headers,
        json={
            "study_code": "X-1",
            "site": "north",
            "enrolled_on": "2026-01-05",
            "consent": {"date": "2026-01-05", "version": "v1"},
        },
    )
    assert ok.status_code == 201
    mid = counts()
    dup = client.post(
        f"/studies/{study.id}/participants",
        headers=admin.headers,
        json={
            "study_code": "X-1",
            "site": "north",
            "enrolled_on": "2026-01-05",
            "consent": {"date": "2026-01-05", "version": "v1"},
            "contact": {"name": "Someone"},
        },
    )
    _shape(dup, 409, ["body", "study_code"], "duplicate")
    assert counts() == mid
    assert mid[0] == before[0] + 1 and mid[1] == before[1]


def test_unknown_route_and_method_keep_the_shape(client, admin):
    _shape(client.get("/nope", headers=admin.headers), 404)
    _shape(client.delete("/studies", headers=admin.headers), 405)


def test_failure_after_a_write_rolls_back_the_whole_request(client, admin, make_study, enrol, engine):
    study = make_study()
    p = enrol(study)
    with Session(engine) as s:
        events = s.exec(select(func.count()).select_from(AuditEvent)).one()
    # the status change is flushed first; the contact rule fails afterwards
    r = client.patch(
        f"/participants/{p['id']}",
        headers=admin.headers,
        json={"status": "lost_to_follow_up", "status_date": "2026-03-01", "contact": {"preferred_channel": "sms"}},
    )
    _shape(r, 422, ["body", "contact", "preferred_channel"], "channel_without_address")
    assert client.get(f"/participants/{p['id']}", headers=admin.headers).json()["status"] == "active"
    with Session(engine) as s:
        assert s.exec(select(func.count()).select_from(AuditEvent)).one() == events
