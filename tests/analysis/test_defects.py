"""Regression tests for defects found by checking the analysis layer against trusted implementations."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import analysis
from analysis.attrition import completion
from analysis.reliability import cronbach_alpha
from analysis.survival import fit_cox
from analysis.trajectories import fit_trajectory


@pytest.mark.parametrize("ci", [0.90, 0.99])
def test_cox_intervals_at_any_level_are_wald_intervals(ci):
    from lifelines.datasets import load_rossi

    _, tab = fit_cox(load_rossi(), "week", "arrest", ["fin", "age", "race", "wexp", "mar", "paro", "prio"], ci=ci)
    t = tab.set_index("term")
    z = stats.norm.ppf(1 - (1 - ci) / 2)
    # R survival on Rossi (Fox & Weisberg): fin coef -0.37942, se 0.19138; the interval is coef +- z se.
    assert t.loc["fin", "ci_lower"] == pytest.approx(-0.37942 - z * 0.19138, abs=2e-4)
    assert t.loc["fin", "ci_upper"] == pytest.approx(-0.37942 + z * 0.19138, abs=2e-4)
    assert t.loc["fin", "hr_ci_lower"] == pytest.approx(np.exp(-0.37942 - z * 0.19138), rel=2e-4)
    assert (t["ci_lower"] < t["coef"]).all() and (t["coef"] < t["ci_upper"]).all()


def test_cox_counts_rows_left_out_for_missing_values():
    from lifelines.datasets import load_rossi

    d = load_rossi().astype(float)
    d.loc[:9, "age"] = np.nan
    _, tab = fit_cox(d, "week", "arrest", ["fin", "age"])
    assert (tab["n_excluded"] == 10).all() and (tab["n"] == len(d) - 10).all()


def _no_site_frame():
    rng = np.random.default_rng(1)
    rows = []
    for i in range(30):
        arm = "peer" if i % 2 else "usual"
        b = rng.normal(10, 2)
        for t in (0, 90, 180, 365):
            rows.append(
                (
                    f"P{i}",
                    arm,
                    "intervention" if arm == "peer" else "control",
                    f"d{t}",
                    t,
                    t,
                    "phq9",
                    b - (3 if arm == "peer" else 1) * t / 365.25 + rng.normal(0, 1),
                )
            )
    return pd.DataFrame(
        rows, columns=["participant", "arm", "arm_kind", "wave", "wave_offset", "days", "scale", "value"]
    )


def test_trajectory_fits_a_frame_without_a_site_column_and_takes_time_scale():
    long = _no_site_frame()
    per_year = fit_trajectory(long, "phq9").slopes().set_index("arm")
    per_day = fit_trajectory(long, "phq9", time_scale=1).slopes().set_index("arm")
    assert per_day.loc["peer", "slope"] * 365.25 == pytest.approx(per_year.loc["peer", "slope"], rel=1e-6)


def test_power_functions_are_exported_and_one_sided_tests_need_no_doubled_alpha():
    for name in ("n_time_averaged", "power_two_arm", "power_slope_difference", "n_ancova", "design_effect"):
        assert callable(getattr(analysis, name))
    # G*Power, t-test two independent means, one-tailed, d = 0.5, alpha 0.05, power 0.80: 51 per group.
    assert int(analysis.n_two_arm(0.5, alternative="one-sided")["n_per_arm"].iloc[0]) == 51
    one = analysis.power_two_arm(51, 0.5, alternative="one-sided")
    assert one == pytest.approx(analysis.power_two_arm(51, 0.5, alpha=0.10), abs=1e-3) and one > 0.8
    s1 = analysis.power_slope_difference(50, 0.1, 1.0, 0.5, [0, 1, 2, 3, 4], alternative="one-sided")
    assert s1 == pytest.approx(analysis.power_slope_difference(50, 0.1, 1.0, 0.5, [0, 1, 2, 3, 4], alpha=0.10))


def test_cronbach_alpha_ignores_identifier_columns():
    items = pd.DataFrame({"a": [1, 2, 3, 4, 5], "b": [2, 2, 3, 5, 5], "c": [1, 3, 3, 4, 4]})
    with_id = items.assign(participant=[101, 102, 103, 104, 105], record_id=[1, 2, 3, 4, 5])
    assert cronbach_alpha(with_id)["alpha"].iloc[0] == pytest.approx(cronbach_alpha(items)["alpha"].iloc[0])
    assert int(cronbach_alpha(with_id)["k"].iloc[0]) == 3


def test_pam13_with_too_few_items_gets_no_banded_external_score():
    import instruments

    answers = {f"pam13_{j}": 3 for j in range(1, 10)}  # 9 of 13 items: fails the 10-item rule
    scores = {s.scale: s for s in instruments.score("pam13", answers, external_scores={"pam13_activation": 60.0})}
    act = scores["pam13_activation"]
    assert act.value is None and act.band is None
    # An external score alone (items answered in the licensed software) is still accepted and banded.
    alone = {s.scale: s for s in instruments.score("pam13", {}, external_scores={"pam13_activation": 60.0})}
    assert alone["pam13_activation"].value == 60.0 and alone["pam13_activation"].band is not None


def test_completion_counts_only_participants_whose_wave_is_due():
    # 10 enrolled; the m12 window has closed for 8 of them, 5 of whom completed m12.
    rows = []
    for i in range(10):
        due = 365 if i < 8 else 182
        rows.append((f"P{i}", "peer", "baseline", 0, 1.0, due))
        if i < 5:
            rows.append((f"P{i}", "peer", "m12", 365, 1.0, due))
    long = pd.DataFrame(rows, columns=["participant", "arm", "wave", "wave_offset", "value", "due_offset"])
    long["scale"] = "phq9"
    c = completion(long).set_index("wave")
    assert c.loc["m12", "enrolled"] == 10 and c.loc["m12", "due"] == 8 and c.loc["m12", "completed"] == 5
    assert c.loc["m12", "completed_pct"] == pytest.approx(62.5)
    assert c.loc["m12", "denominator"].startswith("due")
    # Without due information the table says which denominator it used.
    assert completion(long.drop(columns=["due_offset"]))["denominator"].iloc[0].startswith("enrolled")


def test_synthetic_pam13_items_are_internally_consistent():
    from analysis.synthetic import simulate_cohort

    c = simulate_cohort(300, seed=5)
    base = pd.DataFrame([r["answers"] for r in c.responses if r["instrument"] == "pam13" and r["wave"] == "baseline"])
    alpha = float(cronbach_alpha(base.astype(float))["alpha"].iloc[0])
    assert 0.80 <= alpha <= 0.93  # published PAM-13 alphas lie between about 0.80 and 0.91


def test_change_tables_name_the_follow_up_wave(long60):
    from analysis.change import effect_sizes, responders

    es = effect_sizes(long60, "phq9", post="m3")
    assert set(es["followup_wave"]) == {"m3"} and set(es["baseline_wave"]) == {"baseline"}
    assert set(responders(long60, "phq9", post="m3")["followup_wave"]) == {"m3"}
