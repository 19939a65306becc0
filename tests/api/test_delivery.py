"""Process evaluation through the REST API: supporters, training, groups, sessions, attendance,
contacts, forum activity, and dose checked against values computed by hand."""

from __future__ import annotations

import logging

import pytest
from sqlmodel import Session, select

from api.audit.models import AuditEvent

SUPPORTER_NAME = "Philippa Quenby-Strand"
SUPPORTER_EMAIL = "p.quenby.strand.5521@example.org"
SUPPORTER_PHONE = "+44 7700 900315"


def audit(engine, entity):
    with Session(engine) as s:
        return s.exec(select(AuditEvent).where(AuditEvent.entity == entity).order_by(AuditEvent.id)).all()


def ok(r, status=201):
    assert r.status_code == status, r.text
    return r.json()


def err(r, status=422):
    assert r.status_code == status, r.text
    d = r.json()["detail"][0]
    return d["loc"], d["type"]


@pytest.fixture(scope="module")
def trial(client, admin, make_study, enrol, make_user):
    """A study with two groups at north (G1, G2), people A, B (late join), C (switches G1 → G2), D (control)."""
    study = make_study()
    sid, h = study.id, admin.headers
    people = {
        name: enrol(study, site="north", enrolled_on="2026-01-05", arm=arm)
        for name, arm in (("A", "group"), ("B", "group"), ("C", "group"), ("D", "usual_care"))
    }
    south = enrol(study, site="south", enrolled_on="2026-01-05", arm="group")
    ok(
        client.put(
            f"/studies/{sid}/arms/group/delivery-plan",
            json={"planned_sessions": 6, "session_minutes": 90, "frequency_days": 14, "adherence_threshold": 3},
            headers=h,
        ),
        200,
    )
    supporter = ok(
        client.post(
            f"/studies/{sid}/delivery/supporters",
            json={
                "code": "PS-N1",
                "site": "north",
                "arm": "group",
                "condition": "type 2 diabetes",
                "years_since_diagnosis": 12,
                "prior_role": "volunteer",
                "start_date": "2025-11-01",
                "status": "active",
                "identifiers": {"name": SUPPORTER_NAME, "email": SUPPORTER_EMAIL, "phone": SUPPORTER_PHONE},
            },
            headers=h,
        )
    )
    g1 = ok(
        client.post(
            f"/studies/{sid}/delivery/groups",
            json={"code": "G1", "site": "north", "arm": "group", "supporter_ids": [supporter["id"]]},
            headers=h,
        )
    )
    g2 = ok(
        client.post(f"/studies/{sid}/delivery/groups", json={"code": "G2", "site": "north", "arm": "group"}, headers=h)
    )
    gs = ok(
        client.post(f"/studies/{sid}/delivery/groups", json={"code": "GS", "site": "south", "arm": "group"}, headers=h)
    )
    return {
        "study": study,
        "p": people,
        "south": south,
        "supporter": supporter,
        "g1": g1,
        "g2": g2,
        "gs": gs,
        "coord_n": make_user("coordinator", [study.sites["north"]]),
        "coord_s": make_user("coordinator", [study.sites["south"]]),
    }


def _session(client, h, sid, group, planned, delivered=None, minutes=None, **extra):
    body = {"group_id": group["id"], "planned_date": planned, **extra}
    if delivered:
        body |= {"delivered_on": delivered, "duration_minutes": minutes}
    return ok(client.post(f"/studies/{sid}/delivery/sessions", json=body, headers=h))


def _register(client, h, session, records, status=200):
    return client.put(f"/delivery/sessions/{session['id']}/attendance", json={"records": records}, headers=h)


