"""Response submission: scoring, idempotency, duplicates, amendments, windows."""

from __future__ import annotations

from sqlmodel import Session, func, select

from api.responses.models import Response, Score
from tests.conftest import pam13_answers, phq9_answers


def _submit(client, user, pid, key=None, **body):
    headers = dict(user.headers)
    if key:
        headers["Idempotency-Key"] = key
    body.setdefault("completed_at", "2026-01-06T10:00:00Z")
    return client.post(f"/participants/{pid}/responses", json=body, headers=headers)


def _count(engine, model, **where):
    with Session(engine) as s:
        stmt = select(func.count()).select_from(model)
        for k, v in where.items():
            stmt = stmt.where(getattr(model, k) == v)
        return s.exec(stmt).one()


def test_submit_scores_and_stores_raw_answers(client, admin, make_study, enrol, engine):
    study = make_study()
    p = enrol(study)
    answers = {**phq9_answers(2), "phq9_9": None}
    r = _submit(client, admin, p["id"], wave="baseline", instrument="phq9", answers=answers)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["answers"] == answers and body["instrument_version"] and body["mode"] == "rest"
    (score,) = body["scores"]
    assert score["scale"] == "phq9" and score["items_answered"] == 8 and score["prorated"] is True
    assert score["value"] == 18 and score["band"]
    assert _count(engine, Score, response_id=body["id"]) == 1
    listed = client.get(f"/participants/{p['id']}/responses", headers=admin.headers).json()
    assert [x["id"] for x in listed] == [body["id"]] and listed[0]["scores"] == body["scores"]


def test_pam13_with_external_activation_score(client, admin, make_study, enrol):
    study = make_study()
    p = enrol(study)
    r = _submit(
        client,
        admin,
        p["id"],
        wave="baseline",
        instrument="pam13",
        answers=pam13_answers(3),
        external_scores={"pam13_activation": 61.2},
    )
    assert r.status_code == 201, r.text
    scores = {s["scale"]: s for s in r.json()["scores"]}
    assert scores["pam13_activation"]["value"] == 61.2 and scores["pam13_activation"]["level"] == 3


def test_idempotency_key_replays_first_result(client, admin, make_study, enrol, engine):
    study = make_study()
    p = enrol(study)
    first = _submit(client, admin, p["id"], key="abc-1", wave="baseline", instrument="phq9", answers=phq9_answers())
    again = _submit(client, admin, p["id"], key="abc-1", wave="baseline", instrument="phq9", answers=phq9_answers())
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert _count(engine, Response, participant_id=p["id"]) == 1
    other = _submit(client, admin, p["id"], key="abc-1", wave="baseline", instrument="phq9", answers=phq9_answers(0))
    assert other.status_code == 422 and other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


def test_second_complete_response_conflicts_unless_amended(client, admin, make_study, enrol, engine):
    study = make_study()
    p = enrol(study)
    first = _submit(client, admin, p["id"], wave="baseline", instrument="phq9", answers=phq9_answers(1)).json()
    dup = _submit(client, admin, p["id"], wave="baseline", instrument="phq9", answers=phq9_answers(2))
    assert dup.status_code == 409 and dup.json()["detail"][0]["type"] == "already_completed"
    no_reason = _submit(client, admin, p["id"], wave="baseline", instrument="phq9", answers=phq9_answers(2), amend=True)
    assert no_reason.status_code == 422 and no_reason.json()["detail"][0]["type"] == "reason_required"
    amended = _submit(
        client,
        admin,
        p["id"],
        wave="baseline",
        instrument="phq9",
        answers=phq9_answers(2),
        amend=True,
        reason="transcription error on paper form",
    )
    assert amended.status_code == 201
    body = amended.json()
    assert body["id"] == first["id"] and body["version"] == 2 and body["scores"][0]["value"] == 18
    assert _count(engine, Response, participant_id=p["id"]) == 1
    events = client.get(
        "/audit", params={"entity": "response", "entity_id": str(first["id"])}, headers=admin.headers
    ).json()
    assert [e["action"] for e in events] == ["create", "amend"]
    assert events[1]["before"]["answers"] == phq9_answers(1) and events[1]["before"]["version"] == 1
    assert events[1]["before"]["scores"][0]["value"] == 9
    assert events[1]["reason"] == "transcription error on paper form"


