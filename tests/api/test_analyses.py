"""Analyses through the service: /studies/{id}/analyses/{kind}, plot files and `peerlens analyze`.

The module loads the demo study (60 synthetic participants) into each backend's database and runs
every kind of analysis through the API. Expected values come from the database directly (SQL on
scores and participants) or from published/independent formulas, never from the service's own
output. The recovery test loads 300 participants into its own SQLite file and checks that the
known PAM-13 slope difference of the generating model lies inside the returned CI.
"""

from __future__ import annotations

import json
import math
from itertools import pairwise

import pandas as pd
import pytest
from sqlalchemy import select
from sqlmodel import Session

from tests.conftest import demo_copy_fixture

PNG = b"\x89PNG\r\n\x1a\n"
DEMO_N = 60
DEMO_SEED = 20261125


@pytest.fixture(scope="module")
def settings(db_url, tmp_path_factory):
    # Plots go to a temporary folder, never into the working tree.
    from api.config import Settings

    return Settings(
        DATABASE_URL=db_url,
        PEERLENS_SECRET_KEY="test-secret",
        PEERLENS_MAX_BODY_BYTES=64_000,
        PEERLENS_ARTIFACT_DIR=str(tmp_path_factory.mktemp("artefacts")),
    )


# This module's database: a copy of load_demo(n_participants=DEMO_N, seed=DEMO_SEED), loaded once per run.
demo_copy = demo_copy_fixture(DEMO_N, DEMO_SEED)


@pytest.fixture(scope="module")
def db_url(demo_copy):
    return demo_copy[0]


@pytest.fixture(scope="module")
def demo(demo_copy, client):
    url, result = demo_copy
    assert result.created and result.participants == DEMO_N
    # The statistics below are checked arm by arm against the tables, so the study is unblinded
    # (blinded analyses, with neutral arm labels, are tested in test_sap.py).
    _unblind(url, result.study_id)
    return result


def _unblind(url: str, study_id: int) -> None:
    from api.auth.service import Actor
    from api.db import make_engine
    from api.sap.blinding import unblind
    from api.studies.models import Study

    engine = make_engine(url, pool_size=1, max_overflow=0)
    with Session(engine) as s:
        unblind(s, s.get(Study, study_id), Actor.system(), "statistics checked arm by arm")
        s.commit()
    engine.dispose()


@pytest.fixture(scope="module")
def sites(client, demo, admin) -> dict[str, int]:
    r = client.get(f"/studies/{demo.study_id}/sites", headers=admin.headers)
    return {s["code"]: s["id"] for s in r.json()}


@pytest.fixture(scope="module")
def coord_south(make_user, sites):
    return make_user("coordinator", [sites["south"]])


@pytest.fixture(scope="module")
def coord_north(make_user, sites):
    return make_user("coordinator", [sites["north"]])


def post(client, demo, kind, body, headers):
    return client.post(f"/studies/{demo.study_id}/analyses/{kind}", json=body, headers=headers)


def scores(engine, study_id: int, scale: str | None = None, site: str | None = None) -> pd.DataFrame:
    """Score rows straight from the tables (independent of the exports service)."""
    from api.participants.models import Participant
    from api.responses.models import Response, Score
    from api.studies.models import Arm, Site, Wave

    q = (
        select(Participant.study_code, Site.code, Arm.code, Wave.code, Response.instrument, Score.scale, Score.value)
        .join(Response, Response.id == Score.response_id)
        .join(Participant, Participant.id == Response.participant_id)
        .join(Site, Site.id == Participant.site_id)
        .join(Arm, Arm.id == Participant.arm_id)
        .join(Wave, Wave.id == Response.wave_id)
        .where(Participant.study_id == study_id, Response.instrument != "context")
    )
    if scale:
        q = q.where(Score.scale == scale)
    if site:
        q = q.where(Site.code == site)
    with Session(engine) as s:
        rows = s.execute(q).all()
    return pd.DataFrame(rows, columns=["participant", "site", "arm", "wave", "instrument", "scale", "value"])


def enrolled(engine, study_id: int, site: str | None = None) -> pd.DataFrame:
    from api.participants.models import Participant
    from api.studies.models import Arm, Site

    q = (
        select(Participant.study_code, Site.code, Arm.code)
        .join(Site, Site.id == Participant.site_id)
        .join(Arm, Arm.id == Participant.arm_id)
        .where(Participant.study_id == study_id)
        .where(Participant.voided_at.is_(None))  # the demo's duplicate enrolment, entered in error
    )
    if site:
        q = q.where(Site.code == site)
    with Session(engine) as s:
        return pd.DataFrame(s.execute(q).all(), columns=["participant", "site", "arm"])


# --- every kind returns its documented tables ------------------------------------------------------

