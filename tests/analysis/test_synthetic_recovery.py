"""The synthetic cohort: determinism, shape, and recovery of its known effects."""

import numpy as np
import pandas as pd

from analysis.frame import LONG_COLUMNS, cohort_frame
from analysis.synthetic import SimulationParams, simulate_cohort
from analysis.trajectories import ModerationModel, TrajectoryModel


def test_same_seed_same_cohort_and_different_seed_differs():
    a, b, c = simulate_cohort(seed=5), simulate_cohort(seed=5), simulate_cohort(seed=6)
    pd.testing.assert_frame_equal(a.participants, b.participants)
    assert a.responses == b.responses
    assert a.responses != c.responses


def test_cohort_contract(cohort300):
    p = cohort300.participants
    assert list(p.columns[:3]) == ["participant", "site", "arm"]
    assert p["participant"].iloc[0] == "DEMO-001"
    assert set(p["status"]) <= {"active", "withdrawn", "lost_to_follow_up", "completed"}
    assert p["enrolled_offset_days"].between(0, 120).all()
    dropped = p["status"].isin(["withdrawn", "lost_to_follow_up"])
    assert p.loc[dropped, "status_days"].notna().all() and p.loc[~dropped, "status_days"].isna().all()
    r = cohort300.responses[1]
    assert set(r) == {"participant", "wave", "instrument", "answers", "external_scores", "days_since_enrolment"}
    pam = next(x for x in cohort300.responses if x["instrument"] == "pam13")
    assert set(pam["answers"]) == {f"pam13_{i}" for i in range(1, 14)}
    assert "pam13_activation" in pam["external_scores"]
    for x in cohort300.responses:
        if x["instrument"] == "phq9":
            assert all(v is None or 0 <= v <= 3 for v in x["answers"].values())
        if x["instrument"] == "semcd6":
            assert all(v is None or 1 <= v <= 10 for v in x["answers"].values())


def test_isolated_participants_drop_out_more(cohort300):
    p = cohort300.participants
    rate = p.assign(d=p["status"].isin(["withdrawn", "lost_to_follow_up"])).groupby("baseline_isolated")["d"].mean()
    assert rate[True] > rate[False] + 0.1


def test_baseline_isolation_matches_scored_lsns6(cohort300, long300):
    b = long300[(long300["scale"] == "lsns6") & (long300["wave"] == "baseline")].set_index("participant")["value"]
    iso = cohort300.participants.set_index("participant")["baseline_isolated"]
    assert ((b < 12) == iso.loc[b.index]).all()


def test_scored_items_follow_the_latent_value(cohort300, long300):
    lat = cohort300.latent[cohort300.latent["answered"]].set_index(["participant", "wave"])
    for scale, col, tol in (("phq9", "phq9", 0.6), ("semcd6", "semcd", 0.25)):
        s = long300[long300["scale"] == scale].set_index(["participant", "wave"])["value"].dropna()
        latent = lat.loc[s.index, col]
        clipped = latent.clip(*((0, 27) if scale == "phq9" else (1, 10)))
        # Rounding to an attainable sum is the only gap between latent and scored value
        # (apart from rare prorated blanks).
        assert np.median(np.abs(s - clipped)) <= tol


def test_long_frame_has_export_shape(long300):
    assert list(long300.columns[: len(LONG_COLUMNS)]) == list(LONG_COLUMNS)
    assert {"phq9", "gad7", "semcd6", "pam13_activation", "lsns6"} <= set(long300["scale"])
    assert any(c.startswith("context_") for c in long300.columns)
    assert long300["completed_at"].dt.tz is not None
    cf = cohort_frame(long300, scales=["phq9", "gad7"])
    assert cf.groupby(["participant", "wave"], observed=True).size().max() == 1


def test_pam_slope_difference_recovered_within_ci():
    # Known effect: +6 vs +1 PAM points per year (no extra for isolation here): difference 5.
    params = SimulationParams(pam_slope_isolated_extra={"intervention": 0.0, "control": 0.0})
    from analysis.frame import long_from_synthetic

    long = long_from_synthetic(simulate_cohort(300, seed=11, params=params))
    m = TrajectoryModel("pam13_activation", random="slope").fit(long)
    sl = m.slopes().set_index("arm")
    for arm in ("group", "online"):
        assert sl.loc[arm, "diff_ci_lower"] < 5.0 < sl.loc[arm, "diff_ci_upper"], sl
        assert sl.loc[arm, "diff_p"] < 0.001
    assert sl.loc["usual_care", "ci_lower"] < 1.0 < sl.loc["usual_care", "ci_upper"]


def test_phq9_slope_difference_recovered_within_ci(long300):
    # Known effect: -3 vs -1 PHQ-9 points per year -> difference -2.
    sl = TrajectoryModel("phq9", random="slope").fit(long300).slopes().set_index("arm")
    lo = min(sl.loc[a, "diff_ci_lower"] for a in ("group", "online"))
    hi = max(sl.loc[a, "diff_ci_upper"] for a in ("group", "online"))
    assert lo < -2.0 < hi
    assert (sl.loc[["group", "online"], "diff"] < 0).all()


def test_moderation_recovers_extra_gain_of_isolated(long300):
    # Known: isolated participants in peer-support arms gain 2 more PAM points per year.
    long = long300.copy()
    base = long[(long["scale"] == "lsns6") & (long["wave"] == "baseline")].set_index("participant")["value"]
    long["isolated"] = long["participant"].map(base < 12).map({True: "yes", False: "no"})
    mm = ModerationModel("pam13_activation", "isolated", random="slope").fit(long)
    eff = mm.subgroup_effects.set_index(["level", "arm"])
    # Difference of the subgroup effects: a contrast of the fitted three-way interaction.
    names = mm.exog_names_
    idx = [i for i, n in enumerate(names) if n.startswith("years:") and n.count(":") == 2]
    b = mm.params_.to_numpy()[idx]
    se = np.sqrt(np.diag(mm.cov_params_)[idx])
    for est, s in zip(b, se, strict=True):
        assert est - 1.96 * s < 2.0 < est + 1.96 * s
    assert eff.loc[("yes", "group"), "effect"] > eff.loc[("no", "group"), "effect"] - 1.0
    assert set(mm.subgroup_slopes.columns) >= {"level", "arm", "slope", "se", "ci_lower", "ci_upper"}