def test_out_of_window_is_stored_and_flagged(client, admin, make_study, enrol):
    study = make_study()
    p = enrol(study, enrolled_on="2026-01-05")
    r = _submit(
        client,
        admin,
        p["id"],
        wave="m1",
        instrument="phq9",
        answers=phq9_answers(),
        completed_at="2026-03-20T10:00:00+00:00",
    )
    assert r.status_code == 201 and r.json()["out_of_window"] is True
    r = _submit(
        client,
        admin,
        p["id"],
        wave="m3",
        instrument="phq9",
        answers=phq9_answers(),
        completed_at="2026-04-05T10:00:00+01:00",
    )
    assert r.status_code == 201 and r.json()["out_of_window"] is False


def test_coordinator_of_other_site_cannot_submit(client, make_study, make_user, enrol):
    study = make_study()
    south = make_user("coordinator", [study.sites["south"]])
    p = enrol(study, site="north")
    r = _submit(client, south, p["id"], wave="baseline", instrument="phq9", answers=phq9_answers())
    assert r.status_code == 404


def test_service_is_callable_without_http(engine, make_study, enrol):
    from api.auth.service import Actor
    from api.participants.models import Participant
    from api.responses.service import submit_response

    study = make_study()
    p = enrol(study)
    with Session(engine) as s:
        part = s.get(Participant, p["id"])
        r = submit_response(
            s,
            participant=part,
            wave_code="baseline",
            instrument_code="gad7",
            answers={f"gad7_{i}": 1 for i in range(1, 8)},
            mode="import",
            actor=Actor.system(source="import"),
            idempotency_key="row-17",
        )
        s.commit()
        again = submit_response(
            s,
            participant=part,
            wave_code="baseline",
            instrument_code="gad7",
            answers={f"gad7_{i}": 1 for i in range(1, 8)},
            mode="import",
            actor=Actor.system(source="import"),
            idempotency_key="row-17",
        )
        assert again.id == r.id and r.mode == "import"


def test_lost_race_ends_as_replay_409_or_422_and_writes_nothing(engine, make_study, enrol, monkeypatch):
    # A request whose read ran before a parallel request committed the same slot or key.
    import pytest

    from api.auth.service import Actor
    from api.errors import ApiError
    from api.participants.models import Participant
    from api.responses import service

    study = make_study()
    p = enrol(study)
    actor = Actor.system(source="import")
    answers = {f"gad7_{i}": 1 for i in range(1, 8)}
    with Session(engine) as s:
        part = s.get(Participant, p["id"])
        first = service.submit_response(
            s,
            participant=part,
            wave_code="baseline",
            instrument_code="gad7",
            answers=answers,
            actor=actor,
            idempotency_key="k-1",
        )
        s.commit()
    real_read = service._wave_study_current

    def stale_read(*args, **kwargs):
        wave, study_, _, _ = real_read(*args, **kwargs)
        return wave, study_, None, None

    monkeypatch.setattr(service, "_wave_study_current", stale_read)
    with Session(engine) as s:
        part = s.get(Participant, p["id"])
        again = service.submit_response(
            s,
            participant=part,
            wave_code="baseline",
            instrument_code="gad7",
            answers=answers,
            actor=actor,
            idempotency_key="k-1",
        )
        assert again.id == first.id and again.replayed
        with pytest.raises(ApiError) as dup:
            service.submit_response(
                s, participant=part, wave_code="baseline", instrument_code="gad7", answers=answers, actor=actor
            )
        assert dup.value.status_code == 409
        # the key taken for another slot: the new row is undone and the caller's transaction stays usable
        with pytest.raises(ApiError) as reused:
            service.submit_response(
                s,
                participant=part,
                wave_code="baseline",
                instrument_code="phq9",
                answers=phq9_answers(),
                actor=actor,
                idempotency_key="k-1",
            )
        assert reused.value.status_code == 422
        s.commit()
    assert _count(engine, Response, participant_id=p["id"]) == 1
