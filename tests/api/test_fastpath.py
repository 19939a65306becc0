"""The PostgreSQL fast path of REST submissions (api/responses/fastpath.py) against the ORM path.

Every test here runs on PostgreSQL only: SQLite always takes the ORM path, which
tests/api/test_responses.py covers on both backends. The ORM path is forced by making
``fastpath.submit`` decline, which is exactly what the route does when the fast path cannot keep a
guarantee; the fast path is checked to have answered when it should.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from api.audit import chain
from api.responses import fastpath
from tests.conftest import pam13_answers


@pytest.fixture(scope="module", params=["postgresql"])
def backend(request) -> str:
    return request.param


async def _declines(*args, **kwargs):
    return None


def _spy_on_submit(monkeypatch) -> list[bool]:
    """Whether each call of ``fastpath.submit`` stored a response (the fast path answered)."""
    taken: list[bool] = []
    real = fastpath.submit

    async def spy(*args, **kwargs):
        out = await real(*args, **kwargs)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(fastpath, "submit", spy)
    return taken


def _on_connection(engine, step):
    """``await step(conn)`` on a connection of the fast path's own kind, outside any application."""

    async def run():
        connections = fastpath.Connections(engine, size=1)
        try:
            async with connections.connection() as conn:
                return await step(conn)
        finally:
            await connections.close()

    return asyncio.run(run())


def _post(client, user, pid, body, key=None):
    headers = dict(user.headers)
    if key:
        headers["Idempotency-Key"] = key
    return client.post(f"/participants/{pid}/responses", json=body, headers=headers)


def _baseline_pam13() -> dict:
    """A complete PAM-13 for the baseline wave, dated within its window."""
    return {
        "wave": "baseline",
        "instrument": "pam13",
        "answers": pam13_answers(),
        "completed_at": "2026-01-06T10:00:00Z",
    }


def _partial() -> dict:
    return {f"pam13_{i}": (2 if i <= 5 else None) for i in range(1, 14)}


# (wave, body, Idempotency-Key): complete with an external score, partial, N/A answers, out of
# window, another instrument, a local offset; with and without keys.
PAYLOADS = [
    (
        "baseline",
        {"instrument": "pam13", "answers": pam13_answers(3), "external_scores": {"pam13_activation": 61.2}},
        "k-1",
    ),
    ("m1", {"instrument": "pam13", "answers": _partial(), "completed_at": "2026-02-04T09:30:00+01:00"}, None),
    ("m3", {"instrument": "pam13", "answers": {**pam13_answers(4), "pam13_2": 5}}, "k-3"),
    ("m6", {"instrument": "pam13", "answers": pam13_answers(1), "completed_at": "2026-03-20T10:00:00Z"}, "k-4"),
    ("baseline", {"instrument": "gad7", "answers": {f"gad7_{i}": i % 4 for i in range(1, 8)}}, None),
]


def _submit_all(client, user, pid):
    out = []
    for wave, body, key in PAYLOADS:
        body = {"wave": wave, "completed_at": "2026-01-06T10:00:00Z", **body}
        r = _post(client, user, pid, body, key)
        assert r.status_code == 201, r.text
        out.append(r.json())
    return out


