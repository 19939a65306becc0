"""The statistical analysis plan (versions, lock, hash, deviations, pre-specified vs post hoc) and
blinded analysis (neutral arm labels on every analyst surface until an admin unblinds the study).

A small three-arm trial is built by hand through the API. The hash of a locked plan is recomputed
here from the documented canonical form with hashlib; the blinded mapping is read from every
analyst surface (REST reads, every export shape in every format, data dictionaries, analyses) and
checked for arm codes, names and kinds; the arm an analyst sees as ``A`` is checked to be the same
arm in every surface and every call, by the participants it holds.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from tests.conftest import phq9_answers

ARMS = (
    ("walkers", "Walking buddies", "intervention"),
    ("texters", "Text message mentors", "intervention"),
    ("usualcare", "Usual care only", "control"),
)
SECRETS = ("walkers", "Walking buddies", "texters", "Text message mentors", "usualcare", "Usual care only")
KINDS = ("intervention", "control", "active_comparator")
FORMATS = ("csv", "json", "parquet", "dta", "sav")
SHAPES = ("long", "wide", "items", "safety")


@pytest.fixture(scope="module")
def trial(client, admin, make_user):
    """12 participants, 4 per arm (each arm's PHQ-9 level differs so arms are told apart by data)."""
    h = admin.headers
    r = client.post("/studies", json={"title": "Blinded trial", "design": "rct", "time_zone": "UTC"}, headers=h)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert client.post(f"/studies/{sid}/sites", json={"code": "north", "name": "North"}, headers=h).status_code == 201
    for code, name, kind in ARMS:
        r = client.post(f"/studies/{sid}/arms", json={"code": code, "name": name, "kind": kind}, headers=h)
        assert r.status_code == 201, r.text
    for code, off in (("baseline", 0), ("m1", 30)):
        body = {"code": code, "offset_days": off, "window_before_days": 7, "window_after_days": 7}
        r = client.post(f"/studies/{sid}/waves", json={**body, "instruments": ["phq9"]}, headers=h)
        assert r.status_code == 201, r.text
    enrolled = date.today() - timedelta(days=30)
    people: dict[str, str] = {}  # study code -> real arm
    for i in range(12):
        arm = ARMS[i % 3][0]
        body = {
            "site": "north",
            "arm": arm,
            "enrolled_on": enrolled.isoformat(),
            "consent": {"date": enrolled.isoformat(), "version": "v1"},
        }
        r = client.post(f"/studies/{sid}/participants", json=body, headers=h)
        assert r.status_code == 201, r.text
        p = r.json()
        people[p["study_code"]] = arm
        base = {"walkers": 2, "texters": 1, "usualcare": 3}[arm]
        for wave, value, when in (
            ("baseline", base, datetime.combine(enrolled, datetime.min.time(), UTC) + timedelta(hours=12)),
            ("m1", max(base - (i % 2), 0), datetime.now(UTC)),
        ):
            r = client.post(
                f"/participants/{p['id']}/responses",
                json={
                    "wave": wave,
                    "instrument": "phq9",
                    "answers": phq9_answers(value),
                    "completed_at": when.isoformat(),
                },
                headers=h,
            )
            assert r.status_code == 201, r.text
    return {"id": sid, "people": people}


def _frame(content: bytes, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        return pd.read_csv(io.BytesIO(content), dtype=str, keep_default_na=False)
    if fmt == "json":
        data = json.loads(content)
        return pd.DataFrame(data["data"] if isinstance(data, dict) and "data" in data else data)
    if fmt == "parquet":
        return pd.read_parquet(io.BytesIO(content))
    if fmt == "dta":
        return pd.read_stata(io.BytesIO(content))
    import pyreadstat  # noqa: F401  (read_spss needs it)

    path = f"/tmp/peerlens-sap-{datetime.now().timestamp()}.sav"
    with open(path, "wb") as f:
        f.write(content)
    return pd.read_spss(path)


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s.lower() in text.lower()]


def _mapping(frame: pd.DataFrame, people: dict[str, str]) -> dict[str, str]:
    """label -> real arm, from the participants each label holds (must be one arm per label)."""
    out: dict[str, set[str]] = {}
    for code, label in frame[["participant", "arm"]].drop_duplicates().itertuples(index=False):
        out.setdefault(str(label), set()).add(people[str(code)])
    assert all(len(v) == 1 for v in out.values()), out
    return {k: v.pop() for k, v in out.items()}


# ---- the analysis plan ---------------------------------------------------------------------------

PLAN = {
    "primary": {"scale": "phq9", "wave": "m1", "model": "trial"},
    "secondary": [{"scale": "phq9", "wave": "m1", "model": "effect-sizes"}],
    "covariates": ["site"],
    "mcids": {"phq9": 5},
    "subgroups": ["context_living_situation"],
    "missing_data": "mixed_model",
    "sensitivity": ["multiple_imputation"],
    "families": {"primary": ["phq9"]},
    "multiplicity": "holm",
}


def test_plan_draft_lock_hash_immutable_and_deviations(client, admin, analyst, trial):
    sid, h = trial["id"], admin.headers
    assert client.post(f"/studies/{sid}/analysis-plans", json=PLAN, headers=analyst.headers).status_code == 403
    bad = client.post(
        f"/studies/{sid}/analysis-plans", json={**PLAN, "primary": {"scale": "nope", "wave": "m1"}}, headers=h
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "primary", "scale"]
    bad = client.post(
        f"/studies/{sid}/analysis-plans", json={**PLAN, "primary": {"scale": "phq9", "wave": "m9"}}, headers=h
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "primary", "wave"]
    bad = client.post(f"/studies/{sid}/analysis-plans", json={**PLAN, "mcids": {"phq9": -1}}, headers=h)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "mcids", "phq9"]

    r = client.post(f"/studies/{sid}/analysis-plans", json={**PLAN, "covariates": []}, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 1 and r.json()["status"] == "draft" and r.json()["content_hash"] is None
    # One draft at a time; the draft is editable.
    assert client.post(f"/studies/{sid}/analysis-plans", json=PLAN, headers=h).status_code == 409
    r = client.put(f"/studies/{sid}/analysis-plans/1", json=PLAN, headers=h)
    assert r.status_code == 200 and r.json()["content"]["covariates"] == ["site"]
    assert client.get(f"/studies/{sid}/analysis-plans/1/deviations", headers=h).json()["deviations"] == []

    wrong = client.post(f"/studies/{sid}/analysis-plans/1/lock", json={"confirm_hash": "0" * 64}, headers=h)
    assert wrong.status_code == 409
    locked = client.post(f"/studies/{sid}/analysis-plans/1/lock", headers=h)
    assert locked.status_code == 200, locked.text
    body = locked.json()
    canonical = json.dumps(
        {"study_id": sid, "version": 1, "content": body["content"]},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    assert body["status"] == "locked" and body["content_hash"] == hashlib.sha256(canonical).hexdigest()
    assert body["locked_at"] is not None and body["locked_by"] == admin.id
    # Immutable: no edit, no second lock.
    assert client.put(f"/studies/{sid}/analysis-plans/1", json=PLAN, headers=h).status_code == 409
    assert client.post(f"/studies/{sid}/analysis-plans/1/lock", headers=h).status_code == 409
    # An amendment is drafted after the lock; its deviations from the locked plan are listed.
    amended = {**PLAN, "primary": {"scale": "phq9", "wave": "m1", "model": "gee"}, "mcids": {"phq9": 4}}
    assert client.post(f"/studies/{sid}/analysis-plans", json=amended, headers=h).json()["version"] == 2
    dev = client.get(f"/studies/{sid}/analysis-plans/2/deviations", headers=analyst.headers).json()
    assert dev["locked_version"] == 1 and dev["locked_hash"] == body["content_hash"]
    assert {(d["field"], str(d["planned"]), str(d["actual"])) for d in dev["deviations"]} == {
        ("primary.model", "trial", "gee"),
        ("mcids.phq9", "5.0", "4.0"),
    }
    plans = client.get(f"/studies/{sid}/analysis-plans", headers=analyst.headers).json()
    assert [(p["version"], p["status"]) for p in plans] == [(1, "locked"), (2, "draft")]
    audit = client.get(f"/studies/{sid}/audit", headers=h).json()
    events = audit["items"] if isinstance(audit, dict) else audit
    lock_events = [e for e in events if e["action"] == "sap.lock"]
    assert len(lock_events) == 1 and lock_events[0]["after"]["content_hash"] == body["content_hash"]


def test_current_plan_and_classify_for_the_report(engine, trial):
    from sqlmodel import Session

    from api.sap import service

    with Session(engine) as s:
        plan = service.current_plan(s, trial["id"])
        assert plan is not None and plan.version == 1 and len(plan.hash) == 64
        prim = service.classify(
            s, trial["id"], "trial", {"outcome": "phq9", "followup": "m1", "covariates": ["site"], "alpha": 0.05}
        )
        assert prim.prespecified and prim.role == "primary" and prim.plan_hash == plan.hash
        dev = service.classify(
            s, trial["id"], "trial", {"outcome": "phq9", "followup": "baseline", "covariates": [], "alpha": 0.05}
        )
        assert dev.status == "deviates" and {d["field"] for d in dev.deviations} == {"primary.wave", "covariates"}
        assert service.classify(s, trial["id"], "gee", {"outcome": "phq9"}).status == "post hoc"
        # effect sizes at the default follow-up (the last wave, m1 here) are the planned secondary
        es = service.classify(s, trial["id"], "effect-sizes", {"outcome": "phq9", "post": None})
        assert es.prespecified and es.role == "secondary"
        es = service.classify(s, trial["id"], "effect-sizes", {"outcome": "phq9", "post": "baseline"})
        assert es.status == "deviates" and es.deviations[0]["field"] == "secondary.wave"
        assert service.classify(
            s, trial["id"], "moderation", {"outcome": "phq9", "moderator": "context_living_situation"}
        ).prespecified
        assert (
            service.classify(s, trial["id"], "moderation", {"outcome": "phq9", "moderator": "site"}).status
            == "post hoc"
        )
        assert service.classify(s, trial["id"], "reliability", {}).status == "descriptive"
        amended = service.amendments(s, trial["id"])
        assert [(a["version"], a["status"]) for a in amended] == [(2, "draft")]
        assert {d["field"] for d in amended[0]["deviations"]} == {"primary.model", "mcids.phq9"}
        assert service.current_plan(s, 999_999) is None and service.amendments(s, 999_999) == []
        assert service.classify(s, 999_999, "trial", {"outcome": "phq9"}).status == "no plan"


# ---- blinding ------------------------------------------------------------------------------------


def test_no_analyst_surface_reveals_the_arms_before_unblinding(client, analyst, admin, trial):
    sid, people, ha = trial["id"], trial["people"], analyst.headers
    status = client.get(f"/studies/{sid}/blinding", headers=ha).json()
    assert status["unblinded"] is False and status["blind"] is True and status["arms"] == ["A", "B", "C"]
    assert client.get(f"/studies/{sid}/blinding", headers=admin.headers).json()["blind"] is False

    arms = client.get(f"/studies/{sid}/arms", headers=ha)
    assert arms.status_code == 200 and not _leaks(arms.text)
    assert [(a["code"], a["id"], a["kind"]) for a in arms.json()] == [
        ("A", None, None),
        ("B", None, None),
        ("C", None, None),
    ]
    staff = client.get(f"/studies/{sid}/arms", headers=admin.headers).json()
    assert {a["code"] for a in staff} == {"walkers", "texters", "usualcare"}

    listed = client.get(f"/studies/{sid}/participants", headers=ha)
    assert listed.status_code == 200 and not _leaks(listed.text)
    rows = listed.json()["items"] if isinstance(listed.json(), dict) else listed.json()
    assert all(p["arm_id"] is None and p["arm"] in ("A", "B", "C") for p in rows)
    reference = _mapping(
        pd.DataFrame([(p["study_code"], p["arm"]) for p in rows], columns=["participant", "arm"]), people
    )
    assert sorted(reference) == ["A", "B", "C"] and sorted(reference.values()) == ["texters", "usualcare", "walkers"]
    one = client.get(f"/participants/{rows[0]['id']}", headers=ha)
    assert one.json()["arm"] == rows[0]["arm"] and not _leaks(one.text)

    for shape in SHAPES:
        d = client.get(f"/studies/{sid}/exports/{shape}/dictionary", headers=ha)
        assert d.status_code == 200 and not _leaks(d.text), shape
        arm_col = {c["name"]: c for c in d.json()["columns"]}.get("arm_kind")
        assert arm_col is None or not any(k in json.dumps(arm_col) for k in KINDS), shape
        assert d.json()["arms"] == "blinded: neutral labels"
        dcsv = client.get(f"/studies/{sid}/exports/{shape}/dictionary?format=csv", headers=ha)
        assert dcsv.status_code == 200 and not _leaks(dcsv.text)
        for fmt in FORMATS:
            r = client.get(f"/studies/{sid}/exports/{shape}?format={fmt}", headers=ha)
            assert r.status_code == 200, (shape, fmt, r.text[:300])
            assert not _leaks(r.content.decode("latin-1")), (shape, fmt)
            frame = _frame(r.content, fmt)
            if shape == "safety" and frame.empty:
                continue
            assert set(frame["arm"].astype(str)) <= {"A", "B", "C"}, (shape, fmt)
            if "arm_kind" in frame:
                assert not set(frame["arm_kind"].astype(str)) & set(KINDS), (shape, fmt)
            assert _mapping(frame, people) == reference, (shape, fmt)  # the same letters everywhere
    redcap = client.get(f"/studies/{sid}/exports/redcap", headers=ha)
    assert redcap.status_code == 200 and not _leaks(redcap.text)

    # Analyses: neutral labels in tables and values, requests name arms by their labels.
    run = client.post(
        f"/studies/{sid}/analyses/trial", json={"outcome": "phq9", "followup": "m1", "covariates": ["site"]}, headers=ha
    )
    assert run.status_code == 200, run.text
    assert not _leaks(run.text) and not any(k in run.text for k in ('"intervention"', '"control"'))
    assert {r["arm"] for r in run.json()["tables"]["ancova"]} <= {"A", "B", "C"}
    assert run.json()["plan"]["status"] == "pre-specified" and run.json()["plan"]["role"] == "primary"
    # The registry records the match with the run (its audit event).
    audit = client.get(f"/studies/{sid}/audit", headers=admin.headers).json()
    events = audit["items"] if isinstance(audit, dict) else audit
    runs = [e for e in events if e["action"] == "analysis.run" and e["entity_id"] == run.json()["run_id"]]
    assert len(runs) == 1 and runs[0]["after"]["plan"]["status"] == "pre-specified"
    assert runs[0]["after"]["plan"]["plan_hash"] == run.json()["plan"]["plan_hash"]
    assert (
        client.post(
            f"/studies/{sid}/analyses/trial",
            json={"outcome": "phq9", "followup": "m1", "reference": "usualcare"},
            headers=ha,
        ).status_code
        == 422
    )
    ref = client.post(
        f"/studies/{sid}/analyses/trial", json={"outcome": "phq9", "followup": "m1", "reference": "B"}, headers=ha
    )
    assert ref.status_code == 200 and ref.json()["values"]["reference_arm"] == "B"
    assert ref.json()["plan"]["status"] == "deviates"  # no covariates: the plan adjusts for site
    es = client.post(f"/studies/{sid}/analyses/effect-sizes", json={"outcome": "phq9", "post": "m1"}, headers=ha)
    assert es.status_code == 200 and not _leaks(es.text)
    summary = client.get(f"/studies/{sid}/safety/summary", headers=ha)
    assert summary.status_code == 200 and not _leaks(summary.text)
    # Stable across calls.
    again = client.get(f"/studies/{sid}/participants", headers=ha).json()
    again_rows = again["items"] if isinstance(again, dict) else again
    assert {p["study_code"]: p["arm"] for p in again_rows} == {p["study_code"]: p["arm"] for p in rows}


def test_mapping_is_stable_across_sessions_and_keyed_by_the_stored_seed(engine, trial):
    from sqlmodel import Session

    from api.auth.service import Actor
    from api.sap.blinding import arm_labels, neutral_order
    from api.studies.models import Arm, Study

    analyst = Actor(user_id=None, role="analyst")
    with Session(engine) as s:
        first = arm_labels(s, trial["id"], analyst)
    with Session(engine) as s:
        second = arm_labels(s, trial["id"], analyst)
        study = s.get(Study, trial["id"])
        ids = [a.id for a in s.exec(__import__("sqlmodel").select(Arm).where(Arm.study_id == trial["id"]))]
        # Independent recomputation: HMAC-SHA256 of the stored seed, arms sorted by it, lettered.
        import hmac

        order = sorted(
            ids,
            key=lambda i: hmac.new(
                study.randomisation_seed.encode(), f"arm-blind:{trial['id']}:{i}".encode(), hashlib.sha256
            ).hexdigest(),
        )
        assert first == second == {i: "ABC"[n] for n, i in enumerate(order)}
        # Another seed gives another order for some seeds (3 arms: 6 orders, each about 1/6).
        orders = {tuple(sorted(neutral_order(f"seed {k}", trial["id"], ids).items())) for k in range(40)}
        assert len(orders) >= 4
        admin = Actor(user_id=None, role="admin")
        assert set(arm_labels(s, trial["id"], admin).values()) == {"walkers", "texters", "usualcare"}
        from api.sap.blinding import arm_names

        assert set(arm_names(s, trial["id"], admin).values()) == {n for _, n, _ in ARMS}
        assert arm_names(s, trial["id"], analyst) == {i: f"Arm {x}" for i, x in first.items()}


def test_unblinding_is_admin_only_audited_irreversible_and_reveals_names(client, admin, analyst, trial):
    sid = trial["id"]
    body = {"reason": "primary analysis complete, DMC agreed", "confirm": "UNBLIND"}
    assert client.post(f"/studies/{sid}/unblind", json=body, headers=analyst.headers).status_code == 403
    assert client.post(f"/studies/{sid}/unblind", json={"reason": "x y z"}, headers=admin.headers).status_code == 422
    before = client.get(f"/studies/{sid}/participants", headers=analyst.headers).json()
    before_rows = before["items"] if isinstance(before, dict) else before
    labels = {p["study_code"]: p["arm"] for p in before_rows}
    r = client.post(f"/studies/{sid}/unblind", json=body, headers=admin.headers)
    assert r.status_code == 201, r.text
    assert r.json()["unblinded_by"] == admin.id
    assert client.post(f"/studies/{sid}/unblind", json=body, headers=admin.headers).status_code == 409
    status = client.get(f"/studies/{sid}/blinding", headers=analyst.headers).json()
    assert status["unblinded"] is True and status["blind"] is False and status["unblinded_at"] is not None
    arms = client.get(f"/studies/{sid}/arms", headers=analyst.headers).json()
    assert {(a["code"], a["name"], a["kind"]) for a in arms} == set(ARMS)
    after = client.get(f"/studies/{sid}/participants", headers=analyst.headers).json()
    after_rows = after["items"] if isinstance(after, dict) else after
    assert {p["study_code"]: p["arm"] for p in after_rows} == trial["people"]
    long = _frame(client.get(f"/studies/{sid}/exports/long?format=csv", headers=analyst.headers).content, "csv")
    assert set(long["arm"]) == {"walkers", "texters", "usualcare"}
    assert set(long["arm_kind"]) == {"intervention", "control"}
    audit = client.get(f"/studies/{sid}/audit", headers=admin.headers).json()
    events = audit["items"] if isinstance(audit, dict) else audit
    ev = [e for e in events if e["action"] == "study.unblind"]
    assert len(ev) == 1 and ev[0]["reason"] == body["reason"]
    # The key: the letters the analysts read while blind, against the arms they were.
    key = ev[0]["after"]["labels"]
    assert {code: key[label] for code, label in labels.items()} == trial["people"]
    # A plan cannot be locked after unblinding (it would not be pre-specified).
    locked = client.post(f"/studies/{sid}/analysis-plans/2/lock", headers=admin.headers)
    assert locked.status_code == 409 and locked.json()["detail"][0]["type"] == "unblinded"


def test_policy_blind_readers_are_analysts_until_unblinding():
    from api.auth import policy
    from api.auth.service import Actor

    analyst, admin = Actor(user_id=1, role="analyst"), Actor(user_id=2, role="admin")
    coordinator = Actor(user_id=3, role="coordinator", site_ids=frozenset({1}))
    assert policy.blind_to_arms(analyst, unblinded=False) and not policy.blind_to_arms(analyst, unblinded=True)
    assert not policy.blind_to_arms(admin, unblinded=False) and not policy.blind_to_arms(coordinator, unblinded=False)
    # The DMC summary masks arms for everyone but admins until unblinding.
    assert not policy.may_see_allocation(coordinator) and policy.may_see_allocation(coordinator, unblinded=True)
    assert policy.may_see_allocation(admin) and not policy.may_see_allocation(analyst)