@pytest.fixture(scope="module")
def recorded(client, admin, trial):
    """The delivery records of the hand-computed example (the refusals along the way are checked here)."""
    t, h = trial, admin.headers
    sid, p = t["study"].id, {k: v["id"] for k, v in trial["p"].items()}
    members = f"/delivery/groups/{t['g1']['id']}/members"
    ok(client.post(members, json={"participant_id": p["A"], "joined_on": "2026-01-05"}, headers=h))
    ok(client.post(members, json={"participant_id": p["B"], "joined_on": "2026-02-10"}, headers=h))  # late join
    c1 = ok(client.post(members, json={"participant_id": p["C"], "joined_on": "2026-01-05"}, headers=h))
    # C switches to G2: the G1 membership must be closed first
    g2m = f"/delivery/groups/{t['g2']['id']}/members"
    assert err(client.post(g2m, json={"participant_id": p["C"], "joined_on": "2026-02-02"}, headers=h), 409) == (
        ["body", "joined_on"],
        "overlapping_membership",
    )
    ok(client.patch(f"{members}/{c1['id']}", json={"left_on": "2026-02-01"}, headers=h), 200)
    ok(client.post(g2m, json={"participant_id": p["C"], "joined_on": "2026-02-02"}, headers=h))
    assert err(client.post(members, json={"participant_id": p["D"], "joined_on": "2026-01-05"}, headers=h)) == (
        ["body", "participant_id"],
        "other_arm",
    )

    s1 = _session(client, h, sid, t["g1"], "2026-01-12", "2026-01-12", 90, supporter_id=t["supporter"]["id"])
    s2 = _session(client, h, sid, t["g1"], "2026-01-26", "2026-01-26", 90)
    s3 = _session(client, h, sid, t["g1"], "2026-02-09")
    s3 = ok(client.patch(f"/delivery/sessions/{s3['id']}", json={"cancel_reason": "snow"}, headers=h), 200)
    assert s3["status"] == "cancelled"
    s4 = _session(client, h, sid, t["g1"], "2026-02-23")
    s4 = ok(
        client.patch(
            f"/delivery/sessions/{s4['id']}", json={"delivered_on": "2026-02-24", "duration_minutes": 80}, headers=h
        ),
        200,
    )
    assert s4["status"] == "delivered"
    s5 = _session(client, h, sid, t["g1"], "2026-04-20", "2026-04-20", 90)
    t1 = _session(client, h, sid, t["g2"], "2026-02-05", "2026-02-05", 60)
    t2 = _session(client, h, sid, t["g2"], "2026-02-19", "2026-02-19", 60)

    ok(
        _register(
            client,
            h,
            s1,
            [
                {"participant_id": p["A"], "status": "attended"},
                {"participant_id": p["C"], "status": "late", "minutes": 60},
            ],
        ),
        200,
    )
    ok(
        _register(
            client,
            h,
            s2,
            [
                {"participant_id": p["A"], "status": "left_early", "minutes": 45},
                {"participant_id": p["C"], "status": "attended"},
            ],
        ),
        200,
    )
    ok(
        _register(
            client,
            h,
            s4,
            [{"participant_id": p["A"], "status": "attended"}, {"participant_id": p["B"], "status": "attended"}],
        ),
        200,
    )
    ok(
        _register(
            client,
            h,
            s5,
            [{"participant_id": p["A"], "status": "absent"}, {"participant_id": p["B"], "status": "attended"}],
        ),
        200,
    )
    ok(_register(client, h, t1, [{"participant_id": p["C"], "status": "attended"}]), 200)
    ok(_register(client, h, t2, [{"participant_id": p["C"], "status": "excused"}]), 200)
    # B had not joined at s1; C had left G1 by s4; nobody attends a cancelled session
    assert err(_register(client, h, s1, [{"participant_id": p["B"], "status": "attended"}])) == (
        ["body", "records", 0, "participant_id"],
        "not_in_group",
    )
    assert err(_register(client, h, s4, [{"participant_id": p["C"], "status": "attended"}])) == (
        ["body", "records", 0, "participant_id"],
        "not_in_group",
    )
    assert err(_register(client, h, s3, [{"participant_id": p["A"], "status": "attended"}])) == (
        ["path", "session_id"],
        "not_delivered",
    )
    ok(
        client.post(
            f"/participants/{p['A']}/peer-contacts",
            json={"kind": "call", "on_date": "2026-01-20", "duration_minutes": 20},
            headers=h,
        )
    )
    ok(
        client.post(
            f"/participants/{p['B']}/peer-contacts",
            json={"kind": "home_visit", "on_date": "2026-03-02", "duration_minutes": 45},
            headers=h,
        )
    )
    code_c = t["p"]["C"]["study_code"]
    csv_text = f"study_code,week_start,posts,replies,logins\n{code_c},2026-01-05,3,1,5\n"
    assert ok(
        client.post(f"/studies/{sid}/delivery/forum-activity", files={"file": ("f.csv", csv_text)}, headers=h), 200
    ) == {"rows": 1, "created": 1, "updated": 0}
    return t


