"""Reliability against pingouin's documented examples; power against hand-computed values."""

import numpy as np
import pandas as pd
import pingouin as pg
import pytest

from analysis.power import n_slope_difference, n_time_averaged, n_two_arm, power_curve, power_slope_difference
from analysis.reliability import cronbach_alpha, item_total, mcdonald_omega, reliability


def test_alpha_matches_pingouin_documented_example_listwise():
    # pingouin docs: cronbach_wide_missing, nan_policy="listwise" -> 0.8016949152542373, CI [0.581, 0.933]
    # (documented there as psych::alpha(data, use="complete.obs") in R)
    r = cronbach_alpha(pg.read_dataset("cronbach_wide_missing")).iloc[0]
    assert r["alpha"] == pytest.approx(0.8016949152542373, rel=1e-9)
    assert (r["ci_lower"], r["ci_upper"]) == (0.581, 0.933)


def test_alpha_matches_pingouin_documented_example_pairwise():
    # pingouin docs: pairwise -> 0.732660835214447, CI [0.435, 0.909]
    r = cronbach_alpha(pg.read_dataset("cronbach_wide_missing"), nan_policy="pairwise").iloc[0]
    assert r["alpha"] == pytest.approx(0.732660835214447, rel=1e-9)


def test_reliability_from_items_export_matches_long_format_example():
    # pingouin docs: long-format "cronbach_alpha" dataset -> 0.5917188485995826, CI [0.195, 0.84]
    d = pg.read_dataset("cronbach_alpha")
    items = pd.DataFrame(
        {
            "participant": d["Subj"],
            "wave": "baseline",
            "instrument": "demo",
            "item": d["Items"].astype(str),
            "value": d["Scores"],
        }
    )
    r = reliability(items).iloc[0]
    assert r["alpha"] == pytest.approx(0.5917188485995826, rel=1e-9)
    assert (r["ci_lower"], r["ci_upper"]) == (0.195, 0.84)
    assert 0 < r["omega"] < 1


def test_omega_recovers_population_value_of_congeneric_items():
    # One factor, loadings 0.4..0.8: omega = (sum l)^2 / ((sum l)^2 + sum(1 - l^2)) = 9/(9+3.1) = 0.743802
    lam = np.array([0.4, 0.5, 0.6, 0.7, 0.8])
    rng = np.random.default_rng(3)
    f = rng.standard_normal(20000)
    x = f[:, None] * lam + rng.standard_normal((20000, 5)) * np.sqrt(1 - lam**2)
    r = mcdonald_omega(pd.DataFrame(x, columns=list("abcde"))).iloc[0]
    assert r["omega"] == pytest.approx(0.743802, abs=0.006)
    # Unequal loadings: alpha underestimates reliability, omega does not.
    assert cronbach_alpha(pd.DataFrame(x)).iloc[0]["alpha"] < r["omega"]


def test_item_total_flags_an_unrelated_item():
    rng = np.random.default_rng(1)
    f = rng.standard_normal(500)
    df = pd.DataFrame(
        {
            "a": f + rng.normal(0, 0.5, 500),
            "b": f + rng.normal(0, 0.5, 500),
            "c": f + rng.normal(0, 0.5, 500),
            "noise": rng.standard_normal(500),
        }
    )
    t = item_total(df).set_index("item")
    assert t.loc["noise", "r_item_rest"] < 0.15 < t.loc["a", "r_item_rest"]
    assert t.loc["noise", "alpha_if_deleted"] > cronbach_alpha(df).iloc[0]["alpha"]


def test_two_arm_sample_size_matches_cohen_table():
    # Cohen (1988) Table 2.4.1, two-sided alpha .05, power .80: d = 0.5 -> 64 per group, d = 0.8 -> 26
    assert int(n_two_arm(0.5)["n_per_arm"].iloc[0]) == 64
    assert int(n_two_arm(0.8)["n_per_arm"].iloc[0]) == 26
    # The closed normal form 2 (z + z)^2 / d^2 = 2 * 7.848879 / 0.25 = 62.7910
    assert n_two_arm(0.5)["n_normal"].iloc[0] == pytest.approx(62.7910, abs=1e-3)


def test_diggle_slope_formula_hand_computed():
    # m = 2 (1.959964 + 0.841621)^2 * sigma2 (1 - rho) / (n sx2 d^2)
    # times 0..4: n = 5, sx2 = 2; sigma2 = 1, rho = 0.5, d = 0.1 -> 2 * 7.848879 * 0.5 / 0.1 = 78.48879
    r = n_slope_difference(0.1, 1.0, 0.5, [0, 1, 2, 3, 4]).iloc[0]
    assert r["sx2"] == 2.0
    assert r["m"] == pytest.approx(78.48879, abs=1e-4)
    assert r["n_per_arm"] == 79
    # Planned waves of the demo in years (0, 30, 90, 180, 365 days), sigma2 = 16, rho = 0.8, d = 5/yr:
    # t = [0, .0821355, .2464066, .4928131, .9993155]; mean .3641341;
    # squared deviations .1325936 .0795232 .0138598 .0165583 .4034555 -> sx2 = .6459904 / 5 = .1291981
    # m = 2 * 7.848879 * 16 * 0.2 / (5 * .1291981 * 25) = 50.23283 / 16.14976 = 3.11044
    t = np.array([0, 30, 90, 180, 365]) / 365.25
    r = n_slope_difference(5.0, 16.0, 0.8, t).iloc[0]
    assert r["sx2"] == pytest.approx(0.1291981, abs=1e-6)
    assert r["m"] == pytest.approx(3.11044, abs=1e-4)
    assert r["n_per_arm"] == 4


def test_diggle_time_averaged_formula_hand_computed():
    # m = 2 * 7.848879 * 1 * (1 + 4 * 0.5) / (5 * 0.25) = 37.6746
    assert n_time_averaged(0.5, 1.0, 0.5, 5)["m"].iloc[0] == pytest.approx(37.6746, abs=1e-3)


def test_power_is_the_inverse_of_sample_size():
    assert power_slope_difference(78.48879, 0.1, 1.0, 0.5, [0, 1, 2, 3, 4]) == pytest.approx(0.80, abs=1e-5)
    curve = power_curve([20, 64, 200], design="two_arm", delta=0.5)
    assert curve["power"].is_monotonic_increasing
    assert curve["power"].iloc[1] == pytest.approx(0.80, abs=0.01)
    with pytest.raises(ValueError):
        power_curve([10], design="nonsense")