def _stored(engine, pid: int) -> dict:
    """Every row the submissions of participant ``pid`` wrote, without ids, owners and times."""
    with engine.connect() as c:
        responses = c.execute(
            text(
                "SELECT r.id, w.code, r.study_id, r.site_id, r.instrument, r.instrument_version, r.answers::text,"
                " r.external_scores::text, r.status, r.mode, r.entered_by, r.completed_at, r.out_of_window,"
                " r.version FROM response r JOIN wave w ON w.id = r.wave_id"
                " WHERE r.participant_id = :p ORDER BY r.id"
            ),
            {"p": pid},
        ).all()
        ids = [r[0] for r in responses]
        scores = c.execute(
            text(
                "SELECT response_id, scale, value, band, level, items_answered, items_expected, prorated,"
                " missing_reason, flags::text FROM score WHERE response_id = ANY(:ids) ORDER BY id"
            ),
            {"ids": ids},
        ).all()
        keys = c.execute(
            text("SELECT key, request_hash, response_id FROM idempotency_key WHERE participant_id = :p ORDER BY key"),
            {"p": pid},
        ).all()
        audit = (
            c.execute(
                text("SELECT * FROM audit_event WHERE entity = 'response' AND entity_id = ANY(:ids) ORDER BY id"),
                {"ids": [str(i) for i in ids]},
            )
            .mappings()
            .all()
        )
    position = {rid: n for n, rid in enumerate(ids)}  # responses by submission order, not id
    key = chain.key_for(engine)
    assert all(chain.check_mac(key, dict(a), a["mac"]) for a in audit)
    events = []
    for a in audit:
        # the request id differs from request to request; the MAC was checked above
        row = {k: v for k, v in a.items() if k not in ("id", "at", "entity_id", "mac", "request_id")}
        assert a["request_id"]
        row["after"] = {k: v for k, v in row["after"].items() if k != "participant_id"}
        events.append((position[int(a["entity_id"])], row))
    return {
        "responses": [tuple(r[1:]) for r in responses],
        "scores": [(position[s[0]], *s[1:]) for s in scores],
        "keys": [(k[0], k[1], position[k[2]]) for k in keys],
        "audit": events,
    }


def _without_ids(bodies: list[dict]) -> list[dict]:
    return [
        {k: v for k, v in b.items() if k not in ("id", "participant_id", "created_at", "updated_at")} for b in bodies
    ]


def test_fast_and_orm_paths_store_identical_rows(client, engine, make_study, make_user, enrol, monkeypatch):
    study = make_study()
    coordinator = make_user("coordinator", [study.sites["north"]])
    fast_p, orm_p = enrol(study), enrol(study)
    taken = _spy_on_submit(monkeypatch)
    fast = _submit_all(client, coordinator, fast_p["id"])
    assert taken == [True] * len(PAYLOADS)  # every payload took the fast path
    monkeypatch.setattr(fastpath, "submit", _declines)
    orm = _submit_all(client, coordinator, orm_p["id"])

    assert _without_ids(fast) == _without_ids(orm)
    assert [b["status"] for b in fast] == ["complete", "partial", "complete", "complete", "complete"]
    assert fast[3]["out_of_window"] is True and fast[0]["alerts"] == []
    stored_fast, stored_orm = _stored(engine, fast_p["id"]), _stored(engine, orm_p["id"])
    assert stored_fast == stored_orm
    assert len(stored_fast["scores"]) == 4 * 2 + 1 and len(stored_fast["keys"]) == 3
    assert stored_fast["audit"][0][1]["actor_id"] == coordinator.id and stored_fast["audit"][0][1]["action"] == "create"