BODIES = {
    "trajectory": {"outcome": "pam13_activation"},
    "moderation": {"outcome": "pam13_activation", "moderator": "context_living_situation", "min_per_cell": 2},
    "reliability": {"instruments": ["phq9", "gad7"], "waves": ["baseline"]},
    "effect-sizes": {"outcome": "phq9", "post": "m6"},
    "responders": {"outcome": "phq9", "post": "m6"},
    "retention": {"by": "arm", "covariates": ["arm", "site"], "baseline_scales": ["lsns6"]},
    "attrition": {"by": ["arm"], "scales": ["phq9", "lsns6"]},
    "power": {"design": "two_arm", "delta": 6, "sd": 12, "attrition": 0.2},
    "trial": {"outcome": "phq9", "followup": "m6"},
    "gee": {"outcome": "phq9", "family": "binomial", "threshold": 10, "direction": "below"},
    "missing-data": {"outcome": "phq9", "followup": "m6", "m": 3, "auxiliary": ["lsns6"], "deltas": [0, 2]},
}
# Written out here (not imported from the service) so the test checks the documented contract.
DOCUMENTED = {
    "trajectory": {
        "slopes": ["arm", "slope", "se", "ci_lower", "ci_upper", "diff", "diff_ci_lower", "diff_ci_upper", "diff_p"],
        "fixed_effects": ["term", "estimate", "se", "df", "t", "p", "ci_lower", "ci_upper"],
        "variance_components": ["group", "term", "variance", "sd", "corr"],
        "predicted_means": ["arm", "wave", "time", "mean", "se", "ci_lower", "ci_upper"],
        "fit_statistics": ["nobs", "n_participants", "AIC", "BIC", "converged"],
    },
    "moderation": {
        "subgroup_effects": [
            "moderator",
            "level",
            "arm",
            "n_participants",
            "effect",
            "se",
            "ci_lower",
            "ci_upper",
            "p",
        ],
        "subgroup_slopes": ["level", "arm", "slope", "ci_lower", "ci_upper"],
        "interaction_test": ["chisq", "df", "p"],
    },
    "reliability": {
        "reliability": ["instrument", "wave", "n", "k", "alpha", "ci_lower", "ci_upper", "omega"],
        "item_total": ["instrument", "wave", "item", "r_item_rest", "alpha_if_deleted"],
    },
    "effect-sizes": {
        "effect_sizes": ["scale", "comparison", "arm", "n", "mean_change", "effect", "estimate", "ci_lower", "ci_upper"]
    },
    "responders": {
        "responders": [
            "scale",
            "arm",
            "mcid",
            "n",
            "improved",
            "improved_prop",
            "risk_difference",
            "rd_ci_lower",
            "rd_ci_upper",
        ]
    },
    "retention": {
        "km": ["group", "time", "at_risk", "events", "survival", "ci_lower", "ci_upper"],
        "logrank": ["by", "groups", "chisq", "df", "p"],
        "cox": ["term", "hr", "hr_ci_lower", "hr_ci_upper", "p"],
    },
    "attrition": {
        "completion": ["arm", "wave", "enrolled", "due", "completed", "completed_pct", "denominator"],
        "dropout_by_baseline": ["variable", "n_dropout", "n_retained", "smd", "p"],
    },
    "power": {
        "sample_size": ["n_per_arm", "n_per_arm_with_attrition", "n_total"],
        "power_curve": ["n_per_arm", "power"],
    },
    "trial": {
        "ancova": ["followup_wave", "arm", "reference", "n", "n_excluded", "estimate", "se", "df", "p", "ci_lower"],
        "clda": ["followup_wave", "arm", "estimate", "se", "df", "p", "ci_lower", "ci_upper"],
    },
    "gee": {
        "coefficients": ["term", "estimate", "se", "p", "exp_estimate"],
        "arm_effects": ["arm", "wave", "estimate", "exp_estimate", "exp_ci_lower", "exp_ci_upper"],
    },
    "missing-data": {
        "multiple_imputation": ["arm", "m", "n_imputed", "estimate", "se", "df", "fmi", "ci_lower", "ci_upper"],
        "tipping_point": ["delta", "estimate", "p", "same_conclusion", "tipping_point"],
    },
}


@pytest.mark.parametrize("kind", list(BODIES))
def test_each_kind_returns_documented_tables_and_plots(client, demo, analyst, kind):
    r = post(client, demo, kind, BODIES[kind], analyst.headers)
    assert r.status_code == 200, r.text
    run = r.json()
    assert run["kind"] == kind and len(run["run_id"]) == 32
    for table, cols in DOCUMENTED[kind].items():
        assert set(cols) <= set(run["columns"][table]), (table, run["columns"][table])
        rows = run["tables"][table]
        assert rows, f"{kind}: {table} is empty"
        assert set(cols) <= set(rows[0]), (table, rows[0])
    if kind != "reliability":
        formats = sorted(p["format"] for p in run["plots"])
        assert formats == ["png", "svg"], run["plots"]
    if kind == "power":
        assert run["n_rows"] == 0
    else:
        assert run["n_participants"] == DEMO_N and run["n_rows"] > DEMO_N * 5
    # No participant code (nor any contact field) travels in an analysis result.
    assert "DEMO-0" not in r.text and "@" not in r.text


