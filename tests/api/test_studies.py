"""Studies, sites, arms, waves: the contract, scoping and audit."""

from __future__ import annotations


def _events(client, admin, **params):
    r = client.get("/audit", params=params, headers=admin.headers)
    assert r.status_code == 200
    return r.json()


def test_study_create_read_patch_with_audit(client, admin):
    r = client.post(
        "/studies",
        headers=admin.headers,
        json={
            "title": "Peer support in COPD",
            "design": "cluster_rct",
            "blinding": "outcome_assessor",
            "planned_sample_size": 240,
            "power_assumptions": {"alpha": 0.05, "power": 0.9, "icc": 0.05},
            "time_zone": "America/New_York",
        },
    )
    assert r.status_code == 201, r.text
    study = r.json()
    assert study["randomisation_seed"] and study["status"] == "planning"
    assert study["power_assumptions"]["icc"] == 0.05
    r = client.patch(
        f"/studies/{study['id']}",
        headers=admin.headers,
        json={"status": "recruiting", "reason": "ethics approval received"},
    )
    assert r.status_code == 200 and r.json()["status"] == "recruiting"
    events = _events(client, admin, entity="study", entity_id=str(study["id"]))
    assert [e["action"] for e in events] == ["create", "update"]
    upd = events[1]
    assert upd["before"] == {"status": "planning"} and upd["after"] == {"status": "recruiting"}
    assert upd["reason"] == "ethics approval received" and upd["actor_role"] == "admin"
    assert upd["source"] == "api" and upd["request_id"] and upd["study_id"] == study["id"]
    assert "randomisation_seed" not in (events[0]["after"] or {})


def test_seed_is_hidden_from_coordinators_and_analysts(client, make_study, make_user, analyst):
    study = make_study(seed="my-seed")
    coord = make_user("coordinator", [study.sites["north"]])
    for user in (coord, analyst):
        body = client.get(f"/studies/{study.id}", headers=user.headers).json()
        assert body["randomisation_seed"] is None
        assert all(s["randomisation_seed"] is None for s in client.get("/studies", headers=user.headers).json())


def test_coordinator_sees_only_studies_and_sites_of_their_own(client, make_study, make_user):
    a, b = make_study(), make_study()
    coord = make_user("coordinator", [a.sites["north"]])
    ids = [s["id"] for s in client.get("/studies", headers=coord.headers).json()]
    assert a.id in ids and b.id not in ids
    assert client.get(f"/studies/{b.id}", headers=coord.headers).status_code == 404
    sites = client.get(f"/studies/{a.id}/sites", headers=coord.headers).json()
    assert [s["code"] for s in sites] == ["north"]


def test_arms_and_waves(client, admin, make_study):
    study = make_study()
    arms = client.get(f"/studies/{study.id}/arms", headers=admin.headers).json()
    assert {a["kind"] for a in arms} == {"intervention", "control"}
    waves = client.get(f"/studies/{study.id}/waves", headers=admin.headers).json()
    assert [w["code"] for w in waves] == ["baseline", "m1", "m3", "m6", "m12"]
    r = client.post(
        f"/studies/{study.id}/waves",
        headers=admin.headers,
        json={"code": "m1", "offset_days": 31, "instruments": ["phq9"]},
    )
    assert r.status_code == 409 and r.json()["detail"][0]["loc"] == ["body", "code"]


def test_study_validation_names_field_and_rule(client, admin):
    cases = [
        ({"title": "x", "design": "rct", "time_zone": "Mars/Olympus"}, ["body", "time_zone"], "unknown_time_zone"),
        ({"title": "x", "design": "quasi"}, ["body", "design"], "literal_error"),
        (
            {"title": "x", "design": "rct", "planned_sample_size": "many"},
            ["body", "planned_sample_size"],
            "int_parsing",
        ),
        ({"title": "x", "design": "rct", "colour": "blue"}, ["body", "colour"], "extra_forbidden"),
        ({"design": "rct"}, ["body", "title"], "missing"),
    ]
    for body, loc, type_ in cases:
        r = client.post("/studies", json=body, headers=admin.headers)
        assert r.status_code == 422, body
        assert {"loc": loc, "type": type_} in [{"loc": e["loc"], "type": e["type"]} for e in r.json()["detail"]]


def test_arm_and_wave_validation(client, admin, make_study):
    study = make_study()
    r = client.post(
        f"/studies/{study.id}/arms",
        headers=admin.headers,
        json={"code": "x", "name": "x", "kind": "placebo", "allocation_ratio": 0},
    )
    locs = {tuple(e["loc"]) for e in r.json()["detail"]}
    assert r.status_code == 422 and {("body", "kind"), ("body", "allocation_ratio")} <= locs
    r = client.post(
        f"/studies/{study.id}/waves",
        headers=admin.headers,
        json={"code": "m2", "offset_days": 60, "instruments": ["phq9", "nope"]},
    )
    assert r.status_code == 422
    assert r.json()["detail"] == [
        {"loc": ["body", "instruments", 1], "msg": r.json()["detail"][0]["msg"], "type": "unknown_instrument"}
    ]


def test_instrument_catalogue(client, analyst):
    listed = client.get("/instruments", headers=analyst.headers).json()
    assert {"phq9", "pam13"} <= {i["code"] for i in listed}
    pam = client.get("/instruments/pam13", headers=analyst.headers).json()
    assert pam["wording_shipped"] is False and len(pam["items"]) == 13
    assert all(item["text"] is None for item in pam["items"])
    r = client.get("/instruments/nope", headers=analyst.headers)
    assert r.status_code == 404 and r.json()["detail"][0]["type"] == "unknown_instrument"
