"""The CONSORT harms table: exact intervals against published values, counts against hand counts."""

from __future__ import annotations

import doctest

import pandas as pd
import pytest

import analysis.safety
from analysis.safety import clopper_pearson, harms_table


@pytest.mark.parametrize(
    "x, n, level, lower, upper",
    [
        # R stats::binom.test output (documented examples and their published printouts)
        (682, 925, 0.95, 0.7076683, 0.7654066),  # ?binom.test: Mendel's peas
        (9, 24, 0.95, 0.1879929, 0.5940636),
        (542, 3611, 0.90, 0.1403939, 0.1602214),
        (1, 1497, 0.90, 3.426347e-05, 3.164954e-03),
    ],
)
def test_clopper_pearson_matches_r_binom_test(x, n, level, lower, upper):
    lo, hi = clopper_pearson(x, n, alpha=1 - level)
    assert lo == pytest.approx(lower, rel=2e-6)
    assert hi == pytest.approx(upper, rel=2e-6)


@pytest.mark.parametrize(
    "x, n, lower, upper",
    [
        # Newcombe RG. Stat Med 1998;17:857-872, Table II, method 5 (exact, Clopper-Pearson)
        (81, 263, 0.2527, 0.3676),
        (15, 148, 0.0578, 0.1617),
        (0, 20, 0.0, 0.1684),
        (1, 29, 0.0009, 0.1776),
    ],
)
def test_clopper_pearson_matches_newcombe_1998(x, n, lower, upper):
    lo, hi = clopper_pearson(x, n)
    assert (round(lo, 4), round(hi, 4)) == (lower, upper)


def test_clopper_pearson_closed_forms_at_the_edges():
    # x = 0: upper = 1 - (alpha/2)^(1/n); x = n: lower = (alpha/2)^(1/n)
    assert clopper_pearson(0, 12) == (0.0, pytest.approx(1 - 0.025 ** (1 / 12)))
    assert clopper_pearson(12, 12) == (pytest.approx(0.025 ** (1 / 12)), 1.0)
    lo, hi = clopper_pearson(0, 0)
    assert lo != lo and hi != hi  # NaN
    with pytest.raises(ValueError):
        clopper_pearson(5, 4)


EVENTS = pd.DataFrame(
    [
        # participant, seriousness, severity, relatedness, action_taken
        ("A1", "", "mild", "not_related", "none"),
        ("A1", "hospitalisation", "severe", "probably", "intervention_paused"),
        ("A1", "", "mild", "possibly", "none"),
        ("A2", "other_important", "moderate", "unlikely", "intervention_stopped"),
        ("A3", "", "moderate", "definitely", "none"),
        ("B1", "death;life_threatening", "severe", "not_related", "withdrawn_from_study"),
        ("B2", "", "mild", "not_related", "none"),
        ("ZZ", "death", "severe", "definitely", "none"),  # not in the denominator
    ],
    columns=["participant", "seriousness", "severity", "relatedness", "action_taken"],
)
PEOPLE = pd.DataFrame(
    {
        "participant": [f"A{i}" for i in range(1, 11)] + [f"B{i}" for i in range(1, 9)],
        "arm": ["peer"] * 10 + ["usual"] * 8,
    }
)


def _get(table, arm, measure, level=None):
    row = table[(table.arm == arm) & (table.measure == measure) & ((table.level == level) if level else True)]
    assert len(row) == 1, (arm, measure, level)
    return tuple(row.iloc[0][["n_participants", "N", "n_events"]])


def test_harms_table_counts_participants_once_and_events_each_time():
    t = harms_table(EVENTS, PEOPLE)
    assert list(t.columns) == [
        "arm",
        "measure",
        "level",
        "n_participants",
        "N",
        "proportion",
        "ci_lower",
        "ci_upper",
        "n_events",
    ]
    # hand counts
    assert _get(t, "peer", "any") == (3, 10, 5)
    assert _get(t, "usual", "any") == (2, 8, 2)
    assert _get(t, "peer", "serious") == (2, 10, 2)
    assert _get(t, "usual", "serious") == (1, 8, 1)
    assert _get(t, "usual", "seriousness", "death") == (1, 8, 1)
    assert _get(t, "usual", "seriousness", "life_threatening") == (1, 8, 1)
    assert _get(t, "peer", "seriousness", "death") == (0, 10, 0)  # ZZ is outside the denominator
    assert _get(t, "peer", "related") == (2, 10, 3)  # A1 (probably, possibly), A3 (definitely)
    assert _get(t, "peer", "serious_related") == (1, 10, 1)
    assert _get(t, "peer", "relatedness", "unlikely") == (1, 10, 1)
    assert _get(t, "peer", "severity", "mild") == (1, 10, 2)
    assert _get(t, "peer", "discontinued") == (1, 10, 1)
    assert _get(t, "usual", "discontinued") == (1, 8, 1)
    any_peer = t[(t.arm == "peer") & (t.measure == "any")].iloc[0]
    assert any_peer["proportion"] == pytest.approx(0.3)
    assert (any_peer["ci_lower"], any_peer["ci_upper"]) == pytest.approx(clopper_pearson(3, 10))
    # 3/10 exact: 0.0667395 to 0.6524529 (binom.test(3, 10))
    assert any_peer["ci_lower"] == pytest.approx(0.0667395, abs=1e-6)
    assert any_peer["ci_upper"] == pytest.approx(0.6524529, abs=1e-6)


def test_harms_table_takes_arm_sizes_boolean_criteria_and_a_total():
    ev = EVENTS[EVENTS.participant != "ZZ"].copy()
    ev["arm"] = ev["participant"].str[0].map({"A": "peer", "B": "usual"})
    for c in ("death", "life_threatening", "hospitalisation", "other_important"):
        ev[c] = ev["seriousness"].str.contains(c)
    ev = ev.drop(columns="seriousness")
    t = harms_table(ev, {"peer": 10, "usual": 8}, total=True)
    assert _get(t, "peer", "serious") == (2, 10, 2)
    assert _get(t, "usual", "seriousness", "death") == (1, 8, 1)
    assert _get(t, "total", "any") == (5, 18, 7)
    with pytest.raises(ValueError, match="arm"):
        harms_table(ev.drop(columns="arm"), {"peer": 10})


def test_an_arm_without_events_has_zero_rows_with_an_upper_limit():
    t = harms_table(EVENTS.iloc[:0], PEOPLE)
    n, big_n, events = _get(t, "usual", "any")
    assert (n, big_n, events) == (0, 8, 0)
    row = t[(t.arm == "usual") & (t.measure == "any")].iloc[0]
    assert row["ci_lower"] == 0 and row["ci_upper"] == pytest.approx(1 - 0.025 ** (1 / 8))


def test_docstring_examples():
    assert doctest.testmod(analysis.safety, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0