def test_hba1c_trajectory_runs_like_any_scale_and_falls_more_with_peer_support(client, demo, analyst):
    # api/demo_clinical.py: usual care about -1 mmol/mol, peer support a further -3 mmol/mol a year.
    run = post(client, demo, "trajectory", {"outcome": "hba1c", "random": "intercept"}, analyst.headers)
    assert run.status_code == 200, run.text
    slopes = pd.DataFrame(run.json()["tables"]["slopes"]).set_index("arm")
    assert slopes.loc["group", "slope"] < slopes.loc["usual_care", "slope"]
    assert slopes.loc["online", "slope"] < slopes.loc["usual_care", "slope"]


def test_trajectory_slopes_match_observed_change_direction(client, demo, analyst):
    """The PAM slope difference is positive for both peer-support arms (generated +5/year) and the
    reference arm is the control arm; the usual-care slope is close to the generating +1/year."""
    run = post(
        client, demo, "trajectory", {"outcome": "pam13_activation", "random": "intercept"}, analyst.headers
    ).json()
    slopes = {row["arm"]: row for row in run["tables"]["slopes"]}
    assert run["values"]["reference_arm"] == "usual_care"
    assert slopes["usual_care"]["diff"] == 0
    assert slopes["group"]["diff"] > 0 and slopes["online"]["diff"] > 0
    assert slopes["usual_care"]["ci_lower"] < 1.0 < slopes["usual_care"]["ci_upper"]


def test_responders_match_counts_from_the_scores_table(client, demo, analyst, engine):
    run = post(client, demo, "responders", {"outcome": "phq9", "post": "m6"}, analyst.headers).json()
    s = scores(engine, demo.study_id, "phq9")
    w = s.pivot_table(index=["participant", "arm"], columns="wave", values="value", aggfunc="first")
    w = w[["baseline", "m6"]].dropna().reset_index()
    w["improved"] = (w["baseline"] - w["m6"]) >= 5  # PHQ-9: lower is better; published MCID 5
    expected = w.groupby("arm")["improved"].agg(["size", "sum"])
    got = {row["arm"]: row for row in run["tables"]["responders"]}
    assert set(got) == set(expected.index)
    for arm, row in expected.iterrows():
        assert got[arm]["n"] == row["size"] and got[arm]["improved"] == row["sum"]
        assert got[arm]["mcid"] == 5
    ref = expected.loc["usual_care"]
    p_ref = ref["sum"] / ref["size"]
    for arm in ("group", "online"):
        p = expected.loc[arm, "sum"] / expected.loc[arm, "size"]
        assert got[arm]["risk_difference"] == pytest.approx(p - p_ref)


def test_effect_sizes_within_arm_match_a_hand_computation(client, demo, analyst, engine):
    run = post(client, demo, "effect-sizes", {"outcome": "phq9", "post": "m6"}, analyst.headers).json()
    s = scores(engine, demo.study_id, "phq9")
    w = s.pivot_table(index=["participant", "arm"], columns="wave", values="value", aggfunc="first")
    w = w[["baseline", "m6"]].dropna().reset_index()
    for row in run["tables"]["effect_sizes"]:
        if row["comparison"] != "within":
            continue
        g = w[w["arm"] == row["arm"]]
        # Cohen's d_av (Cumming 2012): mean change over the root mean of the pre and post variances.
        d_av = (g["m6"].mean() - g["baseline"].mean()) / math.sqrt((g["baseline"].var() + g["m6"].var()) / 2)
        assert row["n"] == len(g)
        assert row["estimate"] == pytest.approx(d_av, rel=1e-6)


def test_power_matches_cohens_table_and_judges_the_planned_size(client, demo, analyst):
    from scipy import stats

    run = post(
        client, demo, "power", {"design": "two_arm", "delta": 6, "sd": 12, "attrition": 0.2}, analyst.headers
    ).json()
    v = run["values"]
    # Cohen (1988): d = 0.5, alpha 0.05 two-sided, power 0.8 -> 64 per group.
    assert v["n_per_arm"] == 64
    assert v["n_per_arm_with_attrition"] == 80 and v["arms"] == 3 and v["n_total"] == 240
    assert v["planned_sample_size"] == DEMO_N and v["adequately_powered"] is False
    # Power at 60 planned / 3 arms x 0.8 retained = 16 per arm, from the noncentral t directly.
    n = 16
    df, nc = 2 * n - 2, 0.5 * math.sqrt(n / 2)
    crit = stats.t.ppf(0.975, df)
    expected = stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)
    assert v["power_at_planned"] == pytest.approx(expected, abs=1e-6)
    curve = run["tables"]["power_curve"]
    assert all(a["power"] <= b["power"] for a, b in pairwise(curve))