def test_dose_per_participant_matches_hand_computed_values(client, admin, analyst, recorded, engine):
    t, h = recorded, admin.headers
    sid, p = t["study"].id, {k: v["id"] for k, v in t["p"].items()}
    rows = {r["participant_id"]: r for r in ok(client.get(f"/studies/{sid}/delivery/dose", headers=h), 200)}
    want = {
        # offered, attended, session min, contacts, contact min, total, forum posts, proportion,
        # first day, last day, first date, last date, adherent (>= 3 sessions)
        "A": (4, 3, 90 + 45 + 80, 1, 20, 235, 0, 0.5, 7, 50, "2026-01-12", "2026-02-24", True),
        "B": (2, 2, 80 + 90, 1, 45, 215, 0, 0.3333, 50, 105, "2026-02-24", "2026-04-20", False),
        "C": (4, 3, 60 + 90 + 60, 0, 0, 210, 3, 0.5, 7, 31, "2026-01-12", "2026-02-05", True),
        "D": (0, 0, 0, 0, 0, 0, 0, None, None, None, None, None, None),
    }
    keys = (
        "sessions_offered",
        "sessions_attended",
        "session_minutes",
        "contacts",
        "contact_minutes",
        "minutes_total",
        "forum_posts",
        "proportion_planned",
        "first_exposure_day",
        "last_exposure_day",
        "first_exposure",
        "last_exposure",
        "adherent",
    )
    for name, values in want.items():
        assert tuple(rows[p[name]][k] for k in keys) == values, name
    assert t["south"]["id"] in rows  # the admin sees both sites

    by_wave = ok(client.get(f"/studies/{sid}/delivery/dose?by=wave", headers=h), 200)
    cell = {(r["participant_id"], r["wave"]): r for r in by_wave}
    assert len(by_wave) == 5 * 5
    # intervals: baseline [0, 0], m1 (0, 30], m3 (30, 90], m6 (90, 180], m12 (180, 365]
    assert (cell[(p["A"], "m1")]["interval_start_day"], cell[(p["A"], "m1")]["interval_end_day"]) == (0, 30)
    wave_want = {
        ("A", "m1"): (2, 2, 135, 1, 20, False),
        ("A", "m3"): (1, 1, 80, 0, 0, True),
        ("A", "m6"): (1, 0, 0, 0, 0, True),
        ("B", "m1"): (0, 0, 0, 0, 0, False),
        ("B", "m3"): (1, 1, 80, 1, 45, False),
        ("B", "m6"): (1, 1, 90, 0, 0, False),
        ("C", "m1"): (2, 2, 150, 0, 0, False),
        ("C", "m3"): (2, 1, 60, 0, 0, True),
        ("C", "m12"): (0, 0, 0, 0, 0, True),
    }
    wkeys = ("sessions_offered", "sessions_attended", "session_minutes", "contacts", "contact_minutes", "adherent")
    for (name, wave), values in wave_want.items():
        assert tuple(cell[(p[name], wave)][k] for k in wkeys) == values, (name, wave)
    assert cell[(p["C"], "baseline")]["forum_posts"] == 3 and cell[(p["C"], "m1")]["forum_posts"] == 0

    # analysts read dose with day offsets but no calendar dates
    as_analyst = {
        r["participant_id"]: r for r in ok(client.get(f"/studies/{sid}/delivery/dose", headers=analyst.headers), 200)
    }
    assert as_analyst[p["A"]]["first_exposure_day"] == 7 and as_analyst[p["A"]]["first_exposure"] is None
    # ... and, blind to the arms until the study is unblinded, neutral arm labels (api.sap.blinding)
    assert {r["arm"] for r in as_analyst.values()} <= {"A", "B", "C"}
    assert as_analyst[p["A"]]["arm"] == as_analyst[p["B"]]["arm"] != as_analyst[p["D"]]["arm"]
    # a coordinator of south sees south's participants only
    as_south = ok(client.get(f"/studies/{sid}/delivery/dose", headers=t["coord_s"].headers), 200)
    assert [r["participant_id"] for r in as_south] == [t["south"]["id"]]

    # the service function other parts use gives the same rows
    from api.delivery.dose import participant_dose

    with Session(engine) as s:
        direct = {r["participant_id"]: r for r in participant_dose(s, sid)}
    assert direct[p["B"]]["minutes_total"] == 215 and str(direct[p["B"]]["last_exposure"]) == "2026-04-20"

    tidier = ok(client.get(f"/studies/{sid}/arms/group/tidier", headers=h), 200)
    item12 = next(i for i in tidier["items"] if i["key"] == "12_how_well_actual")
    assert item12["generated"] and item12["value"]["participants"] == 4  # A, B, C and the south participant
    assert item12["value"]["adherent"] == 2 and item12["value"]["sessions"] == {"cancelled": 1, "delivered": 6}


