"""Authentication, role checks and the route × role matrix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.routing import APIRoute

from api.auth.dependencies import route_roles

PUBLIC = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def test_every_route_declares_its_roles(app):
    matrix = {}
    for route in app.routes:
        if not isinstance(route, APIRoute) or route.path in PUBLIC:
            continue
        if route.endpoint.__module__.startswith("api.web") or route.path.startswith("/u/"):
            continue  # participant forms and unsubscribe links: the signed link is the credential
        if route.endpoint.__module__ == "api.redcap.router":
            continue  # REDCap's API: the token travels in the form body (tests/api/test_redcap_api.py)
        if route.endpoint.__module__.startswith("api.console"):
            continue  # console pages: a signed-in session, checked role by role in tests/api/test_console.py
        roles = route_roles(route)
        assert roles, f"{route.path} has no authorize(...)"
        for method in route.methods:
            matrix[(method, route.path, route.endpoint.__module__)] = roles
    assert matrix[("POST", "/studies", "api.studies.router")] == ("admin",)
    assert matrix[("GET", "/studies/{study_id}/allocation", "api.participants.router")] == ("admin",)
    assert "analyst" not in matrix[("POST", "/participants/{participant_id}/responses", "api.responses.router")]
    # analysts never change study data (other domains may let them start read-only jobs)
    mine = ("api.studies.", "api.participants.", "api.responses.", "api.audit.", "api.auth.")
    assert all(
        "analyst" not in roles
        for (method, _, module), roles in matrix.items()
        if method != "GET" and module.startswith(mine)
    )


def test_missing_bad_and_expired_tokens(client, make_user):
    r = client.get("/studies")
    assert r.status_code == 401
    assert r.json()["detail"][0]["type"] == "not_authenticated"
    r = client.get("/studies", headers={"Authorization": "Bearer plk_nonsense"})
    assert r.status_code == 401 and r.json()["detail"][0]["type"] == "invalid_token"
    expired = make_user("admin", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert client.get("/studies", headers=expired.headers).status_code == 401
    fresh = make_user("admin", expires_at=datetime.now(UTC) + timedelta(days=1))
    assert client.get("/studies", headers=fresh.headers).status_code == 200


def test_tokens_are_stored_hashed(engine, admin):
    from sqlmodel import Session, select

    from api.auth.models import ApiToken

    with Session(engine) as s:
        stored = s.exec(select(ApiToken.token_hash)).all()
    assert admin.token not in stored
    assert all(len(h) == 64 for h in stored)


def test_analyst_cannot_write(client, analyst, make_study):
    study = make_study()
    r = client.post("/studies", json={"title": "x", "design": "rct"}, headers=analyst.headers)
    assert r.status_code == 403 and r.json()["detail"][0]["type"] == "role_not_allowed"
    r = client.post(
        f"/studies/{study.id}/participants",
        headers=analyst.headers,
        json={"site": "north", "enrolled_on": "2026-01-05", "consent": {"date": "2026-01-05", "version": "v1"}},
    )
    assert r.status_code == 403
    assert client.get(f"/studies/{study.id}", headers=analyst.headers).status_code == 200


def test_me(client, make_user):
    u = make_user("analyst")
    assert client.get("/me", headers=u.headers).json()["role"] == "analyst"


def test_health_needs_no_token(client):
    r = client.get("/health")
    assert r.status_code == 200
    assert {k: r.json()[k] for k in ("status", "database", "schema_current")} == {
        "status": "ok",
        "database": "ok",
        "schema_current": True,
    }
    assert r.headers.get("x-request-id")