def test_power_slope_design_uses_the_study_waves(client, demo, analyst):
    run = post(
        client, demo, "power", {"design": "slope", "slope_diff": 5, "sigma2": 100, "rho": 0.5}, analyst.headers
    ).json()
    times = [0, 30 / 365.25, 90 / 365.25, 180 / 365.25, 365 / 365.25]  # the demo's wave offsets
    t = pd.Series(times)
    sx2 = ((t - t.mean()) ** 2).mean()
    # Diggle et al. (2002) §2.4: m = 2 (z_a + z_b)^2 sigma2 (1 - rho) / (n sx2 d^2)
    m = 2 * (1.959963984540054 + 0.8416212335729143) ** 2 * 100 * 0.5 / (5 * sx2 * 25)
    assert run["values"]["n_per_arm"] == math.ceil(m)


def test_trial_ancova_matches_least_squares_on_the_score_table(client, demo, analyst, engine):
    import numpy as np

    run = post(client, demo, "trial", {"outcome": "phq9", "followup": "m6"}, analyst.headers).json()
    sc = scores(engine, demo.study_id, "phq9")
    w = sc.pivot_table(index="participant", columns="wave", values="value", aggfunc="first")
    arm = sc.groupby("participant")["arm"].first()
    d = pd.DataFrame({"pre": w["baseline"], "post": w["m6"], "arm": arm}).dropna()
    ref = run["values"]["reference_arm"]
    others = sorted(a for a in d["arm"].unique() if a != ref)
    X = np.column_stack([np.ones(len(d)), d["pre"]] + [(d["arm"] == a).astype(float) for a in others])
    beta, *_ = np.linalg.lstsq(X, d["post"].to_numpy(), rcond=None)
    got = {r["arm"]: r for r in run["tables"]["ancova"]}
    for i, a in enumerate(others):
        assert got[a]["estimate"] == pytest.approx(beta[2 + i], abs=1e-8)
        assert got[a]["followup_wave"] == "m6" and got[a]["df"] == len(d) - X.shape[1]
    assert run["values"]["followup_wave"] == "m6"


def test_attrition_counts_match_the_participants_table(client, demo, analyst, engine):
    run = post(client, demo, "attrition", {"by": ["arm"]}, analyst.headers).json()
    people = enrolled(engine, demo.study_id)
    base = scores(engine, demo.study_id)
    base = base[(base["wave"] == "baseline") & base["value"].notna()]
    done = people[people["participant"].isin(base["participant"])].groupby("arm").size()
    for row in run["tables"]["completion"]:
        if row["wave"] == "baseline":
            assert row["enrolled"] == int((people["arm"] == row["arm"]).sum())
            assert row["completed"] == int(done.get(row["arm"], 0))
        # Completion is counted among participants whose wave window has closed, never above 100%.
        assert row["completed"] <= row["due"] <= row["enrolled"]
        assert row["denominator"].startswith("due")


def test_reliability_alpha_matches_a_direct_computation(client, demo, analyst, engine):
    import numpy as np

    from api.participants.models import Participant
    from api.responses.models import Response
    from api.studies.models import Wave

    run = post(client, demo, "reliability", {"instruments": ["phq9"], "waves": ["baseline"]}, analyst.headers).json()
    (row,) = run["tables"]["reliability"]
    with Session(engine) as s:
        answers = (
            s.execute(
                select(Response.answers)
                .join(Wave, Wave.id == Response.wave_id)
                .join(Participant, Participant.id == Response.participant_id)
                .where(Participant.study_id == demo.study_id, Wave.code == "baseline", Response.instrument == "phq9")
            )
            .scalars()
            .all()
        )
    items = [f"phq9_{i}" for i in range(1, 10)]
    X = pd.DataFrame([{k: a.get(k) for k in items} for a in answers]).astype(float).dropna().to_numpy()
    k = X.shape[1]
    alpha = k / (k - 1) * (1 - X.var(axis=0, ddof=1).sum() / X.sum(axis=1).var(ddof=1))
    assert row["n"] == len(X) and row["k"] == k
    assert row["alpha"] == pytest.approx(alpha, rel=1e-9)
    assert np.isfinite(row["omega"])


# --- bad requests: 422 naming the field ------------------------------------------------------------

