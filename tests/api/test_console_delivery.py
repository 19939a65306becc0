"""Process evaluation in the staff console: scheduling a session, recording its delivery and register
through the REST services (the REST reads see what the form saved), a refused form that names the
row and saves nothing, cancelling with a reason, CSRF, and site scoping. The pages in Chromium with
axe-core are in tests/e2e/test_console.py."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from api.audit.models import AuditEvent
from tests.api.test_console import _csrf, sign_in, staff  # noqa: F401  (the staff fixture)


@pytest.fixture(scope="module")
def group_study(client, admin, make_study, enrol, staff):  # noqa: F811
    today = datetime.now(ZoneInfo("Europe/London")).date()
    study = make_study()
    joined = str(today - timedelta(days=20))
    people = [enrol(study, site="north", arm="group", enrolled_on=joined) for _ in range(3)]
    other = enrol(study, site="south", arm="group", enrolled_on=joined)
    r = client.post(
        f"/studies/{study.id}/delivery/groups",
        json={"code": "N-G1", "site": "north", "arm": "group", "name": "Tuesday group"},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    group = r.json()
    for p in people:
        r = client.post(
            f"/delivery/groups/{group['id']}/members",
            json={"participant_id": p["id"], "joined_on": joined},
            headers=admin.headers,
        )
        assert r.status_code == 201, r.text
    r = client.post(
        f"/studies/{study.id}/delivery/groups",
        json={"code": "S-G1", "site": "south", "arm": "group"},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    coord_north, _ = staff("coordinator", [study.sites["north"]])
    coord_south, _ = staff("coordinator", [study.sites["south"]])
    analyst, _ = staff("analyst")
    return study, group, people, other, today, coord_north, coord_south, analyst


def test_schedule_record_and_register_a_session(app, client, admin, engine, group_study):
    study, group, people, other, today, coord_north, _, _ = group_study
    c = sign_in(app, coord_north)
    page = c.get(f"/console/studies/{study.id}/delivery")
    assert page.status_code == 200 and "N-G1" in page.text and "S-G1" not in page.text
    planned = str(today - timedelta(days=2))
    r = c.post(
        f"/console/studies/{study.id}/delivery/sessions",
        data={"csrf": _csrf(page.text), "group_id": str(group["id"]), "planned_date": planned, "number": "3"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    session_url = r.headers["location"].split("?")[0]
    sid = int(session_url.rsplit("/", 1)[1])
    rest = client.get(f"/studies/{study.id}/delivery/sessions", headers=admin.headers).json()
    assert [(s["id"], s["status"], s["number"], s["planned_date"]) for s in rest] == [(sid, "planned", 3, planned)]

    form = c.get(session_url)
    assert form.status_code == 200 and all(p["study_code"] in form.text for p in people)
    a, b, d = (p["id"] for p in people)
    # An absent participant with minutes: refused, named on its row, nothing saved (not even the delivery).
    bad = c.post(
        session_url,
        data={
            "csrf": _csrf(form.text),
            "delivered_on": planned,
            "duration_minutes": "90",
            f"status_{a}": "attended",
            f"status_{b}": "absent",
            f"minutes_{b}": "30",
        },
    )
    assert bad.status_code == 422
    assert f'id="minutes_{b}"' in bad.text and 'aria-describedby="err-minutes_' in bad.text
    assert "no minutes" in bad.text
    rest = client.get(f"/studies/{study.id}/delivery/sessions", headers=admin.headers).json()
    assert rest[0]["status"] == "planned" and rest[0]["delivered_on"] is None
    assert client.get(f"/delivery/sessions/{sid}/attendance", headers=admin.headers).json() == []
    # No date: the field is named.
    r = c.post(session_url, data={"csrf": _csrf(form.text), f"status_{a}": "attended"})
    assert r.status_code == 422 and 'id="err-delivered_on"' in r.text
    # A participant of the other site cannot be slipped into the register.
    r = c.post(
        session_url,
        data={
            "csrf": _csrf(form.text),
            "delivered_on": planned,
            "duration_minutes": "90",
            f"status_{other['id']}": "attended",
        },
    )
    assert r.status_code == 422
    assert client.get(f"/delivery/sessions/{sid}/attendance", headers=admin.headers).json() == []

    ok = c.post(
        session_url,
        data={
            "csrf": _csrf(form.text),
            "delivered_on": planned,
            "duration_minutes": "90",
            f"status_{a}": "attended",
            f"status_{b}": "late",
            f"minutes_{b}": "60",
            f"status_{d}": "excused",
        },
        follow_redirects=False,
    )
    assert ok.status_code == 303, ok.text
    rest = client.get(f"/studies/{study.id}/delivery/sessions", headers=admin.headers).json()
    assert (rest[0]["status"], rest[0]["delivered_on"], rest[0]["duration_minutes"], rest[0]["attended"]) == (
        "delivered",
        planned,
        90,
        2,  # attended and late count as attended; excused does not
    )
    register = client.get(f"/delivery/sessions/{sid}/attendance", headers=admin.headers).json()
    assert {(r["participant_id"], r["status"], r["minutes"]) for r in register} == {
        (a, "attended", None),
        (b, "late", 60),
        (d, "excused", None),
    }
    with Session(engine) as s:
        events = s.exec(select(AuditEvent.entity, AuditEvent.action).where(AuditEvent.study_id == study.id)).all()
    assert ("delivery_session", "create") in events and ("delivery_session", "update") in events
    assert any(entity == "session_attendance" for entity, _ in events)
    shown = c.get(session_url)
    assert "2 attended" in shown.text and 'value="late" selected' in shown.text


def test_cancel_needs_a_reason_and_csrf(app, client, admin, group_study):
    study, group, *_rest = group_study
    coord_north = group_study[5]
    r = client.post(
        f"/studies/{study.id}/delivery/sessions",
        json={"group_id": group["id"], "planned_date": str(group_study[4] + timedelta(days=7))},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    c = sign_in(app, coord_north)
    form = c.get(f"/console/sessions/{sid}")
    assert c.post(f"/console/sessions/{sid}/cancel", data={"cancel_reason": "room closed"}).status_code == 403
    r = c.post(f"/console/sessions/{sid}/cancel", data={"csrf": _csrf(form.text)})
    assert r.status_code == 422 and 'aria-invalid="true"' in r.text
    r = c.post(
        f"/console/sessions/{sid}/cancel",
        data={"csrf": _csrf(form.text), "cancel_reason": "room closed for repairs"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    got = [
        s for s in client.get(f"/studies/{study.id}/delivery/sessions", headers=admin.headers).json() if s["id"] == sid
    ]
    assert got[0]["status"] == "cancelled" and got[0]["cancel_reason"] == "room closed for repairs"


def test_other_site_and_analysts_are_kept_out(app, client, admin, group_study):
    study, group, people, *_ = group_study
    coord_south, analyst = group_study[6], group_study[7]
    r = client.post(
        f"/studies/{study.id}/delivery/sessions",
        json={"group_id": group["id"], "planned_date": str(group_study[4])},
        headers=admin.headers,
    )
    sid = r.json()["id"]
    south = sign_in(app, coord_south)
    r = south.get(f"/console/sessions/{sid}")
    assert r.status_code == 404 and people[0]["study_code"] not in r.text
    page = south.get(f"/console/studies/{study.id}/delivery")
    assert page.status_code == 200 and "N-G1" not in page.text and "S-G1" in page.text
    r = south.post(
        f"/console/studies/{study.id}/delivery/sessions",
        data={"csrf": _csrf(page.text), "group_id": str(group["id"]), "planned_date": str(group_study[4])},
    )
    assert r.status_code == 404  # the north group is not theirs
    an = sign_in(app, analyst)
    assert an.get(f"/console/studies/{study.id}/delivery").status_code == 403
    assert an.get(f"/console/sessions/{sid}").status_code == 403
