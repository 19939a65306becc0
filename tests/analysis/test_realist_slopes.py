"""The arm × time × context estimate of a CMO configuration against statsmodels' MixedLM fitted
directly (same formula, REML), on the synthetic cohort whose generating model gives the
intervention arms an extra +2 PAM points a year in isolated participants (LSNS-6 < 12)."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
import statsmodels.formula.api as smf

from analysis.frame import long_from_synthetic
from analysis.realist_slopes import SLOPE_COLUMNS, slope_moderation, slope_moderation_table
from analysis.synthetic import simulate_cohort

ARM, REF = "group", "usual_care"
T_ARM = "C(arm, Treatment('usual_care'))[T.group]"
T_CTX = "C(context, Treatment('out'))[T.in]"


@pytest.fixture(scope="module")
def cohort():
    long = long_from_synthetic(simulate_cohort(200, seed=3))
    base = long[(long["scale"] == "lsns6") & (long["wave"] == "baseline")]
    return long, dict(zip(base["participant"], base["value"] < 12, strict=True))


def _statsmodels(long: pd.DataFrame, ctx: dict, re_formula: str, site: bool):
    df = long[
        (long["scale"] == "pam13_activation")
        & long["arm"].isin([ARM, REF])
        & long["value"].notna()
        & long["participant"].isin(list(ctx))
    ].copy()
    df["context"] = df["participant"].map(lambda p: "in" if ctx[p] else "out")
    df["years"] = df["days"].fillna(df["wave_offset"]) / 365.25
    rhs = "years * C(arm, Treatment('usual_care')) * C(context, Treatment('out'))" + (" + C(site)" if site else "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = smf.mixedlm(f"value ~ {rhs}", df, groups="participant", re_formula=re_formula).fit(
            reml=True, method=["lbfgs"]
        )
    assert fit.converged
    return fit


def test_slope_moderation_equals_mixedlm_fitted_directly(cohort):
    long, ctx = cohort
    r = slope_moderation(long, ctx, "pam13_activation", ARM, REF)
    assert r["slope_random"] == "intercept and slope"
    fit = _statsmodels(long, ctx, "~years", site=True)
    three = f"years:{T_ARM}:{T_CTX}"
    assert r["slope_moderation"] == pytest.approx(fit.params[three], rel=1e-3)
    assert r["slope_se"] == pytest.approx(fit.bse[three], rel=1e-2)
    assert r["slope_out"] == pytest.approx(fit.params[f"years:{T_ARM}"], rel=1e-3)
    assert r["slope_in"] == pytest.approx(fit.params[f"years:{T_ARM}"] + fit.params[three], rel=1e-3)
    # The generating values (6 − 1 = 5 points a year outside the context, 5 + 2 inside, moderation
    # +2) lie inside the 95% intervals.
    assert r["slope_out_ci_lower"] < 5 < r["slope_out_ci_upper"]
    assert r["slope_in_ci_lower"] < 7 < r["slope_in_ci_upper"]
    assert r["slope_ci_lower"] < 2 < r["slope_ci_upper"]
    assert r["slope_n_in"] + r["slope_n_out"] == fit.model.n_groups


def test_site_level_context_leaves_site_out_of_the_model(cohort):
    long, _ = cohort
    sites = long.drop_duplicates("participant").set_index("participant")["site"]
    first = sorted(sites.unique())[0]
    ctx = {p: s == first for p, s in sites.items()}
    r = slope_moderation(long, ctx, "pam13_activation", ARM, REF)
    re_formula = "~years" if r["slope_random"] == "intercept and slope" else "1"
    fit = _statsmodels(long, ctx, re_formula, site=False)
    three = f"years:{T_ARM}:{T_CTX}"
    assert r["slope_moderation"] == pytest.approx(fit.params[three], rel=1e-3)


def test_table_keeps_order_notes_sparse_cells_and_adjusts_across_rows(cohort):
    long, _ = cohort
    people = long[(long["scale"] == "lsns6") & (long["wave"] == "baseline")][["participant", "value"]]
    people = people.rename(columns={"value": "lsns6"})
    cmos = [
        {"outcome": "pam13_activation", "context": {"variable": "lsns6", "op": "<", "value": 12}},
        {"outcome": "pam13_activation", "context": {"variable": "lsns6", "op": "<", "value": 1}},  # nobody
        {"outcome": "phq9", "context": {"variable": "lsns6", "op": ">=", "value": 12}},
    ]
    t = slope_moderation_table(long, people, cmos, ARM, REF)
    assert list(t.columns) == SLOPE_COLUMNS and len(t) == 3
    assert "fewer than 5 participants" in t.loc[1, "slope_note"] and pd.isna(t.loc[1, "slope_p"])
    ok = t["slope_p"].notna()
    assert ok.sum() == 2 and (t.loc[ok, "slope_p_bh"] >= t.loc[ok, "slope_p"] - 1e-12).all()
    single = slope_moderation(
        long, dict(zip(people["participant"], people["lsns6"] < 12, strict=True)), "pam13_activation", ARM, REF
    )
    assert t.loc[0, "slope_moderation"] == pytest.approx(single["slope_moderation"])