BAD = [
    ("trajectory", {"outcome": "sbp"}, ["body", "outcome"], "unknown_scale"),
    (
        "trajectory",
        {"outcome": "phq9", "covariates": ["context_living_situation", "postcode"]},
        ["body", "covariates", 1],
        "unknown_column",
    ),
    ("trajectory", {"outcome": "phq9", "reference": "placebo"}, ["body", "reference"], "unknown_arm"),
    ("trajectory", {"outcome": "phq9", "random": "curve"}, ["body", "random"], "literal_error"),
    ("moderation", {"outcome": "pam13_activation", "moderator": "shoe_size"}, ["body", "moderator"], "unknown_column"),
    (
        "moderation",
        {"outcome": "pam13_activation", "moderator": "context_living_situation", "min_per_cell": 500},
        ["body", "moderator"],
        "not_estimable",
    ),
    ("effect-sizes", {"outcome": "phq9", "post": "m24"}, ["body", "post"], "unknown_wave"),
    ("effect-sizes", {"outcome": "phq9", "post": "baseline"}, ["body", "post"], "wave_order"),
    ("responders", {"outcome": "pam13_activation"}, ["body", "mcid"], "mcid_required"),
    ("retention", {"covariates": ["arm", "email"]}, ["body", "covariates", 1], "unknown_column"),
    ("retention", {"baseline_scales": ["dbp"]}, ["body", "baseline_scales", 0], "unknown_scale"),
    ("attrition", {"context": ["context_nope"]}, ["body", "context", 0], "unknown_column"),
    ("reliability", {"instruments": ["sf36"]}, ["body", "instruments", 0], "unknown_instrument"),
    ("power", {"design": "two_arm", "sd": 12}, ["body", "delta"], "missing"),
    ("power", {"design": "slope", "slope_diff": 2, "sigma2": 4}, ["body", "rho"], "missing"),
    ("power", {"design": "two_arm", "delta": 1, "sd": -1}, ["body", "sd"], "greater_than"),
    ("attrition", {"sites": ["east"]}, ["body", "sites", 0], "unknown_site"),
    ("trial", {"outcome": "phq9"}, ["body", "followup"], "missing"),
    ("trial", {"outcome": "phq9", "followup": "m24"}, ["body", "followup"], "unknown_wave"),
    ("trial", {"outcome": "phq9", "followup": "baseline"}, ["body", "followup"], "wave_order"),
    ("trial", {"outcome": "phq9", "followup": "m6", "cluster": "peer_group"}, ["body", "cluster"], "unknown_column"),
    ("trajectory", {"outcome": "phq9", "cluster": "site"}, ["body", "cluster"], "too_few_sites"),
    ("gee", {"outcome": "phq9", "family": "binomial"}, ["body", "threshold"], "missing"),
    (
        "missing-data",
        {"outcome": "phq9", "followup": "m6", "auxiliary": ["dbp"]},
        ["body", "auxiliary", 0],
        "unknown_scale",
    ),
    ("missing-data", {"outcome": "phq9", "followup": "m6", "m": 1}, ["body", "m"], "greater_than_equal"),
    ("attrition", {"unexpected": 1}, ["body", "unexpected"], "extra_forbidden"),
]


@pytest.mark.parametrize(
    "kind,body,loc,type_", BAD, ids=[f"{k}-{'/'.join(map(str, loc[1:]))}-{t}" for k, _, loc, t in BAD]
)
def test_bad_request_is_422_naming_the_field(client, demo, analyst, kind, body, loc, type_):
    r = post(client, demo, kind, body, analyst.headers)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail[0]["loc"] == loc and detail[0]["type"] == type_, detail
    assert detail[0]["msg"]


@pytest.mark.parametrize(
    "kind,body,loc",
    [
        ("trajectory", {"outcome": "phq9"}, ["body", "outcome"]),
        ("attrition", {}, ["body", "by"]),
        ("retention", {}, ["body", "by"]),
        ("reliability", {}, ["body", "instruments"]),
    ],
)
def test_study_without_answers_is_422_not_500(client, admin, make_study, enrol, kind, body, loc):
    study = make_study()
    enrol(study, site="north", arm="group")
    r = client.post(f"/studies/{study.id}/analyses/{kind}", json=body, headers=admin.headers)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc and r.json()["detail"][0]["type"] == "no_data"


def test_power_for_an_unreachable_effect_is_422(client, demo, analyst):
    r = post(client, demo, "power", {"design": "two_arm", "delta": 1e-9, "sd": 1e9}, analyst.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "delta"], r.text


def test_failed_runs_write_nothing(client, demo, analyst, engine):
    from api.audit.models import AuditEvent

    with Session(engine) as s:
        before = len(s.execute(select(AuditEvent.id).where(AuditEvent.action == "analysis.run")).all())
    r = post(client, demo, "trajectory", {"outcome": "phq9", "covariates": ["nope"]}, analyst.headers)
    assert r.status_code == 422
    with Session(engine) as s:
        after = len(s.execute(select(AuditEvent.id).where(AuditEvent.action == "analysis.run")).all())
    assert after == before


# --- roles and scope -------------------------------------------------------------------------------


def test_no_token_is_401_and_analyst_and_admin_may_run(client, demo, admin, analyst):
    r = post(client, demo, "attrition", {}, {})
    assert r.status_code == 401 and r.json()["detail"][0]["loc"] == ["header", "Authorization"]
    for who in (admin, analyst):
        assert post(client, demo, "attrition", {}, who.headers).status_code == 200


