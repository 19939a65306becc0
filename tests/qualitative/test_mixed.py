"""Quantitising codings and joint displays of themes against outcome change."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qualitative.codebook import Code, Codebook, Coding
from qualitative.mixed import (
    hedges_g,
    hedges_g_from_stats,
    joint_display,
    outcome_change,
    plot_joint_display,
    quantitise,
)
from qualitative.transcripts import parse_text


def test_hedges_g_textbook_example():
    # Borenstein, Hedges, Higgins & Rothstein (2009) Introduction to Meta-Analysis, ch. 4:
    # means 103 vs 100, SDs 5.5 and 4.5, n = 50 each -> d = 0.5970, g = 0.5924, SE(g) = 0.2028.
    r = hedges_g_from_stats(103, 5.5, 50, 100, 4.5, 50)
    assert round(r["d"], 4) == 0.5970
    assert round(r["g"], 4) == 0.5924
    assert round(r["se"], 4) == 0.2028
    assert r["ci_low"] == pytest.approx(0.5924 - 1.959964 * 0.2028, abs=1e-3)


def test_hedges_g_from_raw_data_matches_summary_form():
    x, y = [4.0, 6.0, 5.0, 7.0, 8.0], [3.0, 2.0, 4.0, 5.0]
    r = hedges_g(x, y)
    ref = hedges_g_from_stats(np.mean(x), np.std(x, ddof=1), 5, np.mean(y), np.std(y, ddof=1), 4)
    assert r["g"] == pytest.approx(ref["g"])
    assert np.isnan(hedges_g([1.0], [2.0, 3.0])["g"])


@pytest.fixture
def study():
    cb = Codebook(
        [
            Code("benefits", "Benefits", codable=False),
            Code("reduced_isolation", "Reduced isolation", parent="benefits"),
            Code("self_management", "Self-management", parent="benefits"),
        ]
    )
    lines = {
        "P01": "I don't feel alone any more, the group is like family.",
        "P02": "Less lonely. I look forward to Thursdays now.",
        "P03": "It was fine, nothing special.",
        "P04": "I check my feet and my sugars every day now.",
    }
    ts = [
        parse_text(f"Interviewer: How has it been?\n{p}: {s}", id=f"{p.lower()}-w2", participant=p, wave="w2")
        for p, s in lines.items()
    ]
    fg = parse_text(
        "Moderator: Anyone else?\nP05: Being with others who get it, I'm not alone.\nP06: Same.", id="fg1", wave="w2"
    )
    ts.append(fg)

    def whole(t, i, code):
        u = t.turns[i]
        return Coding(t.id, code, u.start, u.end, "ana")

    codings = [
        whole(ts[0], 1, "reduced_isolation"),
        whole(ts[0], 1, "reduced_isolation"),
        whole(ts[1], 1, "reduced_isolation"),
        whole(ts[3], 1, "self_management"),
        whole(fg, 1, "reduced_isolation"),
    ]
    rows = []
    change = {"P01": -6, "P02": -4, "P03": 0, "P04": -1, "P05": -5, "P06": 1}
    for p, d in change.items():
        rows += [
            {"participant": p, "arm": "peer", "wave": "w0", "scale": "phq9", "value": 12.0, "days": 0},
            {"participant": p, "arm": "peer", "wave": "w2", "scale": "phq9", "value": 12.0 + d, "days": 180},
            {"participant": p, "arm": "peer", "wave": "w0", "scale": "pam13", "value": 50.0, "days": 0},
            {"participant": p, "arm": "peer", "wave": "w2", "scale": "pam13", "value": 50.0 - d, "days": 182},
        ]
    rows.append({"participant": "P99", "arm": "control", "wave": "w0", "scale": "phq9", "value": 9.0, "days": 0})
    return cb, ts, codings, pd.DataFrame(rows), change


def test_quantitise_indicators_and_counts(study):
    cb, ts, codings, _, _ = study
    q = quantitise(codings, ts, codebook=cb).set_index("participant")
    assert list(q.columns) == [
        "code:reduced_isolation",
        "count:reduced_isolation",
        "code:self_management",
        "count:self_management",
    ]
    assert q.index.tolist() == ["P01", "P02", "P03", "P04", "P05", "P06"]
    assert q.loc["P01", "count:reduced_isolation"] == 2 and q.loc["P01", "code:reduced_isolation"] == 1
    assert q.loc["P05", "code:reduced_isolation"] == 1  # focus-group speaker
    assert q.loc["P06", "code:reduced_isolation"] == 0
    parent = quantitise(codings, ts, codes=["benefits"], codebook=cb, include_descendants=True)
    assert parent.set_index("participant").loc["P04", "code:benefits"] == 1
    # Joinable to a cohort frame on participant.
    cohort = pd.DataFrame({"participant": ["P01", "P03"], "arm": ["peer", "peer"]})
    assert cohort.merge(q.reset_index(), on="participant")["code:reduced_isolation"].tolist() == [1, 0]


def test_outcome_change_uses_first_and_last_observation(study):
    _, _, _, outcomes, change = study
    ch = outcome_change(outcomes).set_index(["participant", "scale"])
    assert ch.loc[("P02", "phq9"), "change"] == change["P02"]
    assert ("P99", "phq9") not in ch.index  # one observation: no change


def test_joint_display_table(study):
    cb, ts, codings, outcomes, change = study
    table = joint_display(codings, ts, outcomes, ["reduced_isolation"], codebook=cb, quotes=2)
    row = table.set_index("scale").loc["phq9"]
    with_ = [change[p] for p in ("P01", "P02", "P05")]
    without = [change[p] for p in ("P03", "P04", "P06")]
    assert (row["n_with"], row["n_without"]) == (3, 3)
    assert row["mean_change_with"] == pytest.approx(np.mean(with_))
    assert row["mean_change_without"] == pytest.approx(np.mean(without))
    ref = hedges_g_from_stats(np.mean(with_), np.std(with_, ddof=1), 3, np.mean(without), np.std(without, ddof=1), 3)
    assert row["hedges_g"] == pytest.approx(ref["g"]) and row["hedges_g"] < 0
    assert row["ci_low"] < row["hedges_g"] < row["ci_high"]
    assert row["theme_name"] == "Reduced isolation"
    assert len(row["quotes"]) == 2 and len({q.split("(")[-1] for q in row["quotes"]}) == 2
    assert all(q.startswith("“") for q in row["quotes"])
    assert table.set_index("scale").loc["pam13", "hedges_g"] == pytest.approx(-row["hedges_g"])


def test_joint_display_default_themes_are_top_level(study):
    cb, ts, codings, outcomes, _ = study
    table = joint_display(codings, ts, outcomes, codebook=cb)
    assert set(table["theme"]) == {"benefits"}
    assert table.set_index("scale").loc["phq9", "n_with"] == 4  # P01, P02, P04, P05


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_plot_saved(study, tmp_path, suffix, magic):
    cb, ts, codings, outcomes, _ = study
    table = joint_display(codings, ts, outcomes, ["reduced_isolation", "self_management"], codebook=cb)
    path = tmp_path / f"joint{suffix}"
    fig = plot_joint_display(table, path)
    assert path.read_bytes().startswith(magic) and path.stat().st_size > 1000
    assert len(fig.axes) == 1