def test_a_fast_submission_replays_and_refuses_as_the_orm_path(client, admin, make_study, enrol, engine):
    study = make_study()
    p = enrol(study)
    body = {
        "wave": "baseline",
        "instrument": "pam13",
        "answers": pam13_answers(2),
        "completed_at": "2026-01-06T10:00:00Z",
    }
    first = _post(client, admin, p["id"], body, key="r-1")
    again = _post(client, admin, p["id"], body, key="r-1")
    assert first.status_code == again.status_code == 201 and "idempotent-replayed" not in first.headers
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    other = _post(client, admin, p["id"], {**body, "answers": pam13_answers(3)}, key="r-1")
    assert other.status_code == 422 and other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    dup = _post(client, admin, p["id"], {**body, "answers": pam13_answers(3)})
    assert dup.status_code == 409 and dup.json()["detail"][0]["type"] == "already_completed"
    amended = _post(client, admin, p["id"], {**body, "answers": pam13_answers(4), "amend": True, "reason": "typo"})
    assert amended.status_code == 201 and amended.json()["version"] == 2 and amended.json()["id"] == first.json()["id"]
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM response WHERE participant_id = :p"), {"p": p["id"]}).scalar() == 1
        actions = c.execute(
            text("SELECT action FROM audit_event WHERE entity = 'response' AND entity_id = :e ORDER BY id"),
            {"e": str(first.json()["id"])},
        ).scalars()
        assert list(actions) == ["create", "amend"]


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"wave": "m99"}, "unknown_wave"),
        ({"instrument": "nope"}, "unknown_instrument"),
        ({"wave": "m1", "instrument": "gad7"}, "not_in_wave"),
        ({"answers": {**pam13_answers(), "pam13_1": 9, "pam13_2": "x"}}, "not_an_option"),
        ({"external_scores": {"pam13_activation": 140.0}}, None),
        ({"completed_at": "2026-01-01T10:00:00Z"}, "before_consent"),
        ({"completed_at": "2027-06-01T10:00:00Z"}, "in_future"),  # the study-level window
        ({"completed_at": "1890-01-01T10:00:00Z"}, "date_implausible"),  # the body's own rule
    ],
)
def test_refusals_are_the_orm_paths_and_write_nothing(
    client, admin, make_study, enrol, engine, monkeypatch, change, rule
):
    study = make_study()
    fast_p, orm_p = enrol(study), enrol(study)
    body = _baseline_pam13()
    fast = _post(client, admin, fast_p["id"], {**body, **change}, key="bad-1")
    monkeypatch.setattr(fastpath, "submit", _declines)
    orm = _post(client, admin, orm_p["id"], {**body, **change}, key="bad-1")
    assert fast.status_code == orm.status_code == 422 and fast.json() == orm.json(), (fast.text, orm.text)
    assert rule is None or fast.json()["detail"][0]["type"] == rule, fast.text
    for p in (fast_p, orm_p):
        assert _counts(engine, p["id"]) == (0, 0)


def test_the_token_participant_and_role_are_judged_first(client, admin, analyst, make_study, make_user, enrol):
    study = make_study()
    p = enrol(study, site="north")
    south = make_user("coordinator", [study.sites["south"]])
    body = {"wave": "baseline", "instrument": "pam13", "answers": pam13_answers()}
    assert client.post(f"/participants/{p['id']}/responses", json=body).status_code == 401
    bad = client.post(f"/participants/{p['id']}/responses", json=body, headers={"Authorization": "Bearer plk_x"})
    assert bad.status_code == 401 and bad.json()["detail"][0]["type"] == "invalid_token"
    assert _post(client, south, p["id"], body).status_code == 404
    assert _post(client, admin, 2**31 - 1, body).status_code == 404
    assert _post(client, analyst, p["id"], body).status_code == 403
    # a bad body is judged after the token
    assert client.post(f"/participants/{p['id']}/responses", json={"wave": 3}).status_code == 401


def test_phq9_with_a_safety_rule_takes_the_orm_path_and_raises_the_alert(client, admin, make_study, enrol):
    study = make_study()
    p = enrol(study)
    answers = {f"phq9_{i}": 1 for i in range(1, 10)} | {"phq9_9": 2}
    r = _post(client, admin, p["id"], {"wave": "baseline", "instrument": "phq9", "answers": answers}, key="s-1")
    assert r.status_code == 201 and [a["rule"] for a in r.json()["alerts"]], r.text


def _read(engine, user, pid, wave, instrument, key):
    from api.auth.service import hash_token

    return _on_connection(engine, lambda conn: fastpath.read(conn, hash_token(user.token), pid, wave, instrument, key))


def _submit(engine, found, body, actor, key):
    return _on_connection(engine, lambda conn: fastpath.submit(conn, chain.key_for(engine), found, body, actor, key))


def _counts(engine, pid):
    with engine.connect() as c:
        return tuple(
            c.execute(text(f"SELECT count(*) FROM {t} WHERE participant_id = :p"), {"p": pid}).scalar()
            for t in ("response", "idempotency_key")
        )


