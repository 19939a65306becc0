"""Multiple imputation, Rubin's rules and the tipping-point analysis."""

import numpy as np
import pandas as pd
import pytest

from analysis.missing import impute, multiple_imputation, rubin, tipping_point
from analysis.trial import ancova


def test_rubins_rules_follow_rubin_1987_and_barnard_rubin_1999():
    q = np.array([2.1, 2.5, 1.9, 2.4, 2.2, 2.0])
    u = np.array([0.30, 0.28, 0.33, 0.31, 0.29, 0.30])
    r = rubin(q, u, df_complete=50)
    m = 6
    qbar, ubar, b = q.mean(), u.mean(), q.var(ddof=1)
    t = ubar + (1 + 1 / m) * b  # (3.1.5)
    lam = (1 + 1 / m) * b / t
    df_old = (m - 1) / lam**2  # (3.1.6)
    df_obs = (50 + 1) / (50 + 3) * 50 * (1 - lam)  # Barnard & Rubin (1999)
    assert r["estimate"] == pytest.approx(qbar) and r["within"] == pytest.approx(ubar)
    assert r["between"] == pytest.approx(b) and r["total"] == pytest.approx(t)
    assert r["riv"] == pytest.approx((1 + 1 / m) * b / ubar)  # (3.1.7)
    assert r["df"] == pytest.approx(df_old * df_obs / (df_old + df_obs))
    assert r["fmi"] == pytest.approx((r["riv"] + 2 / (r["df"] + 3)) / (r["riv"] + 1))  # (3.1.10)
    from scipy import stats

    assert r["ci_upper"] - r["estimate"] == pytest.approx(stats.t.ppf(0.975, r["df"]) * np.sqrt(t))
    # With infinite complete-data df the classic Rubin df is used.
    assert rubin(q, u)["df"] == pytest.approx(df_old)


def _mar_trial(seed=11, n=500, iso_effect=3.0):
    """Two arms; dropout at follow-up more likely for isolated participants, whose outcome also worsens."""
    rng = np.random.default_rng(seed)
    arm = np.where(np.arange(n) % 2 == 0, "peer", "usual")
    iso = rng.normal(0, 1, n)  # baseline isolation (an auxiliary scale)
    y0 = 10 + 2 * iso + rng.normal(0, 2, n)
    effect = np.where(arm == "peer", -2.0, 0.0)
    y1 = 0.6 * y0 + iso_effect * iso + 4 + effect + rng.normal(0, 2, n)
    p_drop = 1 / (1 + np.exp(-(-1.0 + 1.8 * iso + 0.8 * (arm == "peer"))))
    y1 = np.where(rng.uniform(size=n) < p_drop, np.nan, y1)
    rows = []
    for i in range(n):
        pid = f"P{i}"
        kind = "control" if arm[i] == "usual" else "intervention"
        rows.append((pid, arm[i], kind, "baseline", 0, "y", y0[i]))
        rows.append((pid, arm[i], kind, "m6", 182, "y", y1[i]))
        rows.append((pid, arm[i], kind, "baseline", 0, "iso", iso[i]))
    return pd.DataFrame(rows, columns=["participant", "arm", "arm_kind", "wave", "wave_offset", "scale", "value"])


def test_mi_with_the_auxiliary_removes_the_dropout_bias_of_complete_cases():
    long = _mar_trial(n=3000, iso_effect=6.0)
    cc = ancova(long, "y", followup="m6").iloc[0]
    mi = multiple_imputation(long, "y", followup="m6", m=10, auxiliary=["iso"], seed=3).iloc[0]
    # The truth is -2.0; isolation drives both dropout and outcome, so complete cases are biased.
    assert abs(cc["estimate"] + 2.0) > 2 * cc["se"]
    assert abs(mi["estimate"] + 2.0) < 2 * mi["se"]
    assert mi["ci_lower"] < -2.0 < mi["ci_upper"]
    w = long[(long["scale"] == "y") & (long["wave"] == "m6")]
    assert mi["n_imputed"] == int(w[w["arm"] == "peer"]["value"].isna().sum()) and mi["fmi"] > 0
    assert mi["se"] > cc["se"] * 0.8  # imputation does not manufacture precision


def test_imputations_keep_observed_values_and_draw_from_observed_donors():
    long = _mar_trial(n=120)
    sets, waves = impute(long, "y", m=3, seed=1, method="pmm")
    observed = long[(long["scale"] == "y") & (long["wave"] == "m6")].set_index("participant")["value"]
    for c in sets:
        obs = observed.notna()
        assert np.allclose(c.loc[obs[obs].index, "m6"], observed[obs])
        assert set(np.round(c.loc[c["imputed_m6"], "m6"], 8)) <= set(np.round(observed.dropna(), 8))  # PMM donors
    assert not sets[0]["m6"].equals(sets[1]["m6"])  # imputations differ


def test_tipping_point_shifts_the_estimate_and_finds_where_significance_changes():
    long = _mar_trial()
    tp = tipping_point(long, "y", "m6", deltas=[0, 0.5, 1, 1.5, 2, 2.5], arm="peer", m=10, auxiliary=["iso"], seed=3)
    mar = multiple_imputation(long, "y", followup="m6", m=10, auxiliary=["iso"], seed=3).iloc[0]
    assert tp.loc[tp["delta"] == 0, "estimate"].iloc[0] == pytest.approx(mar["estimate"])
    assert tp["estimate"].is_monotonic_increasing  # worse outcomes for peer-arm dropouts shrink the benefit
    assert tp["same_conclusion"].iloc[0] and not tp["same_conclusion"].iloc[-1]
    first = tp.loc[~tp["same_conclusion"], "delta"].min()
    assert tp["tipping_point"].iloc[0] == first
    assert tp.loc[tp["delta"] < first, "same_conclusion"].all()