@pytest.mark.parametrize("site", ["south", "north"])
def test_coordinator_sees_only_their_sites_participants(client, demo, engine, coord_south, coord_north, site):
    who = coord_south if site == "south" else coord_north
    run = post(client, demo, "attrition", {"by": ["site"]}, who.headers).json()
    people = enrolled(engine, demo.study_id, site=site)
    rows = scores(engine, demo.study_id, site=site)
    assert 0 < len(people) < DEMO_N
    assert run["n_participants"] == len(people)
    assert run["n_rows"] == len(rows)
    assert run["sites"] == [site]
    assert {row["site"] for row in run["tables"]["completion"]} == {site}
    traj = post(client, demo, "trajectory", {"outcome": "phq9", "random": "intercept"}, who.headers).json()
    fit = traj["tables"]["fit_statistics"][0]
    assert fit["n_participants"] <= len(people)
    assert fit["nobs"] == int(scores(engine, demo.study_id, "phq9", site=site)["value"].notna().sum())


def test_coordinator_cannot_name_another_site(client, demo, coord_south):
    r = post(client, demo, "attrition", {"sites": ["north"]}, coord_south.headers)
    assert r.status_code == 403 and r.json()["detail"][0]["loc"] == ["body", "sites", 0]


def test_each_run_is_audited_with_parameters_and_row_count(client, demo, analyst, engine):
    from api.audit.models import AuditEvent

    run = post(client, demo, "effect-sizes", {"outcome": "gad7", "post": "m3"}, analyst.headers).json()
    with Session(engine) as s:
        ev = s.execute(
            select(AuditEvent).where(AuditEvent.action == "analysis.run", AuditEvent.entity_id == run["run_id"])
        ).scalar_one()
    assert ev.actor_role == "analyst" and ev.study_id == demo.study_id and ev.actor_id == analyst.id
    assert ev.after["kind"] == "effect-sizes" and ev.after["rows"] == run["n_rows"]
    assert ev.after["parameters"]["outcome"] == "gad7" and ev.after["parameters"]["post"] == "m3"


# --- plot files ------------------------------------------------------------------------------------


def test_plot_urls_serve_png_and_svg(client, demo, analyst):
    run = post(client, demo, "retention", {}, analyst.headers).json()
    urls = {p["format"]: p["url"] for p in run["plots"]}
    png = client.get(urls["png"], headers=analyst.headers)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:8] == PNG and len(png.content) > 5000
    svg = client.get(urls["svg"], headers=analyst.headers)
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in svg.content[:2000] and svg.content.rstrip().endswith(b"</svg>")
    assert client.get(urls["png"]).status_code == 401


def test_plot_paths_cannot_leave_the_run_folder(client, demo, analyst, settings):
    run = post(client, demo, "attrition", {}, analyst.headers).json()
    base = f"/studies/{demo.study_id}/analyses/runs/{run['run_id']}"
    (settings_dir := __import__("pathlib").Path(settings.artifact_dir) / "analyses").mkdir(exist_ok=True)
    (settings_dir / "secret.png").write_bytes(PNG + b"not for you")
    for path in (
        f"{base}/..%2F..%2Fsecret.png",
        f"{base}/%2E%2E%2Fsecret.png",
        f"{base}/run.json",
        f"/studies/{demo.study_id}/analyses/runs/..%2F..%2F{run['run_id']}/x.png",
        f"/studies/{demo.study_id}/analyses/runs/{'0' * 32}/completion_by_arm.png",
    ):
        r = client.get(path, headers=analyst.headers)
        assert r.status_code == 404, (path, r.status_code)
        assert b"not for you" not in r.content


def test_plot_of_another_study_or_broader_scope_is_404(client, demo, admin, coord_south, make_study):
    run = post(client, demo, "attrition", {}, admin.headers).json()
    url = run["plots"][0]["url"]
    other = make_study()
    assert (
        client.get(
            url.replace(f"/studies/{demo.study_id}/", f"/studies/{other.id}/"), headers=admin.headers
        ).status_code
        == 404
    )
    # An all-sites run is not shown to a coordinator of one site; their own run is.
    assert client.get(url, headers=coord_south.headers).status_code == 404
    own = post(client, demo, "attrition", {}, coord_south.headers).json()
    assert client.get(own["plots"][0]["url"], headers=coord_south.headers).status_code == 200


# --- the command line ------------------------------------------------------------------------------