def test_bad_input_names_the_field(client, admin, trial):
    t, h = trial, admin.headers
    sid = t["study"].id
    base = {"group_id": t["g1"]["id"], "planned_date": "2026-03-02"}
    cases = [
        (base | {"delivered_on": "2026-03-02", "duration_minutes": -5}, ["body", "duration_minutes"]),
        (base | {"planned_date": "2025-12-01"}, ["body", "planned_date"]),  # before the study began
        (base | {"delivered_on": "2026-03-02"}, ["body", "duration_minutes"]),  # delivered needs a duration
        (base | {"group_id": 999999}, ["body", "group_id"]),
        (base | {"supporter_id": 999999}, ["body", "supporter_id"]),
        (base | {"mode": "carrier_pigeon"}, ["body", "mode"]),
    ]
    for body, loc in cases:
        assert err(client.post(f"/studies/{sid}/delivery/sessions", json=body, headers=h))[0] == loc, body
    assert err(
        client.post(f"/studies/{sid}/delivery/sessions", json=base | {"planned_date": "2025-12-01"}, headers=h)
    ) == (["body", "planned_date"], "before_study")
    assert err(
        client.post(
            f"/participants/{t['p']['A']['id']}/peer-contacts",
            json={"kind": "call", "on_date": "2026-02-01", "duration_minutes": -5},
            headers=h,
        )
    )[0] == ["body", "duration_minutes"]
    assert err(
        client.put(
            f"/studies/{sid}/arms/group/delivery-plan",
            json={
                "planned_sessions": 10,
                "session_minutes": 90,
                "adherence_kind": "proportion",
                "adherence_threshold": 6,
            },
            headers=h,
        )
    ) == (["body", "adherence_threshold"], "out_of_range")
    bad_csv = "study_code,week_start,posts,replies,logins\nNOPE,2026-01-05,1,1,1\n"
    assert err(
        client.post(f"/studies/{sid}/delivery/forum-activity", files={"file": ("f.csv", bad_csv)}, headers=h)
    ) == (["body", 2, "study_code"], "unknown_participant")
    code = t["p"]["A"]["study_code"]
    for row, loc in (
        (f"{code},2026-01-06,1,1,1", ["body", 2, "week_start"]),  # a Tuesday
        (f"{code},2026-01-05,x,1,1", ["body", 2, "posts"]),
        (f"{code},2026-01-05,1,-1,1", ["body", 2, "replies"]),
    ):
        text = "study_code,week_start,posts,replies,logins\n" + row + "\n"
        assert (
            err(client.post(f"/studies/{sid}/delivery/forum-activity", files={"file": ("f.csv", text)}, headers=h))[0]
            == loc
        )
    assert err(
        client.post(
            f"/studies/{sid}/delivery/supporters",
            json={"code": "PS-X", "site": "east", "start_date": "2026-01-01"},
            headers=h,
        )
    )[0] == ["body", "site"]
    assert err(
        client.post(f"/studies/{sid}/arms/group/tidier", json={"items": {"12_how_well_actual": "great"}}, headers=h)
    ) == (["body", "items", "12_how_well_actual"], "generated_item")


