"""The staff console over HTTP: sign-in (argon2, TOTP, throttling), sessions (idle timeout,
sign-out), CSRF on every form, and site scoping of its pages. Browser behaviour and accessibility
are in tests/e2e/test_console.py."""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from api.console import auth

PASSWORD = "a long console password"


@pytest.fixture(scope="module")
def staff(engine, make_user):
    """``staff(role, site_ids=(), totp=False) -> (email, totp secret or None)``, with a console password."""
    from api.auth.models import User
    from api.auth.service import Actor

    def _make(role, site_ids=(), totp=False):
        handle = make_user(role, site_ids)
        with Session(engine) as s:
            user = s.get(User, handle.id)
            auth.set_password(s, user, PASSWORD, Actor.system())
            secret = auth.enable_totp(s, user, Actor.system()) if totp else None
            s.commit()
            return user.email, secret

    return _make


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def _browser(app) -> TestClient:
    return TestClient(app, raise_server_exceptions=False, base_url="http://testserver")


def sign_in(app, email, password=PASSWORD, otp="", expect=303):
    c = _browser(app)
    form = c.get("/console/sign-in")
    r = c.post(
        "/console/sign-in",
        data={"email": email, "password": password, "otp": otp, "csrf": _csrf(form.text), "next": "/console"},
        follow_redirects=False,
    )
    assert r.status_code == expect, r.text
    return c


def test_password_is_stored_as_argon2id_and_never_in_the_audit_trail(engine, staff):
    from api.audit.models import AuditEvent
    from api.auth.models import User
    from api.console.models import UserCredential

    email, _ = staff("admin")
    with Session(engine) as s:
        user = s.exec(select(User).where(User.email == email)).one()
        stored = s.get(UserCredential, user.id).password_hash
        events = s.exec(select(AuditEvent).where(AuditEvent.entity == "user", AuditEvent.entity_id == str(user.id)))
        trail = " ".join(str(e.after) for e in events)
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert "set_password" not in trail or stored not in trail
    assert PASSWORD not in trail and stored not in trail


def test_short_password_is_refused_naming_the_field(engine, make_user):
    from api.auth.models import User
    from api.auth.service import Actor
    from api.errors import Unprocessable

    handle = make_user("analyst")
    with Session(engine) as s, pytest.raises(Unprocessable) as exc:
        auth.set_password(s, s.get(User, handle.id), "short", Actor.system())
    assert exc.value.errors[0]["loc"] == ["body", "password"]