def test_cli_analyze_writes_report_tables_and_plots(demo, db_url, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from api.cli import app
    from api.config import get_settings

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("PEERLENS_SECRET_KEY", "test-secret")
    monkeypatch.setenv("PEERLENS_ARTIFACT_DIR", str(tmp_path / "default"))
    get_settings.cache_clear()
    try:
        out = tmp_path / "report"
        res = CliRunner().invoke(
            app,
            [
                "analyze",
                str(demo.study_id),
                "--outdir",
                str(out),
                "--outcome",
                "pam13_activation",
                "--mcid",
                "pam13_activation=4",
                "--followup",
                "m6",
                "--imputations",
                "5",
            ],
        )
        assert res.exit_code == 0, res.output
        assert str(out.resolve()) in res.output
        report = (out / "report.md").read_text()
        assert "## Trajectories" in report and "pam13_activation" in report and "## Reliability" in report
        plots = sorted(p.name for p in (out / "plots").glob("*.png"))
        assert "trajectory_pam13_activation.png" in plots and "km_dropout_by_arm.png" in plots
        assert all((out / "plots" / p).read_bytes()[:8] == PNG for p in plots)
        slopes = pd.read_csv(out / "tables" / "trajectory_pam13_activation_slopes.csv")
        assert list(slopes["arm"]) == ["usual_care", "group", "online"]
        responders = pd.read_csv(out / "tables" / "responders.csv")
        assert (responders["mcid"] == 4).all() and (responders["followup_wave"] == "m6").all()
        assert "## Primary analysis at m6" in report and "Tipping point" in report
        assert set(pd.read_csv(out / "tables" / "ancova.csv")["followup_wave"]) == {"m6"}
        # p-values never print as 0.00: every p column of every table holds "< 0.001" or a positive number.
        header = None
        for line in report.splitlines():
            if not line.startswith("|"):
                header = None
                continue
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header = cells
                continue
            for name, cell in zip(header, cells, strict=False):
                if name == "p" or name.endswith("_p") or name.startswith("p_"):
                    assert cell not in ("0.00", "0.000", "0"), (name, line)
        assert "DEMO-0" not in report
        from api.release import version

        # the reproducibility appendix: release, schema revision and the analysis stack
        appendix = report.split("## Appendix: software and data provenance", 1)[1]
        assert f"Peerlens {version()} (database schema " in appendix and "statsmodels " in appendix

        bad = CliRunner().invoke(
            app, ["analyze", str(demo.study_id), "--outdir", str(tmp_path / "x"), "--outcome", "sbp"]
        )
        assert bad.exit_code != 0 and "--outcome" in bad.output
        assert not (tmp_path / "x").exists()
        late = CliRunner().invoke(
            app, ["analyze", str(demo.study_id), "--outdir", str(tmp_path / "y"), "--followup", "m24"]
        )
        assert late.exit_code != 0 and "--followup" in late.output
    finally:
        get_settings.cache_clear()


# --- the quality bar: the synthetic effect is recovered through the service ------------------------


@pytest.mark.slow
def test_demo_pam_slope_difference_recovered_within_ci_through_the_api(tmp_path):
    """300 demo participants in SQLite (one backend: the load dominates the time): the random-slope
    trajectory returned by the API contains the generating PAM-13 slope difference.

    The generating model gives +6 vs +1 points/year, plus +2/year for participants isolated at
    baseline in the peer-support arms, so the marginal difference of an arm is
    ``6 - 1 + 2 x (share isolated in that arm)``, taken here from the same simulated cohort.
    """
    from fastapi.testclient import TestClient

    from analysis.synthetic import simulate_cohort
    from api.config import Settings
    from api.demo import ARMS, SITES, WAVES, load_demo
    from api.main import create_app
    from api.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'recovery.db'}"
    upgrade(url)
    demo = load_demo(url, n_participants=300, seed=DEMO_SEED)
    _unblind(url, demo.study_id)  # the arms are compared with the generating model by name
    p = demo.params
    cohort = simulate_cohort(
        300,
        seed=DEMO_SEED,
        sites=[s for s, _ in SITES],
        arms=[(a, k) for a, _, k in ARMS],
        waves=[(w, o) for w, o, _, _ in WAVES],
    )
    isolated = cohort.participants.groupby("arm")["baseline_isolated"].mean()
    truth = {
        arm: (
            p["pam_slope"]["intervention"]
            - p["pam_slope"]["control"]
            + (p["pam_slope_isolated_extra"]["intervention"] - p["pam_slope_isolated_extra"]["control"]) * isolated[arm]
        )
        for arm in ("group", "online")
    }
    app = create_app(
        Settings(DATABASE_URL=url, PEERLENS_SECRET_KEY="k", PEERLENS_ARTIFACT_DIR=str(tmp_path / "artefacts"))
    )
    with TestClient(app) as client:
        r = client.post(
            f"/studies/{demo.study_id}/analyses/trajectory",
            json={"outcome": "pam13_activation", "random": "slope", "formats": ["png"]},
            headers={"Authorization": f"Bearer {demo.tokens['analyst']}"},
        )
    assert r.status_code == 200, r.text
    run = r.json()
    assert run["n_participants"] == 300
    slopes = {row["arm"]: row for row in run["tables"]["slopes"]}
    for arm, known in truth.items():
        row = slopes[arm]
        assert row["diff_ci_lower"] < known < row["diff_ci_upper"], (arm, known, row)
        assert row["diff_p"] < 0.001
    control = slopes["usual_care"]
    assert control["ci_lower"] < p["pam_slope"]["control"] < control["ci_upper"]
    assert json.dumps(run)  # the whole result is plain JSON


