"""Realist analyses checked against published examples, hand computation and independent code.

* Mediation: the framing experiment of Brader, Valentino & Suhay (2008), shipped with R's
  ``mediation`` package and with statsmodels (``stats/tests/results/framing.csv``); our natural
  indirect/direct effects against statsmodels' ``Mediation`` (parametric, 5000 simulations, its
  documented example with linear models) and against the product of OLS coefficients.
* CACE: two-stage least squares against the Wald estimator worked by hand, and the HC1 sandwich
  against the just-identified IV formula ``(Z'X)⁻¹ Z' diag(u²) Z (X'Z)⁻¹ · n/(n−k)``.
* GAS: Kiresuk & Sherman (1968) T-scores worked by hand.
* Partial pooling: DerSimonian–Laird against statsmodels' ``combine_effects``.
* The moderation row against a statsmodels OLS fit with an interaction term.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels
import statsmodels.formula.api as smf

from analysis.compliance import DOSE_CAVEAT, cace, dose_response, wald_cace
from analysis.gas import gas_by_arm, gas_scores, gas_tscore
from analysis.mediation import ASSUMPTION, mediation
from analysis.realist import context_mask, partial_pool, site_heterogeneity, what_works_for_whom
from analysis.realist_sim import simulate_realist

FRAMING = Path(statsmodels.__file__).parent / "stats" / "tests" / "results" / "framing.csv"

# statsmodels 0.15.0 Mediation(OLS outcome "cong_mesg ~ emo + treat + age + income", OLS mediator
# "emo ~ treat + age + income").fit(method="parametric", n_rep=5000, rng=np.random.default_rng(0))
SM_NO_INTERACTION = {"ACME (treated)": 0.100805, "ADE (control)": 0.005409, "Total effect": 0.106213}
# ... with "+ emo:treat" in the outcome model
SM_INTERACTION = {"ACME (treated)": 0.129480, "ADE (control)": -0.025195, "Total effect": 0.104286}


@pytest.fixture(scope="module")
def framing() -> pd.DataFrame:
    return pd.read_csv(FRAMING)


@pytest.mark.parametrize("interaction,ref", [(False, SM_NO_INTERACTION), (True, SM_INTERACTION)])
def test_mediation_matches_statsmodels_on_the_framing_example(framing, interaction, ref):
    r = mediation(
        framing, "treat", "emo", "cong_mesg", ["age", "income"], interaction=interaction, n_boot=300, seed=1
    ).set_index("effect")
    # Monte Carlo error of 5000 parametric simulations is about 0.0005; allow a few times that.
    assert r.loc["indirect", "estimate"] == pytest.approx(ref["ACME (treated)"], abs=0.0025)
    assert r.loc["direct", "estimate"] == pytest.approx(ref["ADE (control)"], abs=0.0025)
    assert r.loc["total", "estimate"] == pytest.approx(ref["Total effect"], abs=0.0025)
    assert r.loc["indirect", "ci_lower"] > 0 and r.loc["total", "ci_lower"] < 0  # as published: ACME only
    assert r.loc["indirect", "assumption"] == ASSUMPTION and "sequential ignorability" in ASSUMPTION


def test_mediation_without_interaction_is_the_product_of_ols_coefficients(framing):
    a = smf.ols("emo ~ treat + age + income", framing).fit().params["treat"]
    fit = smf.ols("cong_mesg ~ emo + treat + age + income", framing).fit().params
    r = mediation(framing, "treat", "emo", "cong_mesg", ["age", "income"], n_boot=200, seed=2).set_index("effect")
    assert r.loc["indirect", "estimate"] == pytest.approx(a * fit["emo"], rel=1e-10)
    assert r.loc["direct", "estimate"] == pytest.approx(fit["treat"], rel=1e-10)


def test_mediation_refuses_a_non_binary_arm(framing):
    with pytest.raises(ValueError, match="0 \\(comparison\\) or 1"):
        mediation(framing.assign(treat=framing["treat"] * 2), "treat", "emo", "cong_mesg")


HAND = pd.DataFrame(
    {
        "z": [1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
        "d": [1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
        "y": [8.0, 7.0, 9.0, 4.0, 5.0, 5.0, 3.0, 4.0, 6.0, 2.0],
    }
)


def test_cace_equals_the_wald_estimator_worked_by_hand():
    # ITT on y: mean(8, 7, 9, 4, 5) - mean(5, 3, 4, 6, 2) = 6.6 - 4.0 = 2.6; uptake 3/5 - 0 = 0.6
    hand = 2.6 / 0.6
    assert wald_cace(HAND, "z", "d", "y") == pytest.approx(hand)
    r = cace(pd.concat([HAND] * 2, ignore_index=True), "z", "d", "y").set_index("estimand")
    assert r.loc["cace", "estimate"] == pytest.approx(hand)
    assert r.loc["wald", "estimate"] == pytest.approx(hand)
    assert r.loc["itt", "estimate"] == pytest.approx(2.6)
    assert r.loc["compliance", "estimate"] == pytest.approx(0.6)


def test_cace_robust_se_matches_the_just_identified_iv_sandwich():
    s = simulate_realist(300, seed=11).participants
    r = cace(s, "treated", "adherent", "phq9_m12", ["phq9_baseline"]).set_index("estimand")
    n = len(s)
    Z = np.column_stack([np.ones(n), s["treated"], s["phq9_baseline"]])
    X = np.column_stack([np.ones(n), s["adherent"], s["phq9_baseline"]])
    y = s["phq9_m12"].to_numpy(float)
    ZX_inv = np.linalg.inv(Z.T @ X)
    beta = ZX_inv @ Z.T @ y
    u = y - X @ beta
    V = ZX_inv @ (Z.T * u**2) @ Z @ ZX_inv.T * n / (n - 3)
    assert r.loc["cace", "estimate"] == pytest.approx(beta[1], rel=1e-9)
    assert r.loc["cace", "se"] == pytest.approx(math.sqrt(V[1, 1]), rel=1e-9)
    assert r.loc["cace", "first_stage_F"] > 10


def test_cace_refuses_when_uptake_does_not_differ():
    with pytest.raises(ValueError, match="not identified"):
        cace(pd.concat([HAND] * 2, ignore_index=True).assign(d=0), "z", "d", "y")


def test_dose_response_prints_the_caveat_and_uses_the_intervention_arm_only():
    d = pd.DataFrame(
        {"treated": [1] * 6 + [0] * 3, "dose": [0, 2, 4, 6, 8, 10, 0, 0, 0], "y": [10.0, 9, 9, 7, 6, 6, 100, 100, 100]}
    )
    r = dose_response(d, "dose", "y")
    # hand: Sxy = -31, Sxx = 70 over the six intervention-arm rows
    assert r.loc[0, "slope"] == pytest.approx(-31 / 70) and r.loc[0, "n"] == 6
    assert r.loc[0, "caveat"] == DOSE_CAVEAT and "not the causal effect" in DOSE_CAVEAT


def test_gas_t_scores_worked_by_hand():
    # Kiresuk & Sherman: T = 50 + 10 Σwx / sqrt((1 - ρ) Σw² + ρ (Σw)²)
    assert gas_tscore([2, 1, -1, 0]) == pytest.approx(50 + 10 * 2 / math.sqrt(0.7 * 4 + 0.3 * 16))
    assert gas_tscore([2, 1, -1, 0], rho=0.0) == pytest.approx(60.0)
    assert gas_tscore([1, -2], [3, 1], rho=0.5) == pytest.approx(50 + 10 * 1 / math.sqrt(0.5 * 10 + 0.5 * 16))
    assert gas_tscore([-1, -1, -1]) == pytest.approx(50 - 30 / math.sqrt(0.7 * 3 + 0.3 * 9))
    with pytest.raises(ValueError, match="-2..\\+2"):
        gas_tscore([3])


def test_gas_scores_and_arm_summary():
    goals = pd.DataFrame(
        {
            "participant": ["a", "a", "b", "c"],
            "weight": [1, 1, 1, 1],
            "baseline_level": [-1, -1, -1, -1],
            "followup_level": [1, np.nan, 0, -1],
        }
    )
    s = gas_scores(goals).set_index("participant")
    assert s.loc["a", "n_goals_rated"] == 1 and s.loc["a", "t_followup"] == pytest.approx(60.0)
    assert s.loc["a", "t_baseline"] == pytest.approx(50 - 20 / math.sqrt(0.7 * 2 + 0.3 * 4))
    s["arm"] = ["peer", "usual", "usual"]
    t = gas_by_arm(s.reset_index(), "arm", reference="usual")
    assert t.query("measure == 't_followup' and arm == 'usual'")["mean"].item() == pytest.approx(45.0)


def test_partial_pool_matches_statsmodels_dersimonian_laird():
    from statsmodels.stats.meta_analysis import combine_effects

    y = np.array([-2.1, -0.4, -1.3, -3.0, 0.2, -1.0])
    se = np.array([0.6, 0.5, 0.9, 1.2, 0.7, 0.4])
    ref = combine_effects(y, se**2, method_re="dl")
    r = partial_pool(y, se)
    assert r["tau2"] == pytest.approx(ref.tau2, rel=1e-8)
    assert r["mu"] == pytest.approx(ref.mean_effect_re, rel=1e-8)
    assert r["mu_se"] == pytest.approx(ref.sd_eff_w_re, rel=1e-8)
    # each estimate moves towards the mean, the noisiest the most
    pull = np.abs(r["shrunk"] - y) / np.abs(y - r["mu"])
    assert np.all(r["shrunk"] <= np.maximum(y, r["mu"]) + 1e-12) and pull.argmax() == se.argmax()


def test_context_mask_predicates():
    f = pd.DataFrame({"lsns6": [8, 15, None, 11], "setting": ["rural", "urban", "rural", None]})
    assert context_mask(f, {"variable": "lsns6", "op": "<", "value": 12}).tolist() == [True, False, pd.NA, True]
    both = context_mask(
        f, [{"variable": "lsns6", "op": "<", "value": 12}, {"variable": "setting", "op": "in", "value": ["rural"]}]
    )
    assert both.tolist() == [True, False, pd.NA, pd.NA]
    with pytest.raises(ValueError, match="not a column"):
        context_mask(f, {"variable": "nope", "op": "<", "value": 1})


def test_moderation_row_matches_an_ols_interaction_fit():
    d = simulate_realist(400, seed=5).participants
    cmo = {
        "code": "iso",
        "outcome": "phq9_m12",
        "baseline": "phq9_baseline",
        "direction": "negative",
        "context": {"variable": "lsns6", "op": "<", "value": 12},
    }
    row = what_works_for_whom(d, [cmo]).iloc[0]
    d = d.assign(ctx=(d["lsns6"] < 12).astype(int))
    fit = smf.ols("phq9_m12 ~ treated * ctx + phq9_baseline", d).fit()
    ci = fit.conf_int().loc["treated:ctx"]
    assert row["moderation"] == pytest.approx(fit.params["treated:ctx"], rel=1e-9)
    assert (row["ci_lower"], row["ci_upper"]) == pytest.approx((ci[0], ci[1]), rel=1e-9)
    assert row["p"] == pytest.approx(fit.pvalues["treated:ctx"], rel=1e-8)
    assert row["effect_out"] == pytest.approx(fit.params["treated"], rel=1e-9)
    assert row["n_in"] == d["ctx"].sum() and row["df"] == fit.df_resid


def test_table_marks_sparse_cmos_and_applies_bh_across_rows():
    from statsmodels.stats.multitest import multipletests

    d = simulate_realist(300, seed=6).participants
    rng = np.random.default_rng(0)
    cmos = []
    for j in range(5):
        d[f"x{j}"] = rng.integers(0, 2, len(d))
        cmos.append(
            {
                "code": f"c{j}",
                "outcome": "phq9_m12",
                "prespecified": j < 3,
                "context": {"variable": f"x{j}", "op": "==", "value": 1},
            }
        )
    d["rare"] = 0
    d.loc[:3, "rare"] = 1
    cmos.append({"code": "rare", "outcome": "phq9_m12", "context": {"variable": "rare", "op": "==", "value": 1}})
    t = what_works_for_whom(d, cmos)
    assert t.loc[5, "verdict"] == "not_estimable" and "fewer than 5" in t.loc[5, "note"]
    bh = multipletests(t["p"][:5], method="fdr_bh")[1]
    assert t["p_bh"][:5].to_numpy() == pytest.approx(bh)
    assert t["prespecified"].tolist() == [True, True, True, False, False, True]


def test_site_heterogeneity_per_site_effects_are_site_ols_fits():
    d = simulate_realist(400, seed=7).participants
    per, summary = site_heterogeneity(d, "phq9_m12", baseline="phq9_baseline")
    s1 = d[d["site"] == "S1"]
    fit = smf.ols("phq9_m12 ~ treated + phq9_baseline", s1).fit()
    row = per.set_index("site").loc["S1"]
    assert row["effect"] == pytest.approx(fit.params["treated"], rel=1e-9)
    assert row["ci_lower"] == pytest.approx(fit.conf_int().loc["treated", 0], rel=1e-9)
    assert summary["n_sites"] == 6 and 0 <= summary["i2"] < 1
    assert (per["shrunk"] - summary["mu"]).abs().le((per["effect"] - summary["mu"]).abs() + 1e-12).all()


def test_simulated_truths_are_recovered_in_one_large_study():
    s = simulate_realist(4000, seed=8)
    d, truth = s.participants, s.truth
    t = what_works_for_whom(
        d,
        [
            {
                "code": "iso",
                "outcome": "phq9_m12",
                "baseline": "phq9_baseline",
                "context": {"variable": "lsns6", "op": "<", "value": 12},
            }
        ],
    ).iloc[0]
    assert t.ci_lower < truth.moderation < t.ci_upper and t.significant
    m = mediation(
        d, "treated", "semcd6_m3", "phq9_m12", ["semcd6_baseline", "phq9_baseline"], n_boot=200, seed=3
    ).set_index("effect")
    assert m.loc["indirect", "ci_lower"] < truth.indirect < m.loc["indirect", "ci_upper"]
    c = cace(d, "treated", "adherent", "phq9_m12", ["phq9_baseline"]).set_index("estimand")
    assert c.loc["cace", "ci_lower"] < truth.cace < c.loc["cace", "ci_upper"]


@pytest.mark.slow
def test_coverage_and_null_fdr_over_simulated_studies():
    """100 simulated studies: 95 % intervals cover the truth in 90-99 % of runs; BH FDR ≤ 5 %."""
    spec = importlib.util.spec_from_file_location("bench_realist", Path(__file__).parents[2] / "bench" / "realist.py")
    bench = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    cov = bench.coverage(100, 400, seed=1, n_boot=300)
    for name in ("moderation", "indirect", "cace"):
        assert 0.90 <= cov[name] <= 0.99, (name, cov)
    fdr = bench.null_fdr(100, 400, seed=1)
    # 100 tables: the binomial 95 % upper bound of an FDR of 5 % is about 9 %
    assert fdr["fdr"] <= 0.09, fdr
