"""Joint displays: trajectory × theme matrix, case matrix, BH adjustment, HTML."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from qualitative.codebook import Code, Codebook, Coding
from qualitative.joint import (
    adjust_joint_display,
    bh_adjust,
    case_matrix,
    joint_display_html,
    trajectory_theme_matrix,
)
from qualitative.mixed import joint_display
from qualitative.transcripts import parse_text

LINES = [
    "I felt less alone once I joined.",
    "Seeing others cope made me feel less lonely.",
    "Honestly the group was a lifeline for me.",
    "I stopped feeling like the only one.",
]


@pytest.fixture
def world():
    rng = np.random.default_rng(7)
    transcripts, codings, rows = [], [], []
    for i in range(24):
        pid = f"P{i:02d}"
        arm = "group" if i % 2 == 0 else "usual_care"
        line = LINES[i % 4] + f" Week {i}."
        t = parse_text(f"Interviewer: How was it?\n{pid}: {line}", id=f"t{i}", participant=pid)
        transcripts.append(t)
        start = t.text.index(line)
        if i % 3 != 0:
            codings.append(Coding(t.id, "isolation", start, start + len(line), "ana"))
        if i % 4 == 0:
            codings.append(Coding(t.id, "travel", start, start + 10, "ana"))
        base = 50 + rng.normal(0, 5)
        delta = [8, 0, -7][i % 3]
        rows += [
            {"participant": pid, "arm": arm, "wave": "baseline", "scale": "pam13", "value": base, "days": 0},
            {"participant": pid, "arm": arm, "wave": "m6", "scale": "pam13", "value": base + delta, "days": 180},
        ]
    cb = Codebook([Code("isolation", "Reduced isolation"), Code("travel", "Travel")])
    return transcripts, codings, pd.DataFrame(rows), cb


def test_trajectory_matrix_counts_prevalence_and_distinct_quotes(world):
    ts, cs, out, cb = world
    m = trajectory_theme_matrix(cs, ts, out, ["isolation", "travel"], scale="pam13", mcid=4, codebook=cb, quotes=2)
    assert set(m["trajectory"]) == {"improved", "no change", "worsened"} and set(m["arm"]) == {"group", "usual_care"}
    # By construction: i % 3 == 0 improved (+8), 1 no change, 2 worsened; isolation coded unless i % 3 == 0.
    cell = m.set_index(["trajectory", "theme", "arm"])
    assert cell.loc[("improved", "isolation", "group"), "n_group"] == 4
    assert cell.loc[("improved", "isolation", "group"), "n_theme"] == 0
    assert cell.loc[("worsened", "isolation", "usual_care"), "prevalence"] == 1.0
    for (traj, _theme, arm), r in cell.iterrows():
        ids = {int(p[1:]) for p in r["participants"]}
        assert all([0, 1, 2][i % 3] == ["improved", "no change", "worsened"].index(traj) for i in ids)
        assert all((i % 2 == 0) == (arm == "group") for i in ids)
    quotes = [q for qs in m["quotes"] for q in qs]
    assert quotes and len(quotes) == len(set(quotes))  # never the same quote in two cells
    assert all(len(qs) <= 2 for qs in m["quotes"])


def test_case_matrix_sorts_and_carries_case_variables(world):
    ts, cs, out, cb = world
    dose = {f"P{i:02d}": {"sessions": i % 5} for i in range(24)}
    m = case_matrix(cs, ts, out, ["isolation", "travel"], scale="pam13", mcid=4, codebook=cb,
                    case_variables=dose, sort_by=["sessions", "participant"])  # fmt: skip
    assert list(m.columns[:6]) == ["participant", "arm", "trajectory", "baseline", "followup", "change"]
    assert {"theme:isolation", "theme:travel", "sessions"} <= set(m.columns)
    assert m["sessions"].is_monotonic_increasing and len(m) == 24
    assert m.loc[m["participant"] == "P03", "theme:isolation"].item() == 0
    with pytest.raises(KeyError):
        case_matrix(cs, ts, out, ["isolation"], scale="pam13", mcid=4, sort_by=["nope"])


def test_bh_matches_statsmodels():
    p = np.random.default_rng(3).uniform(0, 0.2, 40)
    p[[3, 9]] = np.nan
    ok = ~np.isnan(p)
    expected = multipletests(p[ok], method="fdr_bh")[1]
    got = bh_adjust(p)
    assert np.isnan(got[3]) and np.isnan(got[9])
    assert np.allclose(got[ok], expected)


def test_adjusted_joint_display_uses_welch_and_warns(world):
    ts, cs, out, cb = world
    table = joint_display(cs, ts, out, ["isolation", "travel"], codebook=cb)
    adj = adjust_joint_display(table)
    # Welch's p from the raw changes (an independent computation).
    change = out.pivot_table(index="participant", columns="wave", values="value")
    change = (change["m6"] - change["baseline"]).rename("change")
    coded = {c.transcript for c in cs if c.code == "isolation"}
    with_ = [change[f"P{int(t[1:]):02d}"] for t in coded]
    without = [change[f"P{i:02d}"] for i in range(24) if f"t{i}" not in coded]
    expected = stats.ttest_ind(with_, without, equal_var=False).pvalue
    row = adj.set_index("theme").loc["isolation"]
    assert row["p"] == pytest.approx(expected)
    assert np.allclose(adj["p_bh"], multipletests(adj["p"], method="fdr_bh")[1])
    assert all("2 tests in this table" in w for w in adj["warning"])
    small = adj.set_index("theme").loc["travel"]
    assert small["n_with"] == 6 and "small groups" not in small["warning"]
    assert "small groups" in adjust_joint_display(table, small_n=7).set_index("theme").loc["travel", "warning"]


def test_html_fragment_escapes_everything():
    frag = joint_display_html(
        pd.DataFrame({"theme": ["<script>x</script>"], "p": [0.01234], "quotes": [["“a & b” (P1)"]]}), caption="T"
    )
    assert frag.startswith('<table class="joint-display"><caption>T</caption>')
    assert "<script>" not in frag and "&lt;script&gt;" in frag and "a &amp; b" in frag and "0.0123" in frag


def test_reliable_change_index_groups(world):
    ts, cs, out, cb = world
    from qualitative.joint import reliable_change_threshold

    base = out[out["wave"] == "baseline"]["value"].to_numpy()
    # Jacobson & Truax by hand: 1.96 * SD * sqrt(2 * (1 - r)).
    r = 0.8
    by_hand = 1.96 * base.std(ddof=1) * (2 * (1 - r)) ** 0.5
    assert reliable_change_threshold(base, r) == pytest.approx(by_hand)
    m = case_matrix(cs, ts, out, ["isolation"], scale="pam13", reliability=r, codebook=cb)
    expected = ["improved" if c >= by_hand else "worsened" if c <= -by_hand else "no change" for c in m["change"]]
    assert m["trajectory"].tolist() == expected
    with pytest.raises(ValueError, match="mcid or reliability"):
        case_matrix(cs, ts, out, ["isolation"], scale="pam13", codebook=cb)