def test_sign_in_sets_a_hardened_cookie_and_sign_out_ends_the_session(app, staff):
    email, _ = staff("admin")
    c = _browser(app)
    form = c.get("/console/sign-in")
    r = c.post(
        "/console/sign-in",
        data={"email": email, "password": PASSWORD, "csrf": _csrf(form.text), "next": "/console"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/console"
    cookie = [h for h in r.headers.get_list("set-cookie") if h.startswith(auth.COOKIE + "=")][0].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    stolen = c.cookies.get(auth.COOKIE)
    home = c.get("/console")
    assert home.status_code == 200 and email in home.text
    # Sign-out needs the form's CSRF token; without it nothing happens.
    assert c.post("/console/sign-out", data={}, follow_redirects=False).status_code == 403
    out = c.post("/console/sign-out", data={"csrf": _csrf(home.text)}, follow_redirects=False)
    assert out.status_code == 303 and "signed_out" in out.headers["location"]
    # The old cookie value no longer works anywhere (the session row is ended, not just the cookie).
    replay = _browser(app)
    replay.cookies.set(auth.COOKIE, stolen, path="/console")
    r = replay.get("/console", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/sign-in")


def test_wrong_password_unknown_user_and_missing_csrf_are_refused(app, staff):
    email, _ = staff("coordinator")
    c = _browser(app)
    for who, password in ((email, "not the password at all"), (f"nobody-{uuid.uuid4().hex}@example.org", PASSWORD)):
        form = c.get("/console/sign-in")
        r = c.post("/console/sign-in", data={"email": who, "password": password, "csrf": _csrf(form.text)})
        # The same words whether the account exists or not.
        assert r.status_code == 401 and "Email or password is not right" in r.text
        assert auth.COOKIE not in c.cookies
    c = _browser(app)
    r = c.post("/console/sign-in", data={"email": email, "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403 and "expired" in r.text


def test_next_is_kept_inside_the_console(app, staff):
    email, _ = staff("admin")
    c = _browser(app)
    form = c.get("/console/sign-in")
    r = c.post(
        "/console/sign-in",
        data={"email": email, "password": PASSWORD, "csrf": _csrf(form.text), "next": "https://evil.example/"},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/console"


def test_totp_second_factor(app, staff):
    email, secret = staff("admin", totp=True)
    c = _browser(app)
    form = c.get("/console/sign-in")
    r = c.post(
        "/console/sign-in",
        data={"email": email, "password": PASSWORD, "csrf": _csrf(form.text)},
        follow_redirects=False,
    )
    assert r.status_code == 401 and 'name="otp"' in r.text and "6-digit code" in r.text
    r = c.post(
        "/console/sign-in",
        data={
            "email": email,
            "password": PASSWORD,
            "otp": "000000" if pyotp.TOTP(secret).now() != "000000" else "111111",
            "csrf": _csrf(r.text),
        },
        follow_redirects=False,
    )
    assert r.status_code == 401 and "code is not right" in r.text
    r = c.post(
        "/console/sign-in",
        data={"email": email, "password": PASSWORD, "otp": pyotp.TOTP(secret).now(), "csrf": _csrf(r.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303


def test_failures_are_throttled_per_account_and_address_without_locking_the_user_out(app, staff):
    email, _ = staff("coordinator")
    limiter = app.state.console_signin_limiter
    for _ in range(limiter.limit):
        sign_in(app, email, "wrong password " + uuid.uuid4().hex, expect=401)
    # From this address, this account now waits, even with the right password ...
    c = _browser(app)
    form = c.get("/console/sign-in")
    r = c.post("/console/sign-in", data={"email": email, "password": PASSWORD, "csrf": _csrf(form.text)})
    assert r.status_code == 429 and "Too many failed attempts" in r.text and int(r.headers["Retry-After"]) > 0
    # ... while another account from the same address (a colleague behind the clinic's NAT) signs in,
    other, _ = staff("coordinator")
    sign_in(app, other)
    # and the same user from another address is not locked out.
    key_elsewhere = f"{email}|10.9.8.7"
    assert limiter.retry_after(key_elsewhere) is None
    limiter.reset()
    sign_in(app, email)


def test_idle_session_is_signed_out(app, staff):
    email, _ = staff("admin")
    c = sign_in(app, email)
    token, _ = auth.read_cookie(app.state.settings.secret_key, c.cookies.get(auth.COOKIE))
    idle = app.state.settings.console_idle_minutes * 60
    stale = auth.sign_cookie(app.state.settings.secret_key, token, int(time.time()) - idle - 5)
    c.cookies.set(auth.COOKIE, stale, path="/console")
    r = c.get("/console", follow_redirects=False)
    assert r.status_code == 303 and "why=idle" in r.headers["location"]
    # A cookie whose time was moved forward by hand fails its MAC.
    forged = f"{token}.{int(time.time()) + 3600}.{'0' * 64}"
    c.cookies.set(auth.COOKIE, forged, path="/console")
    assert c.get("/console", follow_redirects=False).status_code == 303


def test_bearer_tokens_do_not_open_console_pages_and_cookies_do_not_open_the_api(app, client, admin, staff):
    r = client.get("/console", headers=admin.headers, follow_redirects=False)
    assert r.status_code == 303
    email, _ = staff("admin")
    c = sign_in(app, email)
    assert c.get("/studies").status_code == 401


@pytest.fixture(scope="module")
def two_sites(make_study, enrol, staff):
    tz = ZoneInfo("Europe/London")
    study = make_study()
    day = str(datetime.now(tz).date() - timedelta(days=2))
    pa = enrol(study, site="north", enrolled_on=day, contact={"name": "Ada North", "preferred_channel": "none"})
    pb = enrol(study, site="south", enrolled_on=day, contact={"name": "Bea South", "preferred_channel": "none"})
    coord_a, _ = staff("coordinator", [study.sites["north"]])
    analyst, _ = staff("analyst")
    return study, pa, pb, coord_a, analyst


def test_coordinator_of_site_a_never_sees_site_b(app, two_sites):
    study, pa, pb, coord_a, _ = two_sites
    c = sign_in(app, coord_a)
    board = c.get(f"/console/studies/{study.id}")
    assert board.status_code == 200
    assert pa["study_code"] in board.text and pb["study_code"] not in board.text
    assert "South" not in board.text
    assert c.get(f"/console/participants/{pa['id']}").status_code == 200
    other = c.get(f"/console/participants/{pb['id']}")
    assert other.status_code == 404 and "Bea South" not in other.text and pb["study_code"] not in other.text
    form = c.get(f"/console/studies/{study.id}/enrol")
    assert 'value="south"' not in form.text
    r = c.post(
        f"/console/participants/{pb['id']}/status",
        data={"csrf": _csrf(form.text), "status": "withdrawn", "status_date": pb["enrolled_on"], "reason": "x"},
    )
    assert r.status_code == 404


def test_analyst_gets_no_participant_pages_and_deidentified_exports(app, two_sites):
    study, pa, _, _, analyst = two_sites
    c = sign_in(app, analyst)
    assert c.get(f"/console/participants/{pa['id']}").status_code == 403
    assert c.get(f"/console/studies/{study.id}/enrol").status_code == 403
    page = c.get(f"/console/studies/{study.id}/exports")
    assert page.status_code == 200 and "de-identified" in page.text
    r = c.get(f"/console/studies/{study.id}/exports/download?shape=long&format=csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "Ada North" not in r.text and pa["enrolled_on"] not in r.text


def test_enrolment_errors_name_the_field_and_save_nothing(app, two_sites, client, admin):
    study, _, _, coord_a, _ = two_sites
    c = sign_in(app, coord_a)
    before = len(client.get(f"/studies/{study.id}/participants", headers=admin.headers).json())
    form = c.get(f"/console/studies/{study.id}/enrol")
    r = c.post(
        f"/console/studies/{study.id}/enrol",
        data={
            "csrf": _csrf(form.text),
            "site": "north",
            "enrolled_on": "2999-01-01",
            "consent_date": "2999-01-01",
            "consent_version": "v1",
            "email": "not-an-email",
            "preferred_channel": "email",
        },
    )
    assert r.status_code == 422 and 'aria-invalid="true"' in r.text
    assert len(client.get(f"/studies/{study.id}/participants", headers=admin.headers).json()) == before
    # Without the CSRF token nothing is enrolled either.
    r = c.post(f"/console/studies/{study.id}/enrol", data={"site": "north", "consent_version": "v1"})
    assert r.status_code == 403
    assert len(client.get(f"/studies/{study.id}/participants", headers=admin.headers).json()) == before


def test_a_withdrawal_recorded_in_error_is_taken_back_from_the_participant_page(app, two_sites, client, admin):
    study, _, _, coord_a, _ = two_sites
    day = str(datetime.now(ZoneInfo("Europe/London")).date())
    p = client.post(
        f"/studies/{study.id}/participants",
        json={"site": "north", "enrolled_on": day, "consent": {"date": day, "version": "v1"}},
        headers=admin.headers,
    ).json()
    r = client.post(
        f"/participants/{p['id']}/withdrawals",
        json={"kind": "follow_up", "date": day, "reason": "clicked the wrong row"},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    c = sign_in(app, coord_a)
    page = c.get(f"/console/participants/{p['id']}")
    assert "Take back this withdrawal" in page.text
    url = f"/console/participants/{p['id']}/withdrawals/retract"
    r = c.post(url, data={"csrf": _csrf(page.text), "kind": "follow_up", "reason": ""})
    assert r.status_code == 422 and 'id="retract-follow_up"' in r.text and 'aria-invalid="true"' in r.text
    assert client.get(f"/participants/{p['id']}", headers=admin.headers).json()["status"] == "withdrawn"
    r = c.post(
        url,
        data={"csrf": _csrf(page.text), "kind": "follow_up", "reason": "withdrawal belonged to another person"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    back = client.get(f"/participants/{p['id']}", headers=admin.headers).json()
    assert back["status"] == "active" and back["withdrawals"] == []


# --- the console's route × role matrix with signed-in sessions ---------------------------------------

READ = ("admin", "coordinator", "analyst")
STAFF = ("admin", "coordinator")
CONSOLE = {
    # (method, path): (roles admitted, scope, statuses an admitted caller gets here)
    ("GET", "/console"): (READ, "global", {200, 303}),  # one study: straight to its dashboard
    ("GET", "/console/studies/{study_id}"): (READ, "study", {200}),
    ("GET", "/console/studies/{study_id}/exports"): (READ, "study", {200}),
    ("GET", "/console/studies/{study_id}/exports/download"): (READ, "study", {200}),
    ("GET", "/console/studies/{study_id}/enrol"): (STAFF, "study", {200}),
    ("POST", "/console/studies/{study_id}/enrol"): (STAFF, "study", {422}),  # empty form
    ("GET", "/console/participants/{participant_id}"): (STAFF, "site", {200}),
    ("GET", "/console/participants/{participant_id}/enter"): (STAFF, "site", {200}),
    ("POST", "/console/participants/{participant_id}/enter"): (STAFF, "site", {422}),
    ("POST", "/console/participants/{participant_id}/links"): (STAFF, "site", {422}),  # no wave
    ("POST", "/console/participants/{participant_id}/links/revoke"): (STAFF, "site", {422}),
    ("POST", "/console/participants/{participant_id}/status"): (STAFF, "site", {422}),
    ("POST", "/console/participants/{participant_id}/withdrawals"): (STAFF, "site", {422}),  # no kind
    ("POST", "/console/participants/{participant_id}/withdrawals/retract"): (STAFF, "site", {422}),  # no reason
    ("GET", "/console/studies/{study_id}/alerts"): (STAFF, "study", {200}),
    ("POST", "/console/studies/{study_id}/alerts/acknowledge"): (STAFF, "study", {404}),  # alert 0
    ("GET", "/console/studies/{study_id}/delivery"): (STAFF, "study", {200}),
    ("POST", "/console/studies/{study_id}/delivery/sessions"): (STAFF, "study", {422}),  # empty form
    ("GET", "/console/sessions/{session_id}"): (STAFF, "site", {200}),
    ("POST", "/console/sessions/{session_id}"): (STAFF, "site", {422}),  # no date, no register
    ("POST", "/console/sessions/{session_id}/cancel"): (STAFF, "site", {422}),  # no reason
    ("POST", "/console/sign-out"): (READ, "global", {303}),
}


def test_console_route_role_matrix(app, two_sites, staff, client, admin):
    from fastapi.routing import APIRoute

    from api.auth.dependencies import route_roles

    study, pa, pb, coord_a, analyst = two_sites
    routes = {
        (m, r.path): r
        for r in app.routes
        if isinstance(r, APIRoute) and r.path.startswith("/console") and r.path != "/console/sign-in"
        for m in r.methods - {"HEAD"}
    }
    assert set(routes) == set(CONSOLE), set(routes) ^ set(CONSOLE)
    assert {k: route_roles(r) for k, r in routes.items()} == {k: v[0] for k, v in CONSOLE.items()}
    # A planned session of a north group, for the session pages.
    r = client.post(
        f"/studies/{study.id}/delivery/groups",
        json={"code": "MATRIX-G", "site": "north", "arm": "group"},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    r = client.post(
        f"/studies/{study.id}/delivery/sessions",
        json={"group_id": r.json()["id"], "planned_date": pa["enrolled_on"]},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    session_id = r.json()["id"]
    coord_b, _ = staff("coordinator", [study.sites["south"]])
    admin, _ = staff("admin")
    callers = {"admin": admin, "coord_a": coord_a, "coord_b": coord_b, "analyst": analyst}
    failures = []
    for (method, path), (roles, scope, ok) in sorted(CONSOLE.items(), key=lambda kv: kv[0][0] == "POST"):
        for name, email in callers.items():
            c = sign_in(app, email)  # a fresh session each time: sign-out is in the table
            csrf = _csrf(c.get(f"/console/studies/{study.id}").text)
            url = (
                path.replace("{study_id}", str(study.id))
                .replace("{participant_id}", str(pa["id"]))
                .replace("{session_id}", str(session_id))
            )
            if path.endswith("/enter") and method == "GET":
                url += "?wave=baseline&instrument=phq9"
            r = c.request(method, url, data={"csrf": csrf} if method == "POST" else None, follow_redirects=False)
            role = "coordinator" if name.startswith("coord") else name
            want = {403} if role not in roles else ({404} if scope == "site" and name == "coord_b" else ok)
            if r.status_code not in want:
                failures.append(f"{method} {path} as {name}: {r.status_code}, expected {sorted(want)}")
            if name == "coord_b" and (pa["study_code"] in r.text or "Ada North" in r.text):
                failures.append(f"{method} {path} as coord_b shows site A's participant")
            if name == "analyst" and "Ada North" in r.text:
                failures.append(f"{method} {path} as analyst shows an identifier")
    assert not failures, "\n".join(failures)