def test_a_lost_race_writes_nothing_and_leaves_the_answer_to_the_orm_path(client, admin, make_study, enrol, engine):
    from api.auth.service import Actor
    from api.responses.schemas import ResponseCreate

    study = make_study()
    p = enrol(study)
    actor = Actor(user_id=admin.id, role="admin", request_id="race")
    body = ResponseCreate(
        wave="baseline", instrument="pam13", answers=pam13_answers(), completed_at="2026-01-06T10:00:00Z"
    )
    # Both reads before either write: the same key, then the slot taken without a key.
    first, second = (_read(engine, admin, p["id"], "baseline", "pam13", "same") for _ in range(2))
    assert first.new_id != second.new_id
    assert _submit(engine, first, body, actor, "same") is not None
    assert _submit(engine, second, body, actor, "same") is None  # the key is taken
    assert _counts(engine, p["id"]) == (1, 1)
    m1 = body.model_copy(update={"wave": "m1", "completed_at": None})
    stale_keyed = _read(engine, admin, p["id"], "m1", "pam13", "other")
    assert _submit(engine, _read(engine, admin, p["id"], "m1", "pam13", None), m1, actor, None) is not None
    # the slot is taken by a request without a key: the key row would dangle, so nothing is written
    assert _submit(engine, stale_keyed, m1, actor, "other") is None
    assert _counts(engine, p["id"]) == (2, 1)
    # the key taken for another slot: no response is written for this one
    m3 = body.model_copy(update={"wave": "m3", "completed_at": None})
    assert _submit(engine, _read(engine, admin, p["id"], "m3", "pam13", "same"), m3, actor, "same") is None
    assert _counts(engine, p["id"]) == (2, 1)
    # through HTTP the ORM path then answers: 409 for the slot, 422 for the reused key
    r = _post(client, admin, p["id"], {**m1.model_dump(mode="json"), "completed_at": None}, key="other")
    assert r.status_code == 409
    r = _post(client, admin, p["id"], {**m3.model_dump(mode="json"), "completed_at": None}, key="same")
    assert r.status_code == 422


def test_fast_rows_verify_in_the_audit_chain(client, admin, make_study, enrol, engine):
    from sqlmodel import Session

    study = make_study()
    for _ in range(3):
        p = enrol(study)
        body = _baseline_pam13()
        assert _post(client, admin, p["id"], body, key="v").status_code == 201
    chain.seal(engine)
    with Session(engine) as s:
        report = chain.verify(s)
    assert report.ok and report.unsealed == 0, report.lines()
    with engine.begin() as c:  # an altered fast-path row is caught like any other
        c.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
        c.execute(
            text(
                "UPDATE audit_event SET reason = 'x'"
                " WHERE id = (SELECT max(id) FROM audit_event WHERE entity = 'response')"
            )
        )
        c.execute(text("ALTER TABLE audit_event ENABLE TRIGGER USER"))
    with Session(engine) as s:
        assert chain.verify(s).altered


