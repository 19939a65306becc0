"""Administering users without SQL: list, revoke a token, deactivate — through /users and the CLI.

Every change takes effect on the next request (tokens are checked every time) and is audited with
who did it and why.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def coordinator(engine, make_study):
    """A coordinator with two tokens."""
    from api.auth.models import User
    from api.auth.service import issue_token
    from api.users import create_with_token

    study = make_study()
    with Session(engine) as s:
        first = create_with_token(s, "cora.admin-test@example.org", "coordinator", [f"{study.id}:north"])
        user = s.exec(select(User).where(User.email == "cora.admin-test@example.org")).one()
        second = issue_token(s, user)
        s.commit()
        return {"id": user.id, "tokens": [first, second], "study": study}


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_admins_list_users_with_token_prefixes_only(client, admin, analyst, coordinator):
    r = client.get("/users", headers=admin.headers)
    assert r.status_code == 200
    me = next(u for u in r.json() if u["id"] == coordinator["id"])
    assert me["role"] == "coordinator" and me["active"] is True
    assert me["sites"] == [f"{coordinator['study'].id}:north"]
    assert [t["state"] for t in me["tokens"]] == ["live", "live"]
    assert [t["prefix"] for t in me["tokens"]] == [t[:12] for t in coordinator["tokens"]]
    assert not any(t in r.text for t in coordinator["tokens"])  # never a whole token
    assert client.get("/users", headers=analyst.headers).status_code == 403
    assert client.get("/users", headers=_h(coordinator["tokens"][0])).status_code == 403


def test_revoke_one_token_then_all(client, admin, coordinator, engine):
    uid = coordinator["id"]
    one, two = coordinator["tokens"]
    listed = next(u for u in client.get("/users", headers=admin.headers).json() if u["id"] == uid)
    first_id = listed["tokens"][0]["id"]
    r = client.post(f"/users/{uid}/tokens/{first_id}/revoke", json={"reason": "laptop lost"}, headers=admin.headers)
    assert r.status_code == 200 and r.json() == {"user_id": uid, "revoked": [first_id]}
    assert client.get("/me", headers=_h(one)).status_code == 401  # at once
    assert client.get("/me", headers=_h(two)).status_code == 200
    again = client.post(f"/users/{uid}/tokens/{first_id}/revoke", headers=admin.headers)
    assert again.status_code == 404 and again.json()["detail"][0]["loc"] == ["path", "token_id"]
    r = client.post(f"/users/{uid}/tokens/revoke", headers=admin.headers)
    assert r.status_code == 200 and len(r.json()["revoked"]) == 1
    assert client.get("/me", headers=_h(two)).status_code == 401
    events = client.get("/audit", params={"entity": "api_token", "action": "revoke"}, headers=admin.headers).json()
    mine = [e for e in events if e["after"]["user_id"] == uid]
    assert len(mine) == 2 and mine[0]["reason"] == "laptop lost" and mine[0]["actor_id"] == admin.id
    assert all(t not in str(events) for t in coordinator["tokens"])


def test_deactivate_and_reactivate(client, admin, make_user):
    analyst = make_user("analyst")
    r = client.post(f"/users/{analyst.id}/deactivate", json={"reason": "left the project"}, headers=admin.headers)
    assert r.status_code == 200 and r.json()["active"] is False
    assert client.get("/me", headers=analyst.headers).status_code == 401
    r = client.post(f"/users/{analyst.id}/reactivate", headers=admin.headers)
    assert r.status_code == 200 and r.json()["active"] is True
    assert client.get("/me", headers=analyst.headers).status_code == 200
    events = client.get("/audit", params={"entity": "user", "entity_id": str(analyst.id)}, headers=admin.headers)
    assert [e["action"] for e in events.json()] == ["deactivate", "reactivate"]
    assert events.json()[0]["reason"] == "left the project"
    assert client.post("/users/999999/deactivate", headers=admin.headers).status_code == 404


def test_the_last_active_admin_cannot_be_deactivated(client, admin, engine):
    with engine.begin() as conn:
        others = (
            conn.execute(
                text("SELECT id FROM app_user WHERE role = 'admin' AND active AND id <> :me"), {"me": admin.id}
            )
            .scalars()
            .all()
        )
        conn.execute(text("UPDATE app_user SET active = false WHERE role = 'admin' AND id <> :me"), {"me": admin.id})
    try:
        r = client.post(f"/users/{admin.id}/deactivate", headers=admin.headers)
        assert r.status_code == 409 and r.json()["detail"][0]["type"] == "last_admin"
        assert client.get("/me", headers=admin.headers).status_code == 200
    finally:
        with engine.begin() as conn:
            for uid in others:
                conn.execute(text("UPDATE app_user SET active = true WHERE id = :u"), {"u": uid})


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERLENS_")}
    env.update(DATABASE_URL=db_url, PEERLENS_SECRET_KEY="test-secret", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "users", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_the_command_line_lists_revokes_and_deactivates(client, db_url, make_user):
    user = make_user("analyst")
    email = client.get("/me", headers=user.headers).json()["email"]
    listed = _cli(db_url, "list")
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if email in x)
    assert "analyst" in line and "1/1" in line
    assert user.token not in listed.stdout and user.token[:12] in listed.stdout
    r = _cli(db_url, "deactivate", email, "--reason", "contract ended")
    assert r.returncode == 0 and r.stdout.strip() == f"deactivated {email}", r.stderr
    assert client.get("/me", headers=user.headers).status_code == 401
    assert _cli(db_url, "activate", email).returncode == 0
    assert client.get("/me", headers=user.headers).status_code == 200
    r = _cli(db_url, "revoke", email, "--token", user.token[:12])
    assert r.returncode == 0 and r.stdout.startswith("revoked 1 token(s)"), r.stderr
    assert client.get("/me", headers=user.headers).status_code == 401
    r = _cli(db_url, "revoke", "nobody@example.org")
    assert r.returncode == 1 and r.stderr.strip() == "error: no such user"
