"""Parallel requests against a real server: idempotency and randomisation under contention.

A uvicorn server runs the app in a background thread; 200 client threads are released together
by a barrier. The assertions do not depend on the interleaving: one row whatever the order, and
an allocation sequence without gaps or repeats.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn
from sqlmodel import Session, func, select

from api.participants import randomisation
from api.responses.models import IdempotencyKey, Response
from tests.conftest import pam13_answers, phq9_answers

N = 200


@pytest.fixture(scope="module")
def live_url(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", backlog=4096, timeout_keep_alive=30)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def _together(n: int, fn):
    barrier = threading.Barrier(n)
    # Plain HTTP on loopback: the clients never use TLS, but each would otherwise load the CA
    # bundle into a context of its own (tens of ms of CPU apiece, times 200).
    tls = ssl.create_default_context()

    def run(i):
        with httpx.Client(timeout=60, verify=tls) as c:
            barrier.wait()
            return fn(c, i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


@pytest.mark.slow
# PHQ-9 takes the ORM path (alert rules); PAM-13 the fast path on PostgreSQL (api/responses/fastpath.py).
@pytest.mark.parametrize("instrument", ["phq9", "pam13"])
def test_parallel_submissions_with_one_key_create_one_row(live_url, admin, make_study, enrol, engine, instrument):
    study = make_study()
    p = enrol(study)
    body = {
        "wave": "baseline",
        "instrument": instrument,
        "answers": phq9_answers(2) if instrument == "phq9" else pam13_answers(2),
        "completed_at": "2026-01-06T10:00:00Z",
    }
    headers = {**admin.headers, "Idempotency-Key": "same-key-for-everyone"}

    results = _together(
        N, lambda c, i: c.post(f"{live_url}/participants/{p['id']}/responses", json=body, headers=headers)
    )
    assert Counter(r.status_code for r in results) == {201: N}, [r.text for r in results if r.status_code != 201][:3]
    assert len({r.json()["id"] for r in results}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in results) == N - 1
    with Session(engine) as s:
        assert s.exec(select(func.count()).select_from(Response).where(Response.participant_id == p["id"])).one() == 1
        assert (
            s.exec(
                select(func.count()).select_from(IdempotencyKey).where(IdempotencyKey.participant_id == p["id"])
            ).one()
            == 1
        )


@pytest.mark.slow
def test_parallel_enrolments_keep_blocks_balanced(live_url, client, admin, make_study):
    study = make_study(seed="parallel-seed")
    arms = [("group", 1), ("online", 1), ("usual_care", 1)]

    def enrol_one(c, i):
        return c.post(
            f"{live_url}/studies/{study.id}/participants",
            headers=admin.headers,
            json={"site": "north", "enrolled_on": "2026-01-05", "consent": {"date": "2026-01-05", "version": "v1"}},
        )

    results = _together(N, enrol_one)
    assert Counter(r.status_code for r in results) == {201: N}
    report = client.get(f"/studies/{study.id}/allocation", headers=admin.headers).json()
    rows = [a for a in report["allocations"] if a["site"] == "north"]
    assert sorted(a["sequence"] for a in rows) == list(range(N))
    by_participant = {r.json()["id"]: r.json()["arm"] for r in results}
    for a in rows:
        assert a["arm"] == randomisation.arm_at("parallel-seed", "north", arms, a["sequence"])[0]
        assert by_participant[a["participant_id"]] == a["arm"]
    blocks: dict[int, list[str]] = {}
    for a in rows:
        blocks.setdefault(a["block"], []).append(a["arm"])
    complete = [
        b for b, members in blocks.items() if len(members) == rows[[x["block"] for x in rows].index(b)]["block_size"]
    ]
    for b in complete:
        counts = Counter(blocks[b])
        assert len(set(counts.values())) == 1 and set(counts) == {"group", "online", "usual_care"}
    totals = Counter(a["arm"] for a in rows)
    assert max(totals.values()) - min(totals.values()) <= 2  # at most one open block of size <= 6


def test_terminated_connections_are_replaced_without_an_error(client, admin, make_study, enrol, engine, backend):
    """Pooled connections the server closed (restart, admin kill) cost no failed request.

    The pool does not ping on checkout; a closed socket is noticed locally and replaced.
    """
    if backend != "postgresql":
        pytest.skip("SQLite has no server to lose")
    from sqlalchemy import text

    study = make_study()
    p = enrol(study)
    assert client.get(f"/participants/{p['id']}/responses", headers=admin.headers).status_code == 200
    import psycopg

    with engine.connect() as a, engine.connect() as b:  # two pooled connections, both idle after
        a.execute(text("SELECT 1"))
        b.execute(text("SELECT 1"))
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as c:
        killed = c.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]
    assert killed >= 1
    time.sleep(0.2)  # let the FATAL notice and the close reach the client sockets
    for _ in range(3):
        r = client.post(
            f"/participants/{p['id']}/responses",
            headers={**admin.headers, "Idempotency-Key": "k1"},
            json={"wave": "baseline", "instrument": "phq9", "answers": phq9_answers(1)},
        )
        assert r.status_code == 201, r.text


@pytest.mark.slow
def test_parallel_registers_of_one_session_leave_one_row_per_participant(live_url, client, admin, make_study, enrol):
    study = make_study()
    people = [enrol(study, arm="group") for _ in range(5)]
    h = admin.headers
    g = client.post(
        f"/studies/{study.id}/delivery/groups", json={"code": "G", "site": "north", "arm": "group"}, headers=h
    ).json()
    for p in people:
        r = client.post(
            f"/delivery/groups/{g['id']}/members",
            json={"participant_id": p["id"], "joined_on": "2026-01-05"},
            headers=h,
        )
        assert r.status_code == 201, r.text
    s = client.post(
        f"/studies/{study.id}/delivery/sessions",
        json={"group_id": g["id"], "planned_date": "2026-02-02", "delivered_on": "2026-02-02", "duration_minutes": 90},
        headers=h,
    ).json()
    n = 40
    statuses = ("attended", "late", "absent", "excused")

    def register(c, i):
        records = [{"participant_id": p["id"], "status": statuses[i % 4]} for p in people]
        return c.put(f"{live_url}/delivery/sessions/{s['id']}/attendance", json={"records": records}, headers=h)

    results = _together(n, register)
    assert Counter(r.status_code for r in results) == {200: n}, [r.text for r in results if r.status_code != 200][:3]
    rows = client.get(f"/delivery/sessions/{s['id']}/attendance", headers=h).json()
    assert sorted(r["participant_id"] for r in rows) == sorted(p["id"] for p in people)
    assert len({r["status"] for r in rows}) == 1  # the last register wins whole, never a mixture
