"""Fidelity checklists and ratings, agreement and summaries, the FRAME adaptation log, their exports
and TIDieR items 10 and 12, through the REST API on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io

import pytest
from sklearn.metrics import cohen_kappa_score
from sqlmodel import Session, select

from api.audit.models import AuditEvent

SUPPORTER = {"name": "Philippa Quarrington-Vell", "email": "pqv.peer.5521@example.org", "phone": "+44 7700 900555"}
CORE = ["feedback", "problem_solving", "skills_practice", "modelling", "information", "goal_setting",
        "confidence_check", "safety_check"]  # fmt: skip
FORM = ["welcome", "examples", "materials", "timing", "participation", "language", "breaks", "closing"]


def audit(engine, entity, entity_id=None):
    with Session(engine) as s:
        q = select(AuditEvent).where(AuditEvent.entity == entity)
        if entity_id is not None:
            q = q.where(AuditEvent.entity_id == str(entity_id))
        return s.exec(q.order_by(AuditEvent.id)).all()


def ok(r, status=200):
    assert r.status_code == status, r.text
    return r.json()


@pytest.fixture(scope="module")
def world(client, make_study, make_user, enrol, admin, analyst):
    study = make_study()
    sid, h = study.id, admin.headers
    people = {
        "coord_a": make_user("coordinator", [study.sites["north"]]),
        "coord_b": make_user("coordinator", [study.sites["south"]]),
        "ev1": make_user("evaluator"),
        "ev2": make_user("evaluator"),
        "analyst": analyst,
        "admin": admin,
    }
    participant = enrol(study, site="north", arm="group", enrolled_on="2026-01-05")
    sup = {}
    for code, site in (("PS-N1", "north"), ("PS-S1", "south")):
        body = {"code": code, "site": site, "arm": "group", "start_date": "2025-12-01", "status": "active"}
        if code == "PS-N1":
            body["identifiers"] = SUPPORTER
        sup[code] = ok(client.post(f"/studies/{sid}/delivery/supporters", json=body, headers=h), 201)["id"]
    groups = {}
    for code, site, s in (("GN", "north", "PS-N1"), ("GS", "south", "PS-S1")):
        body = {"code": code, "site": site, "arm": "group", "supporter_ids": [sup[s]]}
        groups[code] = ok(client.post(f"/studies/{sid}/delivery/groups", json=body, headers=h), 201)["id"]
    sessions = {}
    plan = [
        ("n1", "GN", "PS-N1", 1, "2026-01-10", "2026-01-10"),
        ("n2", "GN", "PS-N1", 2, "2026-01-17", "2026-01-17"),
        ("n3", "GN", "PS-N1", 3, "2026-02-14", "2026-02-14"),
        ("n4", "GN", "PS-N1", 4, "2026-02-21", None),  # planned, not delivered
        ("s1", "GS", "PS-S1", 1, "2026-01-12", "2026-01-12"),
        ("s2", "GS", "PS-S1", 2, "2026-01-19", "2026-01-19"),
    ]
    for key, group, s, number, planned, delivered in plan:
        body = {"group_id": groups[group], "supporter_id": sup[s], "number": number, "planned_date": planned}
        if delivered:
            body |= {"delivered_on": delivered, "duration_minutes": 90}
        sessions[key] = ok(client.post(f"/studies/{sid}/delivery/sessions", json=body, headers=h), 201)["id"]
    r = client.post(f"/studies/{sid}/fidelity/checklists", json={"template": "peer_group_session"}, headers=h)
    checklist = ok(r, 201)
    return {
        "study": study,
        "people": people,
        "supporters": sup,
        "groups": groups,
        "sessions": sessions,
        "checklist": checklist,
        "participant": participant,
    }


def H(world, who):
    return world["people"][who].headers


def answers(core=2, form=2, **override):
    a = {c: core for c in CORE} | {f: form for f in FORM}
    return a | override


def rate(client, world, who, session, answers_, rated_on="2026-02-28", expect=201, **extra):
    body = {
        "session_id": world["sessions"][session],
        "checklist": "peer_group_session",
        "method": "audio_recording",
        "rated_on": rated_on,
        "answers": answers_,
        **extra,
    }
    r = client.post(f"/studies/{world['study'].id}/fidelity/ratings", json=body, headers=H(world, who))
    assert r.status_code == expect, r.text
    return r.json()


# ---- checklists --------------------------------------------------------------------------------


def test_checklist_from_template_and_versions(client, world, engine):
    sid = world["study"].id
    c = world["checklist"]
    assert c["code"] == "peer_group_session" and c["version"] == "1.0"
    assert [i["component"] for i in c["definition"]["items"]].count("core") == 8
    again = client.post(
        f"/studies/{sid}/fidelity/checklists", json={"template": "peer_group_session"}, headers=H(world, "admin")
    )
    assert again.status_code == 409 and again.json()["detail"][0]["loc"] == ["body", "version"]
    r = client.post(
        f"/studies/{sid}/fidelity/checklists",
        json={"template": "peer_group_session", "version": "1.1", "min_answered": 0.5},
        headers=H(world, "admin"),
    )
    assert ok(r, 201)["definition"]["min_answered"] == 0.5
    shipped = ok(client.get("/fidelity/templates", headers=H(world, "ev1")))
    assert [t["code"] for t in shipped] == ["peer_group_session"] and len(shipped[0]["items"]) == 16
    listed = ok(client.get(f"/studies/{sid}/fidelity/checklists", headers=H(world, "ev1")))
    assert [x["version"] for x in listed] == ["1.0", "1.1"]
    assert [e.action for e in audit(engine, "fidelity_checklist", c["id"])] == ["create"]


@pytest.mark.parametrize(
    "body, loc",
    [
        ({"template": "no_such_template"}, ["body", "template"]),
        ({"code": "x", "name": "X", "version": "1"}, ["body"]),  # items missing
        (
            {"code": "x", "name": "X", "version": "1",
             "items": [{"code": "a", "text": "A", "component": "both", "options": "d"}]},
            ["body", "items", 0, "component"],
        ),
        (
            {"code": "x", "name": "X", "version": "1",
             "items": [{"code": "a", "text": "A", "component": "core", "options": [{"code": 0, "label": "no"},
                                                                                   {"code": 1, "label": "yes"}]},
                       {"code": "a", "text": "B", "component": "core", "options": "nope"}]},
            ["body", "items", 1],
        ),
    ],
)  # fmt: skip
def test_bad_checklists_name_the_field(client, world, body, loc):
    r = client.post(f"/studies/{world['study'].id}/fidelity/checklists", json=body, headers=H(world, "admin"))
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][: len(loc)] == loc


# ---- ratings -----------------------------------------------------------------------------------


def test_a_rating_is_scored_and_audited(client, world, engine):
    got = rate(client, world, "ev1", "n1", answers(goal_setting=1, timing=0, breaks=9))
    s = got["scores"]
    # core: 15 of 16 points; form: breaks not applicable, 7 items, 12 of 14; total 27 of 30
    assert s["core"] == pytest.approx(100 * 15 / 16) and s["form"] == pytest.approx(100 * 12 / 14)
    assert s["total"] == pytest.approx(90.0) and s["core_full"] == pytest.approx(100 * 7 / 8)
    # the evaluator reads the arm as the study's neutral letter (blinded readers, api.sap.blinding)
    assert s["items_answered"] == 15 and got["site"] == "north" and got["arm"] in ("A", "B", "C")
    assert got["supporter_id"] == world["supporters"]["PS-N1"]
    [event] = audit(engine, "fidelity_rating", got["id"])
    assert event.action == "create" and event.after["total"] == pytest.approx(90.0)
    rate(client, world, "ev1", "n1", answers(), expect=409)


@pytest.mark.parametrize(
    "change, loc",
    [
        ({"answers": answers(feedback=5)}, ["body", "answers", "feedback"]),
        ({"answers": answers(zz=1)}, ["body", "answers", "zz"]),
        ({"answers": answers(safety_check=None)}, ["body", "answers", "safety_check"]),  # required item
        ({"session": "n4"}, ["body", "session_id"]),  # planned, not delivered
        ({"rated_on": "2026-01-09"}, ["body", "rated_on"]),  # before the session
        ({"rated_on": "2099-01-01"}, ["body", "rated_on"]),
        ({"checklist": "nope"}, ["body", "checklist"]),
        ({"method": "telepathy"}, ["body", "method"]),
    ],
)
def test_bad_ratings_name_the_field(client, world, change, loc):
    change = dict(change)  # the parameters are shared by both backends
    session = change.pop("session", "n2")
    a = change.pop("answers", answers())
    body = {
        "session_id": world["sessions"][session],
        "checklist": "peer_group_session",
        "method": "live_observation",
        "rated_on": "2026-02-28",
        "answers": a,
    } | change
    r = client.post(f"/studies/{world['study'].id}/fidelity/ratings", json=body, headers=H(world, "ev2"))
    assert r.status_code == 422, r.text
    assert loc in [e["loc"] for e in r.json()["detail"]]


def test_only_raters_rate(client, world):
    for who in ("coord_a", "analyst"):
        rate(client, world, who, "n2", answers(), expect=403)


def test_correction_by_the_rater_only(client, world, engine):
    got = rate(client, world, "ev2", "s1", answers(core=1))
    url = f"/fidelity/ratings/{got['id']}"
    # blind double rating: ev1 has not rated s1, so ev2's rating of it is hidden from ev1
    assert client.patch(url, json={"answers": answers(), "reason": "x"}, headers=H(world, "ev1")).status_code == 404
    assert client.get(url, headers=H(world, "ev1")).status_code == 404
    listed = ok(client.get(f"/studies/{world['study'].id}/fidelity/ratings", headers=H(world, "ev1")))
    assert got["id"] not in {x["id"] for x in listed}
    assert client.get(url, headers=H(world, "coord_b")).status_code == 200
    r = client.patch(
        url, json={"answers": answers(core=1, modelling=2), "reason": "re-listened"}, headers=H(world, "ev2")
    )
    fixed = ok(r)
    assert fixed["version"] == 2 and fixed["scores"]["core"] == pytest.approx(100 * 9 / 16)
    upd = [e for e in audit(engine, "fidelity_rating", got["id"]) if e.action == "update"]
    assert upd[0].reason == "re-listened" and upd[0].before["core"] == pytest.approx(50.0)


def test_site_scoping_of_ratings(client, world):
    sid = world["study"].id
    south = rate(client, world, "ev1", "s2", answers(form=1))
    a = ok(client.get(f"/studies/{sid}/fidelity/ratings", headers=H(world, "coord_a")))
    b = ok(client.get(f"/studies/{sid}/fidelity/ratings", headers=H(world, "coord_b")))
    assert {r["site"] for r in a} == {"north"} and {r["site"] for r in b} == {"south"}
    assert client.get(f"/fidelity/ratings/{south['id']}", headers=H(world, "coord_a")).status_code == 404
    assert client.get(f"/fidelity/ratings/{south['id']}", headers=H(world, "coord_b")).status_code == 200


# ---- double rating, agreement, summaries --------------------------------------------------------


def test_agreement_on_double_rated_sessions_equals_scikit_learn(client, world):
    sid = world["study"].id
    # n2, n3: rated by both evaluators with some disagreement (n1 and s1 are double-rated above too)
    pairs = {
        "n2": (answers(goal_setting=1, examples=1), answers(goal_setting=2, examples=1, closing=1)),
        "n3": (answers(core=1, form=2, information=0), answers(core=1, form=1, information=0, feedback=2)),
    }
    for key, (a1, a2) in pairs.items():
        rate(client, world, "ev1", key, a1)
        rate(client, world, "ev2", key, a2)
    rate(client, world, "ev2", "n1", answers(goal_setting=1, timing=1, breaks=9))
    rate(client, world, "ev2", "s2", answers(form=1, welcome=2))
    # once both rated n1, each sees the other's rating, and only its rater (or an admin) corrects it
    theirs = ok(
        client.get(f"/studies/{sid}/fidelity/ratings?session_id={world['sessions']['n1']}", headers=H(world, "ev1"))
    )
    assert len(theirs) == 2
    other = next(x for x in theirs if x["rater_id"] == world["people"]["ev2"].id)
    r = client.patch(f"/fidelity/ratings/{other['id']}", json={"note": "x", "reason": "x"}, headers=H(world, "ev1"))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "rating_id"]
    got = ok(client.get(f"/studies/{sid}/fidelity/agreement?checklist=peer_group_session", headers=H(world, "ev1")))
    assert got["double_rated_sessions"] == 4  # n1, n2, n3, s2 (s1: one rater)
    # the same pairs computed independently from the ratings list
    ratings = ok(client.get(f"/studies/{sid}/fidelity/ratings?checklist=peer_group_session", headers=H(world, "admin")))
    by = {}
    for r in ratings:
        by.setdefault(r["session_id"], {})[r["rater_id"]] = r
    x, y = [], []
    for _sess, raters in sorted(by.items()):
        if len(raters) < 2:
            continue
        first, second = (raters[k] for k in sorted(raters, key=lambda u: f"R{u}")[:2])
        for item in CORE + FORM:
            v1, v2 = first["answers"].get(item), second["answers"].get(item)
            if v1 is None or v2 is None or 9 in (v1, v2):
                continue
            x.append(v1)
            y.append(v2)
    pooled = next(r for r in got["items"] if r["scope"] == "all")
    assert pooled["n_pairs"] == len(x)
    assert pooled["kappa"] == pytest.approx(cohen_kappa_score(x, y, weights="quadratic"), abs=1e-9)
    un = ok(
        client.get(
            f"/studies/{sid}/fidelity/agreement?checklist=peer_group_session&weights=none", headers=H(world, "analyst")
        )
    )
    assert next(r for r in un["items"] if r["scope"] == "all")["kappa"] == pytest.approx(cohen_kappa_score(x, y))
    assert {r["type"] for r in got["scores"]} == {"ICC1", "ICC2"}
    bad = client.get(f"/studies/{sid}/fidelity/agreement?checklist=missing", headers=H(world, "ev1"))
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "checklist"]


def test_summary_by_supporter_and_site(client, world):
    sid = world["study"].id
    ratings = ok(client.get(f"/studies/{sid}/fidelity/ratings", headers=H(world, "admin")))
    per_session = {}
    for r in ratings:
        per_session.setdefault((r["site"], r["session_id"]), []).append(r["scores"]["total"])
    site_means = {}
    for (site, _), vals in per_session.items():
        site_means.setdefault(site, []).append(sum(vals) / len(vals))
    got = ok(client.get(f"/studies/{sid}/fidelity/summary?by=site&period=none", headers=H(world, "analyst")))
    assert {r["key"]["site"]: r["mean"] for r in got} == pytest.approx(
        {k: sum(v) / len(v) for k, v in site_means.items()}
    )
    monthly = ok(client.get(f"/studies/{sid}/fidelity/summary?by=supporter&period=month", headers=H(world, "coord_a")))
    assert {r["period"] for r in monthly} == {"2026-01", "2026-02"}  # north only: January and February
    # analysts get 28-day blocks of the process timeline, not calendar months
    blocks = ok(client.get(f"/studies/{sid}/fidelity/summary?by=supporter&period=month", headers=H(world, "analyst")))
    assert all(r["period"].lstrip("-").isdigit() for r in blocks)
    bad = client.get(f"/studies/{sid}/fidelity/summary?by=participant", headers=H(world, "ev1"))
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][:2] == ["query", "by"]


# ---- adaptations -------------------------------------------------------------------------------

FRAME = {
    "arm": "group",
    "site": "north",
    "adapted_on": "2026-02-01",
    "phase": "implementation",
    "what": "content",
    "level": "site",
    "nature": "tailoring",
    "planned": False,
    "decided_by": ["peer_supporter", "programme_manager"],
    "reasons": ["recipient_literacy"],
    "goal": "fit_with_recipients",
    "fidelity": "consistent",
    "component": "information",
    "description": "Handouts rewritten in plain language with pictures",
}


def test_adaptation_log(client, world, engine):
    sid = world["study"].id
    got = ok(client.post(f"/studies/{sid}/adaptations", json=FRAME, headers=H(world, "coord_a")), 201)
    assert got["site"] == "north" and got["planned"] is False and got["reasons"] == ["recipient_literacy"]
    assert [e.action for e in audit(engine, "adaptation", got["id"])] == ["create"]
    session_level = FRAME | {
        "site": None,
        "session_id": world["sessions"]["s2"],
        "level": "group",
        "what": "context",
        "context_aspect": "format",
        "nature": "shortening",
        "planned": True,
        "reasons": ["disruption"],
        "fidelity": "inconsistent",
        "description": "Session moved online and shortened to 45 minutes during a transport strike",
    }
    s2 = ok(client.post(f"/studies/{sid}/adaptations", json=session_level, headers=H(world, "ev1")), 201)
    assert s2["site"] == "south" and s2["group_id"] == world["groups"]["GS"]
    programme = FRAME | {"site": None, "level": "programme", "nature": "adding", "description": "Extra booster session"}
    ok(client.post(f"/studies/{sid}/adaptations", json=programme, headers=H(world, "admin")), 201)
    a = ok(client.get(f"/studies/{sid}/adaptations", headers=H(world, "coord_a")))
    b = ok(client.get(f"/studies/{sid}/adaptations", headers=H(world, "coord_b")))
    assert [x["site"] for x in a] == ["north", None] and sorted(x["site"] or "" for x in b) == ["", "south"]
    assert client.get(f"/adaptations/{got['id']}", headers=H(world, "coord_b")).status_code == 404
    # analysts read the codes, not the free text
    an = ok(client.get(f"/studies/{sid}/adaptations", headers=H(world, "analyst")))
    assert len(an) == 3 and all(x["description"] == "" for x in an)
    r = client.patch(
        f"/adaptations/{got['id']}",
        json={"fidelity": "inconsistent", "reason": "reviewed"},
        headers=H(world, "coord_a"),
    )
    assert ok(r)["fidelity"] == "inconsistent" and ok(r)["version"] == 2
    assert audit(engine, "adaptation", got["id"])[-1].reason == "reviewed"
    planned_only = ok(client.get(f"/studies/{sid}/adaptations?planned=true", headers=H(world, "admin")))
    assert [x["nature"] for x in planned_only] == ["shortening"]


@pytest.mark.parametrize(
    "who, change, loc",
    [
        ("coord_a", {"arm": "nope"}, ["body", "arm"]),
        ("coord_b", {}, ["body", "site"]),  # north is not coordinator B's site
        ("coord_a", {"site": None, "level": "programme"}, ["body", "site"]),  # coordinators name their site
        ("coord_a", {"context_aspect": "format"}, ["body", "context_aspect"]),  # what=content
        ("coord_a", {"what": "context"}, ["body", "context_aspect"]),
        ("coord_a", {"level": "group"}, ["body", "group_id"]),
        ("coord_a", {"arm": "online", "session_id": "n1"}, ["body", "session_id"]),  # the session is of arm group
        ("coord_a", {"reasons": []}, ["body", "reasons"]),
        ("coord_a", {"nature": "improvising"}, ["body", "nature"]),
        ("coord_a", {"description": ""}, ["body", "description"]),
        ("coord_a", {"adapted_on": "2099-01-01"}, ["body", "adapted_on"]),
    ],
)
def test_bad_adaptations_name_the_field(client, world, who, change, loc):
    change = dict(change)
    if change.get("session_id") == "n1":
        change["session_id"] = world["sessions"]["n1"]
    r = client.post(f"/studies/{world['study'].id}/adaptations", json=FRAME | change, headers=H(world, who))
    assert r.status_code == 422, r.text
    assert loc in [e["loc"][: len(loc)] for e in r.json()["detail"]]


def test_analysts_do_not_log_adaptations(client, world):
    r = client.post(f"/studies/{world['study'].id}/adaptations", json=FRAME, headers=H(world, "analyst"))
    assert r.status_code == 403


# ---- the evaluator and outcome data ------------------------------------------------------------


def test_evaluator_reads_delivery_and_fidelity_but_no_outcomes_by_arm(client, world):
    sid = world["study"].id
    pid = world["participant"]["id"]
    h = H(world, "ev1")
    assert client.get(f"/studies/{sid}/fidelity/ratings", headers=h).status_code == 200
    assert client.get(f"/studies/{sid}/adaptations", headers=h).status_code == 200
    assert client.get(f"/studies/{sid}/delivery/sessions", headers=h).status_code == 200
    refused = [
        ("GET", f"/studies/{sid}/participants"),
        ("GET", f"/participants/{pid}/responses"),
        ("GET", f"/studies/{sid}/exports/long"),
        ("GET", f"/studies/{sid}/exports/wide"),
        ("GET", f"/studies/{sid}/exports/fidelity"),
        ("POST", f"/studies/{sid}/analyses/trial"),
        ("POST", f"/studies/{sid}/analyses/trajectory"),
        ("GET", f"/studies/{sid}/safety/summary"),
    ]
    for method, url in refused:
        r = client.request(method, url, headers=h, json={} if method == "POST" else None)
        assert r.status_code == 403, (method, url, r.status_code)


# ---- exports and TIDieR ------------------------------------------------------------------------


def _csv(client, url, headers):
    r = client.get(url, headers=headers)
    assert r.status_code == 200, r.text
    return r.text, list(csv.DictReader(io.StringIO(r.text)))


def test_exports_are_deidentified_for_analysts(client, world, caplog):
    sid = world["study"].id
    text, rows = _csv(client, f"/studies/{sid}/exports/fidelity?format=csv", H(world, "analyst"))
    for value in SUPPORTER.values():
        assert value not in text
    assert {r["supporter"] for r in rows} == {"PS-N1", "PS-S1"}
    assert all(r["session_date"] == "" for r in rows) and all(r["rater"].startswith("R") for r in rows)
    scores = [r for r in rows if r["record"] == "score"]
    items = [r for r in rows if r["record"] == "item"]
    assert len(items) == 16 * (len(scores) // 4) and {r["part"] for r in scores} == {
        "total",
        "core",
        "form",
        "core_full",
    }
    assert {r["session_day"] for r in rows if r["session"] == str(world["sessions"]["n1"])} == {"0"}
    staff_text, staff = _csv(client, f"/studies/{sid}/exports/fidelity?format=csv", H(world, "coord_a"))
    assert {r["site"] for r in staff} == {"north"} and "2026-01-10" in {r["session_date"] for r in staff}
    text, rows = _csv(client, f"/studies/{sid}/exports/adaptations?format=csv", H(world, "analyst"))
    assert len(rows) == 3 and all(r["description"] == "" and r["adapted_on"] == "" for r in rows)
    assert SUPPORTER["name"] not in caplog.text and SUPPORTER["email"] not in caplog.text
    # Each export is audited with its receipt once streamed (on SQLite too, where the reading
    # transaction holds the write lock until it ends: the audit must not wait for it).
    for shape in ("fidelity", "adaptations"):
        r = client.get(f"/studies/{sid}/exports/{shape}?format=csv", headers=H(world, "analyst"))
        receipt = client.get(r.headers["Peerlens-Export-Receipt"], headers=H(world, "analyst"))
        assert receipt.status_code == 200, receipt.text
        assert receipt.json()["complete"] is True and receipt.json()["bytes"] == len(r.content)


def test_tidier_items_10_and_12_come_from_the_records(client, world):
    sid = world["study"].id
    t = ok(client.get(f"/studies/{sid}/arms/group/tidier", headers=H(world, "admin")))
    items = {i["key"]: i for i in t["items"]}
    mods = items["10_modifications"]["value"]
    assert mods["adaptations"] == 3 and mods["planned"] == 1 and mods["unplanned"] == 2
    assert mods["fidelity"] == {"inconsistent": 2, "consistent": 1}
    fid = items["12_how_well_actual"]["value"]["fidelity"]
    assert fid["delivered_sessions"] == 5 and fid["rated_sessions"] == 5 and fid["double_rated_sessions"] == 4
    other = {
        i["key"]: i for i in ok(client.get(f"/studies/{sid}/arms/online/tidier", headers=H(world, "admin")))["items"]
    }
    assert other["10_modifications"]["value"]["adaptations"] == 0


def test_analysts_read_ratings_and_adaptations_with_blinded_arm_letters(client, world):
    sid = world["study"].id
    if not ok(client.get(f"/studies/{sid}/fidelity/ratings", headers=H(world, "admin"))):
        rate(client, world, "ev1", "n2", answers())
    ratings = ok(client.get(f"/studies/{sid}/fidelity/ratings", headers=H(world, "analyst")))
    assert ratings and {r["arm"] for r in ratings} <= {"A", "B", "C"}
    staff = ok(client.get(f"/studies/{sid}/fidelity/ratings", headers=H(world, "admin")))
    assert {r["arm"] for r in staff} - {"A", "B", "C"}  # staff see the arm codes
    ok(client.post(f"/studies/{sid}/adaptations", json=FRAME, headers=H(world, "coord_a")), 201)
    adaptations = ok(client.get(f"/studies/{sid}/adaptations", headers=H(world, "analyst")))
    assert adaptations and {a["arm"] for a in adaptations} <= {"A", "B", "C"}
