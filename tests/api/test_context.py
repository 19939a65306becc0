"""Context records, events, personal goals, logic models, CMO configurations and the realist analyses.

Resources are created through the API on a fresh study (site scoping, audit, 4xx naming the
field). The analyses run on the demo study (48 synthetic participants, with its context, CMO
configurations and goals); expected values come from the database (goal levels) and the published
Kiresuk–Sherman formula, or from identities that hold whatever the data (full uptake: CACE = ITT).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math

import pytest
from sqlmodel import Session, select

from api.audit.models import AuditEvent


def audit(engine, entity):
    with Session(engine) as s:
        return s.exec(select(AuditEvent).where(AuditEvent.entity == entity).order_by(AuditEvent.id)).all()


@pytest.fixture(scope="module")
def study(make_study):
    return make_study(
        waves=(
            ("baseline", 0, 0, 14, ["phq9", "semcd6", "lsns6"]),
            ("m3", 90, 14, 14, ["phq9", "semcd6"]),
            ("m12", 365, 30, 30, ["phq9", "semcd6"]),
        )
    )


@pytest.fixture(scope="module")
def coord_north(make_user, study):
    return make_user("coordinator", [study.sites["north"]])


@pytest.fixture(scope="module")
def coord_south(make_user, study):
    return make_user("coordinator", [study.sites["south"]])


def loc(r):
    return r.json()["detail"][0]["loc"]


def test_context_records_are_versioned_and_site_scoped(client, engine, study, admin, analyst, coord_north, coord_south):
    base = f"/studies/{study.id}/context/records"
    r = client.post(
        base, json={"valid_from": "2026-01-01", "variables": {"sessions_planned": 12}}, headers=admin.headers
    )
    assert r.status_code == 201 and r.json()["site"] is None and r.json()["version"] == 1
    north = {"site": "north", "valid_from": "2026-01-01", "variables": {"setting": "urban", "supporter_ratio": 8}}
    r = client.post(base, json=north, headers=coord_north.headers)
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 1
    r = client.post(
        base,
        json={**north, "valid_from": "2026-06-01", "variables": {"supporter_ratio": 12}},
        headers=coord_north.headers,
    )
    assert r.json()["version"] == 2
    # another site's record is not found; the programme's context is the admins'
    assert client.post(base, json={**north, "site": "south"}, headers=coord_north.headers).status_code == 404
    r = client.post(base, json={"valid_from": "2026-01-01", "variables": {"x": 1}}, headers=coord_north.headers)
    assert r.status_code == 403
    assert client.post(base, json=north, headers=analyst.headers).status_code == 403
    every = client.get(base, headers=admin.headers).json()
    assert [(x["site"], x["version"]) for x in every] == [("north", 1), ("north", 2), (None, 1)]
    current = client.get(base + "?current=true", headers=admin.headers).json()
    assert sorted((x["site"] or "", x["variables"].get("supporter_ratio")) for x in current) == [
        ("", None),
        ("north", 12),
    ]
    assert [x["site"] for x in client.get(base, headers=coord_south.headers).json()] == [None]
    assert len(audit(engine, "context_record")) >= 3


@pytest.mark.parametrize(
    "body,where",
    [
        ({"valid_from": "2026-01-01", "variables": {"bad name": 1}}, ["body", "variables"]),
        ({"valid_from": "2026-01-01", "variables": {}}, ["body", "variables"]),
        ({"site": "nowhere", "valid_from": "2026-01-01", "variables": {"a": 1}}, ["body", "site"]),
        ({"valid_from": "not a date", "variables": {"a": 1}}, ["body", "valid_from"]),
    ],
)
def test_bad_context_records_name_the_field(client, study, admin, body, where):
    r = client.post(f"/studies/{study.id}/context/records", json=body, headers=admin.headers)
    assert r.status_code == 422 and loc(r)[: len(where)] == where, r.text


def test_context_events_timeline(client, engine, study, admin, coord_north, coord_south):
    base = f"/studies/{study.id}/context/events"
    ok = {
        "level": "site",
        "site": "north",
        "kind": "supporter_left",
        "title": "Supporter left",
        "starts_on": "2026-03-01",
    }
    r = client.post(base, json=ok, headers=coord_north.headers)
    assert r.status_code == 201, r.text
    eid = r.json()["id"]
    r = client.post(
        base,
        json={
            "level": "study",
            "kind": "lockdown",
            "title": "Lockdown",
            "starts_on": "2026-02-01",
            "ends_on": "2026-02-20",
        },
        headers=admin.headers,
    )
    assert r.status_code == 201
    assert [e["title"] for e in client.get(base, headers=admin.headers).json()] == ["Lockdown", "Supporter left"]
    assert [e["title"] for e in client.get(base, headers=coord_south.headers).json()] == ["Lockdown"]
    r = client.patch(f"{base}/{eid}", json={"ends_on": "2026-04-01"}, headers=coord_north.headers)
    assert r.status_code == 200 and r.json()["ends_on"] == "2026-04-01"
    assert client.patch(f"{base}/{eid}", json={"ends_on": "2026-01-01"}, headers=admin.headers).status_code == 422
    assert client.patch(f"{base}/{eid}", json={"title": "x"}, headers=coord_south.headers).status_code == 404
    events = [a for a in audit(engine, "context_event") if a.entity_id == str(eid)]
    assert [a.action for a in events] == ["create", "update"]
    for body, where in [
        ({**ok, "ends_on": "2026-01-01"}, ["body"]),
        ({**ok, "level": "group"}, ["body", "group_code"]),
        ({**ok, "site": None}, ["body", "site"]),
        ({**ok, "kind": "meteor"}, ["body", "kind"]),
        ({**ok, "title": "two\nlines"}, ["body", "title"]),
    ]:
        r = client.post(base, json=body, headers=admin.headers)
        assert r.status_code == 422 and loc(r)[: len(where)] == where, (body, r.text)


LEVELS = {"-2": "never", "-1": "rarely", "0": "weekly", "1": "twice a week", "2": "daily"}


def test_personal_goals_and_ratings(client, engine, study, enrol, admin, analyst, coord_north, coord_south):
    p = enrol(study, site="north")
    base = f"/studies/{study.id}/goals"
    body = {
        "participant": p["study_code"],
        "code": "walk",
        "domain": "physical activity",
        "weight": 2,
        "levels": LEVELS,
        "set_on": "2026-01-05",
    }
    r = client.post(base, json=body, headers=coord_north.headers)
    assert r.status_code == 201, r.text
    gid = r.json()["id"]
    assert r.json()["baseline_level"] == -1
    assert client.post(base, json=body, headers=admin.headers).status_code == 409
    assert client.post(base, json={**body, "code": "x"}, headers=coord_south.headers).status_code == 422
    r = client.post(
        f"{base}/{gid}/ratings", json={"wave": "m3", "level": 1, "rated_on": "2026-04-05"}, headers=coord_north.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["ratings"] == [{"wave": "m3", "level": 1, "rated_on": "2026-04-05"}]
    r = client.post(
        f"{base}/{gid}/ratings", json={"wave": "m3", "level": 2, "rated_on": "2026-04-06"}, headers=admin.headers
    )
    assert [x["level"] for x in r.json()["ratings"]] == [2]  # amended, not a second row
    assert [a.action for a in audit(engine, "goal_rating")][-2:] == ["create", "amend"]
    assert client.get(base, headers=analyst.headers).status_code == 403  # the goals' wording is for staff
    assert client.get(base, headers=coord_south.headers).json() == []
    assert (
        client.post(
            f"{base}/{gid}/ratings",
            json={"wave": "m3", "level": 1, "rated_on": "2026-04-05"},
            headers=coord_south.headers,
        ).status_code
        == 404
    )
    for rating, where in [
        ({"wave": "m3", "level": 3, "rated_on": "2026-04-05"}, ["body", "level"]),
        ({"wave": "m99", "level": 1, "rated_on": "2026-04-05"}, ["body", "wave"]),
    ]:
        r = client.post(f"{base}/{gid}/ratings", json=rating, headers=admin.headers)
        assert r.status_code == 422 and loc(r) == where, r.text
    r = client.post(base, json={**body, "code": "y", "levels": {"0": "weekly"}}, headers=admin.headers)
    assert r.status_code == 422 and loc(r) == ["body", "levels"]


def test_logic_model_and_cmo_configurations(client, engine, study, admin, analyst, coord_north):
    lm = {
        "nodes": [
            {"code": "groups", "kind": "activity", "label": "Peer groups"},
            {"code": "efficacy", "kind": "mechanism", "label": "Self-efficacy", "measure": "semcd6"},
            {"code": "mood", "kind": "outcome", "label": "Depression", "measure": "phq9"},
        ],
        "links": [{"from": "groups", "to": "efficacy"}, {"from": "efficacy", "to": "mood"}],
    }
    r = client.put(f"/studies/{study.id}/logic-model", json=lm, headers=admin.headers)
    assert r.status_code == 200 and r.json()["version"] == 1
    assert client.put(f"/studies/{study.id}/logic-model", json=lm, headers=admin.headers).json()["version"] == 2
    assert client.put(f"/studies/{study.id}/logic-model", json=lm, headers=coord_north.headers).status_code == 403
    bad = {**lm, "links": [{"from": "groups", "to": "nowhere"}]}
    r = client.put(f"/studies/{study.id}/logic-model", json=bad, headers=admin.headers)
    assert r.status_code == 422 and loc(r) == ["body", "links", 0, "to"]
    assert client.get(f"/studies/{study.id}/logic-model", headers=analyst.headers).json()["version"] == 2

    cmo = {
        "code": "isolation",
        "title": "Isolated people gain most",
        "context": [{"variable": "lsns6", "op": "<", "value": 12}],
        "mechanism": {"kind": "measure", "ref": "semcd6", "wave": "m3"},
        "outcome": "phq9",
        "outcome_wave": "m12",
        "direction": "negative",
    }
    r = client.post(f"/studies/{study.id}/cmos", json=cmo, headers=admin.headers)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert r.json()["status"] == "untested" and r.json()["prespecified"] is True
    assert client.post(f"/studies/{study.id}/cmos", json=cmo, headers=admin.headers).status_code == 409
    assert client.post(f"/studies/{study.id}/cmos", json=cmo, headers=coord_north.headers).status_code == 403
    for body, where in [
        ({**cmo, "code": "b", "outcome_wave": "m7"}, ["body", "outcome_wave"]),
        ({**cmo, "code": "c", "mechanism": {"kind": "measure", "ref": "semcd6"}}, ["body", "mechanism", "wave"]),
        ({**cmo, "code": "d", "context": [{"variable": "lsns6", "op": "~", "value": 1}]}, ["body", "context", 0, "op"]),
        ({**cmo, "code": "e", "direction": "up"}, ["body", "direction"]),
    ]:
        r = client.post(f"/studies/{study.id}/cmos", json=body, headers=admin.headers)
        assert r.status_code == 422 and loc(r)[: len(where)] == where, (body, r.text)
    patch = {"status": "supported", "evidence": [{"kind": "analysis_run", "ref": "abc123", "note": "BH q < 0.05"}]}
    r = client.patch(f"/studies/{study.id}/cmos/{cid}", json=patch, headers=admin.headers)
    assert r.status_code == 200 and r.json()["status"] == "supported" and r.json()["evidence"][0]["ref"] == "abc123"
    assert client.get(f"/studies/{study.id}/cmos/{cid}", headers=analyst.headers).json()["status"] == "supported"
    assert client.get(f"/studies/{study.id}/cmos/999999", headers=analyst.headers).status_code == 404
    changes = audit(engine, "cmo_configuration")
    assert changes[-1].action == "update" and changes[-1].before["status"] == "untested"


# ---- analyses on the demo study ------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(db_url, client):
    from api.demo import load_demo

    return load_demo(db_url, n_participants=48, seed=20261125)


def _h(demo, role="admin"):  # analysts are blind to the demo's arms (neutral letters, no kinds)
    return {"Authorization": f"Bearer {demo.tokens[role]}"}


def test_realist_table_json_and_csv(client, demo):
    r = client.get(f"/studies/{demo.study_id}/realist-table?min_per_cell=3", headers=_h(demo))
    assert r.status_code == 200, r.text
    rows = {x["cmo"]: x for x in r.json()["rows"]}
    assert set(rows) == {"isolation", "rural", "low_efficacy"}
    iso = rows["isolation"]
    assert iso["prespecified"] is True and rows["low_efficacy"]["prespecified"] is False
    assert iso["context"] == "lsns6 < 12" and iso["outcome_wave"] == "m6"
    est = [x for x in rows.values() if x["p"] is not None]
    assert est and all(x["ci_lower"] < x["moderation"] < x["ci_upper"] for x in est)
    assert all(x["p_bh"] >= x["p"] for x in est)
    c = client.get(f"/studies/{demo.study_id}/realist-table?format=csv&min_per_cell=3", headers=_h(demo))
    assert c.status_code == 200 and c.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(c.text)))
    assert [t["cmo"] for t in table] == [x["cmo"] for x in r.json()["rows"]]
    r = client.get(f"/studies/{demo.study_id}/realist-table?arm=nope", headers=_h(demo))
    assert r.status_code == 422 and loc(r) == ["query", "arm"]


def test_what_works_for_whom_kind_and_site_heterogeneity(client, demo):
    r = client.post(
        f"/studies/{demo.study_id}/analyses/what-works-for-whom", json={"min_per_cell": 3}, headers=_h(demo)
    )
    assert r.status_code == 200, r.text
    assert {x["cmo"] for x in r.json()["tables"]["realist"]} == {"isolation", "rural", "low_efficacy"}
    r = client.post(f"/studies/{demo.study_id}/analyses/what-works-for-whom", json={"cmos": ["nope"]}, headers=_h(demo))
    assert r.status_code == 422 and loc(r) == ["body", "cmos", 0]
    r = client.post(
        f"/studies/{demo.study_id}/analyses/site-heterogeneity",
        json={"outcome": "pam13_activation", "wave": "m6"},
        headers=_h(demo),
    )
    assert r.status_code == 200, r.text
    sites = r.json()["tables"]["sites"]
    summary = r.json()["tables"]["summary"][0]
    assert {s["site"] for s in sites} == {"north", "south"} and summary["n_sites"] == 2
    for s in sites:  # shrinkage pulls each site towards the pooled mean
        assert abs(s["shrunk"] - summary["mu"]) <= abs(s["effect"] - summary["mu"]) + 1e-9
    assert any(p["format"] == "png" for p in r.json()["plots"])


def test_mediation_kind_states_its_assumption_and_checks_wave_order(client, demo):
    body = {"outcome": "phq9", "wave": "m6", "mediator": "semcd6", "mediator_wave": "m3", "n_boot": 200}
    r = client.post(f"/studies/{demo.study_id}/analyses/mediation", json=body, headers=_h(demo))
    assert r.status_code == 200, r.text
    med = {x["effect"]: x for x in r.json()["tables"]["mediation"]}
    assert med["total"]["estimate"] == pytest.approx(med["indirect"]["estimate"] + med["direct"]["estimate"])
    assert "sequential ignorability" in r.json()["values"]["assumption"]
    r = client.post(
        f"/studies/{demo.study_id}/analyses/mediation", json={**body, "mediator_wave": "m6"}, headers=_h(demo)
    )
    assert r.status_code == 422 and loc(r) == ["body", "mediator_wave"]


def test_cace_with_full_uptake_equals_itt_and_providers_are_checked(client, demo, engine):
    from api.participants.models import Participant
    from api.studies.models import Arm

    with Session(engine) as s:
        rows = s.exec(
            select(Participant.study_code, Arm.code)
            .join(Arm, Arm.id == Participant.arm_id)
            .where(Participant.study_id == demo.study_id)
        ).all()
    full = {code: 1.0 for code, arm in rows if arm == "group"}
    body = {"outcome": "phq9", "wave": "m6", "adherence_source": "request", "adherence": full}
    r = client.post(f"/studies/{demo.study_id}/analyses/cace", json=body, headers=_h(demo))
    assert r.status_code == 200, r.text
    est = {x["estimand"]: x for x in r.json()["tables"]["cace"]}
    assert est["cace"]["estimate"] == pytest.approx(est["itt"]["estimate"], rel=1e-9)
    assert est["compliance"]["estimate"] == pytest.approx(1.0)
    half = {code: float(i % 2) for i, code in enumerate(sorted(full))}
    r = client.post(f"/studies/{demo.study_id}/analyses/cace", json={**body, "adherence": half}, headers=_h(demo))
    est = {x["estimand"]: x for x in r.json()["tables"]["cace"]}
    assert est["compliance"]["estimate"] == pytest.approx(0.5, abs=0.15)  # half the offered took it up
    assert abs(est["cace"]["estimate"]) > abs(est["itt"]["estimate"])  # ITT diluted by non-uptake
    r = client.post(
        f"/studies/{demo.study_id}/analyses/dose-response", json={**body, "adherence": half}, headers=_h(demo)
    )
    assert r.status_code == 200 and "not randomised" in r.json()["values"]["caveat"]
    r = client.post(
        f"/studies/{demo.study_id}/analyses/cace", json={**body, "adherence_source": "column"}, headers=_h(demo)
    )
    assert r.status_code == 422 and loc(r) == ["body", "adherence_column"]
    r = client.post(f"/studies/{demo.study_id}/analyses/cace", json={**body, "adherence": {"x": 5.0}}, headers=_h(demo))
    assert r.status_code == 422
    if importlib.util.find_spec("api.delivery") is None:
        r = client.post(
            f"/studies/{demo.study_id}/analyses/cace", json={"outcome": "phq9", "wave": "m6"}, headers=_h(demo)
        )
        assert r.status_code == 422 and loc(r) == ["body", "adherence_source"]


def test_gas_kind_matches_kiresuk_sherman_by_hand(client, demo, engine):
    from api.context.models import GoalRating, PersonalGoal
    from api.participants.models import Participant
    from api.studies.models import Arm

    with Session(engine) as s:
        rows = s.exec(
            select(Participant.study_code, Arm.code, PersonalGoal.weight, GoalRating.level)
            .join(PersonalGoal, PersonalGoal.participant_id == Participant.id)
            .join(GoalRating, GoalRating.goal_id == PersonalGoal.id)
            .join(Arm, Arm.id == Participant.arm_id)
            .where(Participant.study_id == demo.study_id, GoalRating.wave_code == "m6")
        ).all()
    per: dict[str, tuple[str, list[tuple[int, int]]]] = {}
    for code, arm, w, x in rows:
        per.setdefault(code, (arm, []))[1].append((w, x))

    def t(goals):  # T = 50 + 10 Σwx / sqrt(0.7 Σw² + 0.3 (Σw)²)
        sw, sw2, swx = sum(w for w, _ in goals), sum(w * w for w, _ in goals), sum(w * x for w, x in goals)
        return 50 + 10 * swx / math.sqrt(0.7 * sw2 + 0.3 * sw**2)

    group = [t(g) for arm, g in per.values() if arm == "group"]
    r = client.post(f"/studies/{demo.study_id}/analyses/gas", json={"wave": "m6"}, headers=_h(demo))
    assert r.status_code == 200, r.text
    got = {(x["measure"], x["arm"]): x for x in r.json()["tables"]["gas_by_arm"]}
    assert got[("t_followup", "group")]["mean"] == pytest.approx(sum(group) / len(group))
    assert got[("t_followup", "group")]["n"] == len(group)
    assert got[("t_change", "group")]["mean"] > got[("t_change", "usual_care")]["mean"]  # generated: +0.6 vs -0.4
    r = client.post(f"/studies/{demo.study_id}/analyses/gas", json={"wave": "m6", "rho": 1.0}, headers=_h(demo))
    assert r.status_code == 422 and loc(r) == ["body", "rho"]


def test_cli_writes_the_realist_table_as_the_api_serves_it(client, demo, db_url, tmp_path, engine):
    from typer.testing import CliRunner

    from api.cli import app
    from api.config import get_settings

    mp = pytest.MonkeyPatch()
    mp.setenv("DATABASE_URL", db_url)
    mp.setenv("PEERLENS_SECRET_KEY", "test-secret")
    get_settings.cache_clear()
    from api.sap.blinding import neutral_labels
    from api.studies.models import Arm

    with Session(engine) as s:
        ids = {a.code: a.id for a in s.exec(select(Arm).where(Arm.study_id == demo.study_id)).all()}
        letters = neutral_labels(s, demo.study_id)
    try:
        out = tmp_path / "realist.csv"
        args = ["realist-table", str(demo.study_id), "-o", str(out), "--min-per-cell", "3"]
        blind = CliRunner().invoke(app, args)  # the command reads as an analyst: blind to the arms
        assert blind.exit_code == 2 and "arm" in blind.output
        args += ["--arm", letters[ids["group"]], "--reference", letters[ids["usual_care"]]]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        over_waves = tmp_path / "realist-long.json"
        res = CliRunner().invoke(app, [*args[:3], str(over_waves), *args[4:], "--longitudinal"])
        assert res.exit_code == 0, res.output
        bad = CliRunner().invoke(app, ["realist-table", "999999", "-o", str(out)])
        assert bad.exit_code == 2
    finally:
        mp.undo()
        get_settings.cache_clear()
    cli_rows = list(csv.DictReader(io.StringIO(out.read_text())))
    api = client.get(f"/studies/{demo.study_id}/realist-table?min_per_cell=3", headers=_h(demo)).json()["rows"]
    assert [r["cmo"] for r in cli_rows] == [r["cmo"] for r in api]
    for c, a in zip(cli_rows, api, strict=True):
        if a["moderation"] is not None:
            assert float(c["moderation"]) == pytest.approx(a["moderation"])
    # --longitudinal adds the columns of ?longitudinal=true, with the same values
    long_rows = json.loads(over_waves.read_text())["rows"]
    long_api = client.get(
        f"/studies/{demo.study_id}/realist-table?min_per_cell=3&longitudinal=true", headers=_h(demo)
    ).json()["rows"]
    added = set(long_api[0]) - set(api[0])
    assert added and added <= set(long_rows[0]) and not (added & set(cli_rows[0]))
    for c, a in zip(long_rows, long_api, strict=True):
        for k in added:
            if isinstance(a[k], float):
                assert c[k] == pytest.approx(a[k])


def test_participant_context_records_feed_the_column_provider(client, demo, engine):
    from api.participants.models import Participant
    from api.studies.models import Arm

    with Session(engine) as s:
        rows = s.exec(
            select(Participant.study_code, Arm.code)
            .join(Arm, Arm.id == Participant.arm_id)
            .where(Participant.study_id == demo.study_id)
            .order_by(Participant.study_code)
        ).all()
    group = [code for code, arm in rows if arm == "group"]
    adherence = {code: float(i % 3 != 0) for i, code in enumerate(group)}
    admin = _h(demo, "admin")
    for code, a in adherence.items():
        body = {"participant": code, "valid_from": "2026-06-01", "variables": {"adherent": int(a), "caring": "no"}}
        r = client.post(f"/studies/{demo.study_id}/context/records", json=body, headers=admin)
        assert r.status_code == 201 and r.json()["participant"] == code and r.json()["site"] is None, r.text
    # a later version wins: the first participant's adherence is corrected
    first = group[0]
    body = {"participant": first, "valid_from": "2026-07-01", "variables": {"adherent": 1}}
    assert client.post(f"/studies/{demo.study_id}/context/records", json=body, headers=admin).json()["version"] == 2
    adherence[first] = 1.0
    r = client.post(f"/studies/{demo.study_id}/context/records", json={**body, "site": "north"}, headers=admin)
    assert r.status_code == 422 and loc(r) == ["body", "site"]
    common = {"outcome": "phq9", "wave": "m6"}
    by_column = client.post(
        f"/studies/{demo.study_id}/analyses/cace",
        json={**common, "adherence_source": "column", "adherence_column": "ctx:adherent"},
        headers=_h(demo),
    )
    by_request = client.post(
        f"/studies/{demo.study_id}/analyses/cace",
        json={**common, "adherence_source": "request", "adherence": adherence},
        headers=_h(demo),
    )
    assert by_column.status_code == 200, by_column.text
    a = {x["estimand"]: x["estimate"] for x in by_column.json()["tables"]["cace"]}
    b = {x["estimand"]: x["estimate"] for x in by_request.json()["tables"]["cace"]}
    assert a == pytest.approx(b)


def test_realist_demo_recovers_its_mediator_and_complier_effect(tmp_path):
    """The realist demo study (240 participants, SQLite only: the load dominates the time).

    Its generating model (analysis.realist_sim) routes the whole arm effect through self-efficacy at
    m3 and needs take-up, so the direct effect is 0 and the CACE is the ITT over the take-up.
    """
    from fastapi.testclient import TestClient

    from api.config import Settings
    from api.demo import load_demo
    from api.main import create_app
    from api.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'realist.db'}"
    upgrade(url)
    demo = load_demo(url, n_participants=6, realist=True)
    truth = demo.realist["truth"]
    sid = demo.realist["study_id"]
    app = create_app(Settings(DATABASE_URL=url, PEERLENS_SECRET_KEY="t", PEERLENS_ARTIFACT_DIR=str(tmp_path / "a")))
    h = {"Authorization": f"Bearer {demo.tokens['admin']}"}
    with TestClient(app) as c:
        body = {"outcome": "phq9", "wave": "m12", "mediator": "semcd6", "mediator_wave": "m3", "n_boot": 500}
        med = {
            x["effect"]: x
            for x in c.post(f"/studies/{sid}/analyses/mediation", json=body, headers=h).json()["tables"]["mediation"]
        }
        assert med["indirect"]["ci_upper"] < 0 < med["direct"]["ci_upper"] and med["direct"]["ci_lower"] < 0
        assert med["b_path"]["ci_lower"] < -2.0 + 0.5 and -2.0 - 0.5 < med["b_path"]["ci_upper"]
        body = {"outcome": "phq9", "wave": "m12", "adherence_source": "column", "adherence_column": "ctx:adherent"}
        r = c.post(f"/studies/{sid}/analyses/cace", json=body, headers=h)
        assert r.status_code == 200, r.text
        est = {x["estimand"]: x for x in r.json()["tables"]["cace"]}
        assert est["cace"]["ci_lower"] < truth["cace"] < est["cace"]["ci_upper"]
        assert 0.5 < est["compliance"]["estimate"] < 0.8  # 70 % take-up generated
        rows = c.get(f"/studies/{sid}/realist-table", headers=h).json()["rows"]
        assert rows[0]["ci_lower"] < truth["moderation"] < rows[0]["ci_upper"]


def test_realist_table_joins_code_prevalence_and_quotes_by_context_group():
    import pandas as pd

    from analysis.realist_sim import simulate_realist
    from api.context.realist import RealistData, realist_table

    sim = simulate_realist(200, seed=9).participants
    rows = []
    for r in sim.itertuples():
        for wave, offset, scale, value in (
            ("baseline", 0, "phq9", r.phq9_baseline),
            ("m12", 365, "phq9", r.phq9_m12),
            ("baseline", 0, "lsns6", r.lsns6),
        ):
            rows.append(
                {
                    "participant": r.participant,
                    "site": r.site,
                    "arm": r.arm,
                    "wave": wave,
                    "wave_offset": offset,
                    "scale": scale,
                    "value": value,
                }
            )
    long = pd.DataFrame(rows)
    isolated = set(sim.loc[sim["lsns6"] < 12, "participant"])
    heard = sorted(sim["participant"])[:40]
    coded = [p for p in heard if p in isolated][:6] + [p for p in heard if p not in isolated][:2]
    quotes = pd.DataFrame(
        {"participant": coded, "code": "peer_modelling", "quote": [f"seeing others cope ({p})" for p in coded]}
    )
    quotes.attrs["interviewed"] = heard
    cmo = {
        "code": "iso",
        "title": "t",
        "context": [{"variable": "lsns6", "op": "<", "value": 12}],
        "mechanism": {"kind": "code", "ref": "peer_modelling"},
        "outcome": "phq9",
        "outcome_wave": "m12",
        "direction": "negative",
        "prespecified": True,
        "status": "untested",
        "evidence": [{"kind": "quote", "ref": "T12:40-95"}],
    }
    data = RealistData(long, {}, pd.DataFrame(), [cmo], [("peer", "intervention"), ("usual", "control")], None, quotes)
    row = realist_table(data).iloc[0]
    heard_in = [p for p in heard if p in isolated]
    assert row["code_share_in"] == pytest.approx(6 / len(heard_in))
    assert row["code_share_out"] == pytest.approx(2 / (len(heard) - len(heard_in)))
    assert row["quotes_in"].count("seeing others cope") == 2 and all(p in isolated for p in coded[:2])
    assert row["evidence"] == "quote:T12:40-95" and row["mechanism"] == "code:peer_modelling"
    # the estimate is the library's own what-works-for-whom row on the same participants
    assert row["n_in"] + row["n_out"] == 200


def test_context_dates_outside_the_plausible_range_are_422_naming_the_field(client, admin, make_study):
    study = make_study()
    body = {"level": "study", "kind": "policy_change", "title": "New prescribing policy", "starts_on": "9999-12-31"}
    r = client.post(f"/studies/{study.id}/context/events", json=body, headers=admin.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "starts_on"], r.text
    record = {"valid_from": "0001-01-01", "variables": {"setting": "rural"}}
    r = client.post(f"/studies/{study.id}/context/records", json=record, headers=admin.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "valid_from"], r.text