def test_sites_are_scoped_and_supporter_identifiers_stay_in_the_vault(
    client, admin, analyst, trial, recorded, engine, caplog
):
    t = trial
    sid = t["study"].id
    n, s = t["coord_n"].headers, t["coord_s"].headers
    assert [g["code"] for g in ok(client.get(f"/studies/{sid}/delivery/groups", headers=s), 200)] == ["GS"]
    assert client.get(f"/delivery/groups/{t['g1']['id']}", headers=s).status_code == 404
    assert client.get(f"/delivery/supporters/{t['supporter']['id']}", headers=s).status_code == 404
    assert ok(client.get(f"/studies/{sid}/delivery/supporters", headers=s), 200) == []
    assert all(x["site"] == "south" for x in ok(client.get(f"/studies/{sid}/delivery/sessions", headers=s), 200))
    assert (
        client.post(
            f"/delivery/groups/{t['g1']['id']}/members",
            json={"participant_id": t["p"]["A"]["id"], "joined_on": "2026-01-05"},
            headers=s,
        ).status_code
        == 404
    )
    mine = ok(client.get(f"/delivery/supporters/{t['supporter']['id']}", headers=n), 200)
    assert mine["identifiers"]["name"] == SUPPORTER_NAME
    assert client.get(f"/studies/{sid}/delivery/supporters", headers=analyst.headers).status_code == 403
    # identifiers are audited by field name only, and never reach a log line or an error
    caplog.set_level(logging.DEBUG)
    r = client.post(
        f"/studies/{sid}/delivery/supporters",
        json={
            "code": "PS-N1",
            "site": "north",
            "start_date": "2026-01-01",
            "identifiers": {"name": SUPPORTER_NAME, "email": SUPPORTER_EMAIL},
        },
        headers=admin.headers,
    )
    assert err(r, 409) == (["body", "code"], "duplicate")
    r = client.patch(
        f"/delivery/supporters/{t['supporter']['id']}",
        json={"identifiers": {"email": "not-an-email " + SUPPORTER_PHONE}},
        headers=admin.headers,
    )
    assert r.status_code == 422 and SUPPORTER_PHONE not in r.text
    events = audit(engine, "peer_supporter")
    assert events and events[0].after["identifiers_set"] == ["email", "name", "phone"]
    for text in [caplog.text] + [str(e.after) + str(e.before) for e in events]:
        for secret in (SUPPORTER_NAME, SUPPORTER_EMAIL, SUPPORTER_PHONE):
            assert secret not in text
    for entity in (
        "delivery_plan",
        "peer_group",
        "delivery_session",
        "session_attendance",
        "group_membership",
        "peer_contact",
        "forum_activity",
    ):
        assert audit(engine, entity), entity


def test_training_programme_records_and_supporter_summary(client, admin, trial):
    t, h = trial, admin.headers
    sid = t["study"].id
    prog = ok(
        client.post(
            f"/studies/{sid}/delivery/training-programmes",
            json={
                "code": "core",
                "title": "Peer supporter core training",
                "trainers": [{"role": "diabetes specialist nurse", "qualification": "RN, DSN"}],
                "modules": [
                    {
                        "code": "listen",
                        "title": "Active listening",
                        "hours": 3,
                        "format": "role_play",
                        "objectives": ["reflect feelings"],
                        "theory": "social support buffers distress",
                    },
                    {
                        "code": "goals",
                        "title": "Goal setting",
                        "hours": 2.5,
                        "format": "didactic",
                        "materials": ["https://example.org/goals.pdf"],
                    },
                ],
            },
            headers=h,
        )
    )
    assert prog["total_hours"] == 5.5 and [m["position"] for m in prog["modules"]] == [1, 2]
    url = f"/delivery/supporters/{t['supporter']['id']}/training"
    m1, m2 = (m["id"] for m in prog["modules"])
    ok(client.post(url, json={"kind": "module", "module_id": m1, "on_date": "2025-11-10", "hours": 3}, headers=h))
    ok(client.post(url, json={"kind": "module", "module_id": m2, "on_date": "2025-11-17", "hours": 2.5}, headers=h))
    ok(
        client.post(
            url, json={"kind": "assessment", "on_date": "2025-11-24", "score": 84, "assessor": "trainer"}, headers=h
        )
    )
    ok(client.post(url, json={"kind": "certification", "on_date": "2025-11-25"}, headers=h))
    ok(client.post(url, json={"kind": "refresher", "module_id": m1, "on_date": "2026-03-01", "hours": 1}, headers=h))
    assert err(client.post(url, json={"kind": "module", "on_date": "2025-11-10", "hours": 3}, headers=h)) == (
        ["body", "module_id"],
        "missing",
    )
    assert err(client.post(url, json={"kind": "assessment", "on_date": "2025-11-10"}, headers=h)) == (
        ["body", "score"],
        "missing",
    )
    s = ok(client.get(f"/delivery/supporters/{t['supporter']['id']}", headers=h), 200)
    assert (s["training_hours"], s["certified_on"]) == (6.5, "2025-11-25")
    assert len(ok(client.get(url, headers=h), 200)) == 5