def test_time_to_phq9_below_10_counts_match_the_score_table(client, demo, analyst, engine):
    # Independent count from the score rows: participants at 10+ at their first PHQ-9 who later score < 10.
    order = {"baseline": 0, "m1": 1, "m3": 2, "m6": 3, "m12": 4}
    phq = scores(engine, demo.study_id, "phq9").dropna(subset=["value"])
    phq = phq.assign(k=phq["wave"].map(order)).sort_values(["participant", "k"])
    eligible = reached = 0
    for _, g in phq.groupby("participant"):
        if g["value"].iloc[0] < 10:
            continue
        eligible += 1
        reached += bool((g["value"].iloc[1:] < 10).any())
    assert eligible > 0
    body = {"threshold": {"scale": "phq9", "value": 10, "direction": "below"}, "formats": ["png"]}
    r = post(client, demo, "retention", body, analyst.headers)
    assert r.status_code == 200, r.text
    run = r.json()
    assert run["values"]["threshold_participants"] == eligible
    assert run["values"]["threshold_reached"] == reached
    km = pd.DataFrame(run["tables"]["threshold_km"])
    assert list(km.columns) == ["group", "time", "at_risk", "events", "survival", "ci_lower", "ci_upper"]
    assert int(km["events"].sum()) == reached
    assert any("phq9_below" in p["url"] for p in run["plots"])
    bad = post(client, demo, "retention", {"threshold": {"scale": "dbp", "value": 30}}, analyst.headers)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "threshold", "scale"]


def test_due_offset_follows_wave_windows_and_completion_counts_only_the_due(client, admin, make_study, enrol):
    from datetime import date, timedelta

    from tests.conftest import phq9_answers

    study = make_study(
        time_zone="UTC",
        waves=(("baseline", 0, 0, 14, ["phq9"]), ("m3", 90, 14, 14, ["phq9"]), ("m12", 365, 30, 30, ["phq9"])),
    )
    today = date.today()
    long_ago = enrol(study, enrolled_on=(today - timedelta(days=400)).isoformat(), arm="group")  # m12 window closed
    recent = enrol(study, enrolled_on=(today - timedelta(days=100)).isoformat(), arm="group")  # m3 still open
    for p, enrolled in ((long_ago, today - timedelta(days=400)), (recent, today - timedelta(days=100))):
        r = client.post(
            f"/participants/{p['id']}/responses",
            json={
                "wave": "baseline",
                "instrument": "phq9",
                "answers": phq9_answers(1),
                "completed_at": f"{enrolled.isoformat()}T12:00:00Z",
            },
            headers=admin.headers,
        )
        assert r.status_code == 201, r.text
    long = client.get(f"/studies/{study.id}/exports/long?format=json", headers=admin.headers)
    assert long.status_code == 200, long.text
    rows = long.json() if isinstance(long.json(), list) else long.json()["rows"]
    due = {r["participant"]: r["due_offset"] for r in rows}
    assert due[long_ago["study_code"]] == 365 and due[recent["study_code"]] == 0
    run = client.post(f"/studies/{study.id}/analyses/attrition", json={"by": ["arm"]}, headers=admin.headers).json()
    m12 = [r for r in run["tables"]["completion"] if r["wave"] == "m12"]
    m3 = [r for r in run["tables"]["completion"] if r["wave"] == "m3"]
    assert not m12 or (m12[0]["enrolled"] == 2 and m12[0]["due"] == 1)
    assert not m3 or m3[0]["due"] == 1


def test_power_with_ancova_groups_and_one_sided_tests(client, demo, analyst):
    base = {"design": "two_arm", "delta": 0.5, "sd": 1}
    plain = post(client, demo, "power", base, analyst.headers).json()["values"]
    assert plain["n_per_arm"] == 64  # Cohen's table
    one = post(client, demo, "power", {**base, "alternative": "one-sided"}, analyst.headers).json()["values"]
    assert one["n_per_arm"] == 51  # G*Power, one-tailed
    anc = post(client, demo, "power", {**base, "baseline_correlation": 0.6}, analyst.headers).json()["values"]
    assert anc["n_per_arm"] == math.ceil(64 * (1 - 0.36))  # Borm et al. 2007
    grp = post(client, demo, "power", {**base, "cluster_size": 8, "icc": 0.05}, analyst.headers).json()["values"]
    assert grp["design_effect"] == pytest.approx(1.35) and grp["n_per_arm"] == math.ceil(64 * 1.35)
    pn = post(
        client, demo, "power", {**base, "cluster_size": 8, "icc": 0.05, "partially_nested": True}, analyst.headers
    ).json()["values"]
    assert pn["n_control_per_arm"] == 64 and pn["n_per_arm"] == math.ceil(64 * 1.35)
    assert pn["n_total"] == 64 + 2 * math.ceil(64 * 1.35)  # demo: one control arm, two grouped arms
