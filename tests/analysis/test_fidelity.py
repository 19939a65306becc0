"""Fidelity over time and rater agreement, checked against hand computations and scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from analysis.fidelity import fidelity_over_time, item_agreement, score_agreement


def _ratings():
    rows = [
        # session, rater, supporter, site, date, total
        (1, "e1", "S1", "north", "2026-01-05", 80.0),
        (1, "e2", "S1", "north", "2026-01-05", 70.0),
        (2, "e1", "S1", "north", "2026-01-19", 90.0),
        (3, "e1", "S2", "south", "2026-01-12", 50.0),
        (4, "e2", "S2", "south", "2026-02-09", 60.0),
        (5, "e1", "S2", "south", "2026-02-23", 100.0),
    ]
    df = pd.DataFrame(rows, columns=["session", "rater", "supporter", "site", "session_date", "value"])
    df["part"] = "total"
    df["session_date"] = pd.to_datetime(df["session_date"])
    df["session_day"] = (df["session_date"] - pd.Timestamp("2026-01-01")).dt.days
    return df


def test_over_time_by_supporter_and_month():
    t = fidelity_over_time(_ratings(), by="supporter", period="month")
    got = {(r.supporter, r.period): (r.n_sessions, r.mean, r.n_double_rated) for r in t.itertuples()}
    # S1 January: session 1 is the mean of its two raters (75), session 2 is 90 -> 82.5
    assert got == {("S1", "2026-01"): (2, 82.5, 1), ("S2", "2026-01"): (1, 50.0, 0), ("S2", "2026-02"): (2, 80.0, 0)}
    s1 = t[(t.supporter == "S1")].iloc[0]
    assert s1["sd"] == pytest.approx(np.std([75, 90], ddof=1))
    half = 12.706204736174698 * s1["sd"] / np.sqrt(2)  # t(0.975, 1)
    assert s1["ci_lower"] == pytest.approx(82.5 - half) and s1["ci_upper"] == pytest.approx(82.5 + half)


def test_over_time_by_site_in_four_week_blocks_and_by_session():
    t = fidelity_over_time(_ratings(), by="site", period=28)
    got = {(r.site, r.period): r.mean for r in t.itertuples()}
    # days since 1 January: 4, 18 (north); 11 | 39, 53 (south)
    assert got == {("north", 0): 82.5, ("south", 0): 50.0, ("south", 28): 80.0}
    per_session = fidelity_over_time(_ratings(), by="session", period=None)
    assert per_session["mean"].tolist() == [75.0, 90.0, 50.0, 60.0, 100.0]
    whole = fidelity_over_time(_ratings(), by=None, period=None)
    assert whole["mean"].iloc[0] == pytest.approx(np.mean([75, 90, 50, 60, 100]))
    with pytest.raises(ValueError, match="period"):
        fidelity_over_time(_ratings(), period="fortnight")


def _double_items(seed=3, sessions=30, items=6):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(sessions):
        for i in range(items):
            truth = rng.integers(0, 3)
            r1 = truth if rng.random() < 0.8 else rng.integers(0, 3)
            r2 = truth if rng.random() < 0.8 else rng.integers(0, 3)
            comp = "core" if i < 4 else "form"
            rows += [(s, "ann", f"i{i}", comp, float(r1)), (s, "bob", f"i{i}", comp, float(r2))]
        rows.append((s + 1000, "ann", "i0", "core", 2.0))  # single-rated: ignored
    return pd.DataFrame(rows, columns=["session", "rater", "item", "component", "value"])


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_item_agreement_equals_scikit_learn(weights):
    d = _double_items()
    t = item_agreement(d, weights=weights)
    pooled = t[t.scope == "all"].iloc[0]
    pairs = d[d.session < 1000].pivot_table(index=["session", "item"], columns="rater", values="value")
    want = cohen_kappa_score(pairs["ann"], pairs["bob"], weights=weights)
    assert pooled["kappa"] == pytest.approx(want, abs=1e-10)
    assert pooled["n_pairs"] == 180 and pooled["n_sessions"] == 30
    assert pooled["percent_agreement"] == pytest.approx(100 * (pairs["ann"] == pairs["bob"]).mean())
    core = pairs[pairs.index.get_level_values("item").isin(["i0", "i1", "i2", "i3"])]
    got = t[(t.scope == "component") & (t.item == "core")].iloc[0]["kappa"]
    assert got == pytest.approx(cohen_kappa_score(core["ann"], core["bob"], weights=weights, labels=[0, 1, 2]))


def test_item_agreement_leaves_out_unrated_items():
    d = _double_items(sessions=5)
    d.loc[(d.session == 0) & (d.item == "i0") & (d.rater == "bob"), "value"] = np.nan
    assert item_agreement(d).query("scope == 'all'")["n_pairs"].iloc[0] == 5 * 6 - 1


def test_score_agreement_equals_hand_worked_icc():
    pairs = np.array([[70, 75], [90, 85], [60, 65], [100, 95], [80, 70], [55, 60]], float)
    rows = [(s, r, "total", pairs[s, j]) for s in range(len(pairs)) for j, r in enumerate(["x", "y"])]
    t = score_agreement(pd.DataFrame(rows, columns=["session", "rater", "part", "value"]))
    n, k = pairs.shape
    grand = pairs.mean()
    ss_rows = k * ((pairs.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((pairs.mean(axis=0) - grand) ** 2).sum()
    ss_total = ((pairs - grand) ** 2).sum()
    msr = ss_rows / (n - 1)
    msw = (ss_total - ss_rows) / (n * (k - 1))
    msc = ss_cols / (k - 1)
    mse = (ss_total - ss_rows - ss_cols) / ((n - 1) * (k - 1))
    icc1 = (msr - msw) / (msr + (k - 1) * msw)
    icc2 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    got = dict(zip(t["type"], t["icc"], strict=True))
    assert got["ICC1"] == pytest.approx(icc1) and got["ICC2"] == pytest.approx(icc2)
    assert (t["n_sessions"] == 6).all()


def test_score_agreement_needs_three_double_rated_sessions():
    d = _ratings()
    assert score_agreement(d).empty