def test_delivery_exports_are_deidentified_for_analysts(client, admin, analyst, trial, recorded):
    import io

    import pandas as pd

    sid = trial["study"].id
    frames = {}
    for shape in ("delivery", "dose", "delivery_sessions", "supporter_training"):
        r = client.get(f"/studies/{sid}/exports/{shape}?format=csv", headers=analyst.headers)
        assert r.status_code == 200, r.text
        for secret in (SUPPORTER_NAME, SUPPORTER_EMAIL, SUPPORTER_PHONE, "snow"):
            assert secret not in r.text, (shape, secret)
        assert "2026-0" not in r.text and "2025-1" not in r.text, shape  # no calendar dates
        frames[shape] = pd.read_csv(io.StringIO(r.text))
        d = client.get(f"/studies/{sid}/exports/{shape}/dictionary", headers=analyst.headers)
        assert d.status_code == 200, d.text
    a = trial["p"]["A"]["study_code"]
    rows = frames["delivery"][frames["delivery"]["participant"] == a]
    assert sorted(rows["record"]) == ["attendance", "attendance", "attendance", "attendance", "contact"]
    assert rows[rows["record"] == "attendance"]["minutes"].tolist() == [90, 45, 80, 0]
    assert set(rows["supporter"].dropna()) == {"PS-N1"}
    dose = frames["dose"]
    overall = dose[(dose["participant"] == a) & dose["wave"].isna()]
    assert overall[["sessions_attended", "minutes_total", "adherent"]].values.tolist() == [[3, 235, True]]
    assert len(dose[dose["participant"] == a]) == 6  # five waves and the whole follow-up
    for shape in ("delivery", "dose", "delivery_sessions", "supporter_training"):
        assert not {"group", "online", "usual_care"} & set(frames[shape]["arm"].dropna()), shape  # blind
    sessions = frames["delivery_sessions"]
    assert sorted(sessions["status"]) == ["cancelled"] + ["delivered"] * 6
    assert sessions["cancel_reason"].isna().all() and sessions["planned_date"].isna().all()
    training = frames["supporter_training"]
    records = ok(client.get(f"/delivery/supporters/{trial['supporter']['id']}/training", headers=admin.headers), 200)
    assert set(training["supporter"]) <= {"PS-N1"} and len(training) == len(records)
    assert training["hours"].sum() == sum(r["hours"] for r in records)
    # staff keep calendar dates and the cancellation reason
    r = client.get(f"/studies/{sid}/exports/delivery_sessions?format=csv", headers=admin.headers)
    assert "snow" in r.text and "2026-02-09" in r.text and SUPPORTER_NAME not in r.text
    # a coordinator exports their own sites only
    r = client.get(f"/studies/{sid}/exports/delivery_sessions?format=csv", headers=trial["coord_s"].headers)
    assert r.status_code == 200 and "G1" not in r.text


def test_dates_outside_the_plausible_range_are_refused(client, admin, trial):
    t, h = trial, admin.headers
    sid = t["study"].id
    far = "2099-01-01"
    r = client.post(
        f"/studies/{sid}/delivery/sessions", json={"group_id": t["g1"]["id"], "planned_date": far}, headers=h
    )
    assert err(r) == (["body", "planned_date"], "in_future")
    r = client.post(
        f"/studies/{sid}/delivery/sessions",
        json={
            "group_id": t["g1"]["id"],
            "planned_date": "2026-03-02",
            "delivered_on": "1899-12-31",
            "duration_minutes": 60,
        },
        headers=h,
    )
    assert err(r) == (["body", "delivered_on"], "date_implausible")
    r = client.post(
        f"/studies/{sid}/delivery/supporters",
        json={"code": "PS-OLD", "site": "north", "start_date": "1990-01-01"},
        headers=h,
    )
    assert err(r) == (["body", "start_date"], "date_before_study")
    r = client.post(
        f"/delivery/supporters/{t['supporter']['id']}/training",
        json={"kind": "certification", "on_date": "2099-01-01"},
        headers=h,
    )
    assert err(r)[0] == ["body", "on_date"]