def test_the_shared_checks_examples_hold():
    import doctest

    from api.responses import checks

    assert doctest.testmod(checks, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0
    assert doctest.testmod(fastpath, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


@pytest.mark.parametrize(
    ("path_id", "headers", "raw", "status", "loc"),
    [
        (None, {"Content-Type": "text/plain"}, None, 422, ["body"]),  # not declared JSON
        (None, {"Idempotency-Key": "k" * 201}, None, 422, ["header", "Idempotency-Key"]),
        (None, {"Authorization": "Basic abc"}, None, 401, ["header", "Authorization"]),
        ("abc", {}, None, 422, ["path", "participant_id"]),
        ("0", {}, None, 422, ["path", "participant_id"]),
        (None, {}, b'{"wave": "baseline",', 422, ["body", 20]),  # broken JSON
        (None, {}, b"[" * 20_000 + b"]" * 20_000, 422, ["body"]),  # nested beyond the recursion limit
        ("9" * 5000, {}, None, 422, ["path", "participant_id"]),  # more digits than int() reads
    ],
)
def test_requests_the_route_class_leaves_to_the_route_get_its_answers(
    client, admin, make_study, enrol, engine, monkeypatch, path_id, headers, raw, status, loc
):
    """What the fast route reads differently from the route's declarations goes to the route: same
    answer with and without the fast path, nothing written."""
    import json

    study = make_study()
    p = enrol(study)
    body = _baseline_pam13()
    content = raw if raw is not None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **admin.headers, **headers}
    url = f"/participants/{path_id or p['id']}/responses"
    fast = client.post(url, content=content, headers=sent)
    monkeypatch.setattr(fastpath, "attempt", _declines)
    route = client.post(url, content=content, headers=sent)
    assert fast.status_code == route.status_code == status, fast.text
    assert fast.json() == route.json() and fast.json()["detail"][0]["loc"] == loc
    assert _counts(engine, p["id"]) == (0, 0)


def test_the_route_class_stores_without_the_routes_handler(client, admin, make_study, enrol, monkeypatch):
    """A new response is answered by the fast route alone: the declared handler (dependencies, then
    the ORM path) is not reached."""
    from api.auth.dependencies import Authorize
    from api.participants import dependencies
    from api.responses import service

    study = make_study()
    p = enrol(study)

    def unreachable(*args, **kwargs):
        raise AssertionError("the route's handler ran")

    async def no_role_check(*args, **kwargs):
        raise AssertionError("the route's dependencies were solved")

    monkeypatch.setattr(Authorize, "__call__", no_role_check)
    monkeypatch.setattr(dependencies, "resolve_actor_and_row", unreachable)
    monkeypatch.setattr(service, "submit_response", unreachable)
    body = _baseline_pam13()
    r = _post(client, admin, p["id"], body, key="alone")
    assert r.status_code == 201 and r.json()["status"] == "complete" and r.json()["mode"] == "rest"


def _held(engine) -> int:
    """Connections the fast path holds to this module's database (by their application name)."""
    with engine.connect() as c:
        return c.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = :n"),
            {"n": fastpath.Connections.application_name},
        ).scalar()


def _until(predicate, seconds: float = 5.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_held_connections_are_reused_and_a_lost_one_is_replaced(
    client, admin, make_study, enrol, engine, monkeypatch
):
    study = make_study()
    people = [enrol(study) for _ in range(5)]
    taken = _spy_on_submit(monkeypatch)
    for p in people[:3]:
        assert _post(client, admin, p["id"], _baseline_pam13(), key="held").status_code == 201
    assert taken == [True] * 3
    # one request at a time: one connection, reused (at most the few earlier tests left idle)
    assert 1 <= _held(engine) <= fastpath.Connections(engine).size
    with engine.connect() as c:  # the server ends them, as a restart or an administrator would
        c.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = :n"
            ),
            {"n": fastpath.Connections.application_name},
        )
    assert _until(lambda: _held(engine) == 0)
    with monkeypatch.context() as m:  # the loss unseen before the read: the read fails, the route answers
        m.setattr(fastpath, "_usable", lambda conn: True)
        r = _post(client, admin, people[3]["id"], _baseline_pam13(), key="held")
    assert r.status_code == 201 and taken == [True] * 3, r.text
    assert _counts(engine, people[3]["id"]) == (1, 1)
    r = _post(client, admin, people[4]["id"], _baseline_pam13(), key="held")
    assert r.status_code == 201, r.text
    assert taken == [True] * 4  # answered by the fast path again, on a new connection
    assert _counts(engine, people[4]["id"]) == (1, 1) and _held(engine) == 1


def test_without_its_lifespan_an_application_answers_by_the_route_and_shutdown_closes_the_connections(
    settings, engine, admin, make_study, enrol, monkeypatch
):
    from fastapi.testclient import TestClient

    from api.main import create_app

    study = make_study()
    p, q = enrol(study), enrol(study)
    taken = _spy_on_submit(monkeypatch)
    other = create_app(settings, engine=engine)
    before = _held(engine)
    r = TestClient(other).post(  # no lifespan: no held connections, the route answers
        f"/participants/{p['id']}/responses", json=_baseline_pam13(), headers=admin.headers
    )
    assert r.status_code == 201 and taken == [] and _counts(engine, p["id"]) == (1, 0)
    with TestClient(other) as c:
        r = c.post(f"/participants/{q['id']}/responses", json=_baseline_pam13(), headers=admin.headers)
        assert r.status_code == 201 and taken == [True]
        assert _held(engine) == before + 1
    assert _until(lambda: _held(engine) == before)  # closed at shutdown
