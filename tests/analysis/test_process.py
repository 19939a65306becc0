"""analysis.process against independent computations (numpy / scipy on the same numbers)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from analysis import process


@pytest.fixture
def dose():
    rng = np.random.default_rng(7)
    n = 40
    frame = pd.DataFrame(
        {
            "participant": [f"P{i:03d}" for i in range(n)],
            "arm": ["group"] * 20 + ["online"] * 20,
            "site": (["north", "south"] * 20),
            "wave": None,
            "sessions_attended": rng.integers(0, 11, n),
            "minutes_total": rng.integers(0, 900, n),
        }
    )
    frame["adherent"] = frame["sessions_attended"] >= 6
    waves = frame.assign(wave="m3", sessions_attended=99)  # interval rows must be ignored
    return pd.concat([frame, waves], ignore_index=True)


def test_dose_summary_matches_numpy(dose):
    out = process.dose_summary(dose, by=["arm", "site"])
    assert len(out) == 4
    for _, row in out.iterrows():
        v = dose[(dose["wave"].isna()) & (dose["arm"] == row["arm"]) & (dose["site"] == row["site"])][
            "sessions_attended"
        ].to_numpy(float)
        assert row["n"] == len(v)
        assert row["mean"] == pytest.approx(v.mean())
        assert row["sd"] == pytest.approx(v.std(ddof=1))
        assert row["median"] == pytest.approx(np.median(v))
        assert (row["q1"], row["q3"]) == pytest.approx(tuple(np.percentile(v, [25, 75])))
        assert row["any_dose"] == pytest.approx((v > 0).mean())
        assert row["adherent"] == pytest.approx((v >= 6).mean())


def test_reach_proportions_and_exact_intervals_match_scipy(dose):
    out = process.reach(dose, {"group": 50, "online": 45})
    overall = dose[dose["wave"].isna()]
    g = overall[overall["arm"] == "online"]
    adequate = out[(out["arm"] == "online") & (out["stage"] == "adequate_dose")].iloc[0]
    k = int((g["sessions_attended"] >= 6).sum())
    ci = binomtest(k, 45).proportion_ci(method="exact")
    assert adequate["n"] == k and adequate["proportion"] == pytest.approx(k / 45)
    assert (adequate["ci_lower"], adequate["ci_upper"]) == pytest.approx((ci.low, ci.high))
    assert out[(out["arm"] == "group") & (out["stage"] == "enrolled")]["n"].item() == 20
    with pytest.raises(ValueError, match="exceeds eligible"):
        process.reach(dose, {"group": 10})


def test_training_hours_by_site():
    t = pd.DataFrame(
        {
            "supporter": ["s1", "s1", "s1", "s2", "s2", "s3"],
            "site": ["n", "n", "n", "n", "n", "s"],
            "record": ["module", "assessment", "refresher", "module", "supervision", "module"],
            "hours": [3.0, 0.0, 1.5, 2.0, 0.5, 4.0],
            "score": [None, 80.0, None, None, None, None],
        }
    )
    by_site = process.training_hours(t, by="site").set_index("site")
    assert by_site.loc["n", "hours"] == 6.5  # supervision is not taught hours
    assert by_site.loc["n", "supervision"] == 1 and by_site.loc["n", "last_score"] == 80.0
    assert by_site.loc["s", "hours"] == 4.0 and not by_site.loc["s", "certified"]


def test_dose_by_tertile_splits_evenly_and_averages():
    d = pd.DataFrame({"participant": list("abcdefghi"), "sessions_attended": [9, 0, 4, 1, 8, 3, 2, 7, 5]})
    o = pd.DataFrame({"participant": list("abcdefghi"), "change": [9.0, 0, 4, 1, 8, 3, 2, 7, 5]})
    out = process.dose_by_tertile(d, o)
    assert out["n"].tolist() == [3, 3, 3]
    assert out["dose_mean"].tolist() == [1.0, 4.0, 8.0] and out["outcome_mean"].tolist() == [1.0, 4.0, 8.0]
