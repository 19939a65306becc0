"""GET /studies/{id}/audit: admins only, filters, keyset pages; the table refuses UPDATE/DELETE."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError


@pytest.fixture(scope="module")
def trail(client, make_study, enrol, admin):
    study = make_study()
    other = make_study()
    people = [enrol(study, site=s, arm="group") for s in ("north", "south", "north")]
    enrol(other, arm="group")
    return {"study": study, "other": other, "people": people}


def _all(client, url, headers, **params):
    items, cursor, pages = [], None, 0
    while True:
        q = dict(params, **({"cursor": cursor} if cursor else {}))
        r = client.get(url, params=q, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages


def test_admin_only(client, trail, make_user, analyst):
    sid = trail["study"].id
    coord = make_user("coordinator", [trail["study"].sites["north"]])
    assert client.get(f"/studies/{sid}/audit", headers=coord.headers).status_code == 403
    assert client.get(f"/studies/{sid}/audit", headers=analyst.headers).status_code == 403
    assert client.get(f"/studies/{sid}/audit").status_code == 401
    assert client.get("/studies/999999/audit", headers=make_user("admin").headers).status_code == 404


def test_pages_cover_the_study_exactly_once(client, trail, admin, engine):
    sid = trail["study"].id
    with engine.connect() as conn:
        expected = [
            r[0] for r in conn.execute(text("SELECT id FROM audit_event WHERE study_id = :s ORDER BY id"), {"s": sid})
        ]
    assert len(expected) >= 10  # study, 2 sites, 3 arms, 5 waves, 3 enrolments (+ allocations)
    items, pages = _all(client, f"/studies/{sid}/audit", admin.headers, limit=3)
    assert [e["id"] for e in items] == expected
    assert pages == -(-len(expected) // 3)  # ceil: the last page says there is no next one
    assert {e["study_id"] for e in items} == {sid}


def test_filters(client, trail, admin, engine):
    sid = trail["study"].id
    items, _ = _all(client, f"/studies/{sid}/audit", admin.headers, entity="participant", action="create")
    assert sorted(int(e["entity_id"]) for e in items) == sorted(p["id"] for p in trail["people"])
    by_actor, _ = _all(client, f"/studies/{sid}/audit", admin.headers, actor_id=admin.id)
    everything, _ = _all(client, f"/studies/{sid}/audit", admin.headers)
    assert by_actor and len(by_actor) == sum(e["actor_id"] == admin.id for e in everything)
    assert _all(client, f"/studies/{sid}/audit", admin.headers, actor_id=987654)[0] == []
    # time range: split the trail at the timestamp of its middle event
    mid = everything[len(everything) // 2]["at"]
    before, _ = _all(client, f"/studies/{sid}/audit", admin.headers, until=mid)
    after, _ = _all(client, f"/studies/{sid}/audit", admin.headers, since=mid)
    assert len(before) + len(after) == len(everything)
    assert all(e["at"] < mid for e in before) and all(e["at"] >= mid for e in after)
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert _all(client, f"/studies/{sid}/audit", admin.headers, since=future)[0] == []


def test_bad_queries_name_the_parameter(client, trail, admin):
    url = f"/studies/{trail['study'].id}/audit"
    for params, loc in (
        ({"cursor": "not-a-cursor"}, ["query", "cursor"]),
        ({"limit": 0}, ["query", "limit"]),
        ({"since": "2026-01-01T00:00:00"}, ["query", "since"]),  # no UTC offset
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, ["query", "until"]),
    ):
        r = client.get(url, params=params, headers=admin.headers)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["detail"][0]["loc"] == loc


def test_the_database_refuses_update_and_delete(engine, backend, trail):
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM audit_event")).scalar_one()
    for stmt in ("UPDATE audit_event SET action = 'tampered'", "DELETE FROM audit_event"):
        with pytest.raises(DBAPIError) as err:
            with engine.begin() as conn:
                conn.execute(text(stmt))
        assert "append-only" in str(err.value)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_event")).scalar_one() == n
        assert conn.execute(text("SELECT count(*) FROM audit_event WHERE action = 'tampered'")).scalar_one() == 0
    if backend == "postgresql":
        with engine.connect() as conn:
            trig = (
                conn.execute(
                    text("SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_event'::regclass AND NOT tgisinternal")
                )
                .scalars()
                .all()
            )
        assert "audit_event_append_only" in trig
        # A statement-level TRUNCATE bypasses row triggers; its own trigger refuses it.
        with pytest.raises(DBAPIError) as err:
            with engine.begin() as conn:
                conn.execute(text("TRUNCATE audit_event"))
        assert "append-only" in str(err.value)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM audit_event")).scalar_one() == n


def test_no_route_changes_the_audit_trail(app):
    from fastapi.routing import APIRoute

    audit_routes = [(sorted(r.methods), r.path) for r in app.routes if isinstance(r, APIRoute) and "audit" in r.path]
    assert audit_routes and all(methods == ["GET"] for methods, _ in audit_routes)
