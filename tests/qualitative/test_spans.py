"""Span agreement checked against the methods' own worked examples.

* Krippendorff (2004), Content Analysis 2nd ed., p. 254: two coders, categories c and k on a
  continuum of 300 (150-450): c Do 0.0144, De 0.0532, cu-alpha 0.7286; k cu-alpha 1.0 (De 0.0490);
  u-alpha 0.8591.
* Krippendorff (1995), Sociological Methodology 25, p. 57: four pairs of coders on a 24-unit
  continuum. Observed disagreements A 0.03125, B 2.26736, C 0.02777, D 0.38715; the digitized
  Bertha/Bill pair gives Cohen's kappa 0.385 and alpha 0.329, John/Jill kappa 0.385, Gerret/Gill
  kappa 0.314. The uα values at fine resolution (A 0.553, B -0.926, C 0.679, D 0.066) are those
  DKPro Statistics reproduces from the paper (to ±0.02).
"""

from __future__ import annotations

import pytest

from qualitative.codebook import Coding
from qualitative.spans import character_agreement, segment_agreement, unitized_alpha, unitized_alpha_continuum
from qualitative.transcripts import Transcript

# Krippendorff (1995) units: (start, length, coder, category) on a 24-unit continuum.
K1995 = [
    (2, 8, 0, "A"), (14, 6, 0, "A"), (4, 4, 1, "A"), (15, 2, 1, "A"),
    (0, 18, 0, "B"), (0, 2, 1, "B"), (2, 1, 1, "B"), (3, 1, 1, "B"), (4, 1, 1, "B"), (5, 1, 1, "B"),
    (6, 3, 1, "B"), (9, 1, 1, "B"),
    (2, 6, 0, "C"), (10, 2, 0, "C"), (14, 4, 0, "C"), (20, 2, 0, "C"),
    (0, 2, 1, "C"), (4, 4, 1, "C"), (10, 4, 1, "C"), (16, 2, 1, "C"), (20, 2, 1, "C"),
    (0, 2, 0, "D"), (2, 8, 0, "D"), (10, 4, 0, "D"), (14, 6, 0, "D"), (20, 4, 0, "D"),
    (0, 4, 1, "D"), (4, 4, 1, "D"), (8, 7, 1, "D"), (15, 2, 1, "D"), (17, 7, 1, "D"),
]  # fmt: skip


def _k1995(stretch: int, category: str) -> dict:
    units = {0: [], 1: []}
    for s, ln, coder, cat in K1995:
        if cat == category:
            units[coder].append((s * stretch, (s + ln) * stretch))
    return unitized_alpha_continuum(units, 0, 24 * stretch)


def _codings_2004():
    # Krippendorff (2004, p. 254), shifted from 150-450 to 0-300.
    spans = {
        ("c", "i"): [(225, 295), (370, 400)],
        ("c", "j"): [(220, 300), (355, 375), (400, 420)],
        ("k", "i"): [(180, 240), (300, 350)],
        ("k", "j"): [(180, 240), (300, 350)],
    }
    return [Coding("t", code, s - 150, e - 150, coder) for (code, coder), ss in spans.items() for s, e in ss]


def test_unitized_alpha_krippendorff_2004():
    table = unitized_alpha(_codings_2004(), [Transcript(id="t", text="x" * 300)]).set_index("code")
    assert table.loc["c", "do"] == pytest.approx(0.0144, abs=1e-4)
    assert table.loc["c", "de"] == pytest.approx(0.0532, abs=1e-4)
    assert table.loc["c", "alpha"] == pytest.approx(0.7286, abs=1e-4)
    assert table.loc["k", "do"] == 0.0 and table.loc["k", "alpha"] == 1.0
    assert table.loc["k", "de"] == pytest.approx(0.0490, abs=1e-4)
    assert table.loc["(overall)", "alpha"] == pytest.approx(0.8591, abs=5e-4)


def test_unitized_alpha_is_the_same_over_transcripts_laid_end_to_end():
    codings = _codings_2004()
    # The same codings split over two transcripts of 150 characters each.
    split = [
        Coding("a" if c.start < 150 else "b", c.code, c.start % 150, c.end - (0 if c.start < 150 else 150), c.coder)
        for c in codings
        if c.end <= 150 or c.start >= 150
    ]
    assert len(split) == len(codings)  # no unit crosses 150 in this example
    two = unitized_alpha(split, [Transcript(id="a", text="x" * 150), Transcript(id="b", text="x" * 150)])
    one = unitized_alpha(codings, [Transcript(id="t", text="x" * 300)])
    assert two["alpha"].tolist() == pytest.approx(one["alpha"].tolist())


@pytest.mark.parametrize(("category", "do"), [("A", 0.03125), ("B", 2.26736), ("C", 0.02777), ("D", 0.38715)])
def test_unitized_observed_disagreement_krippendorff_1995(category, do):
    assert _k1995(1, category)["do"] == pytest.approx(do, abs=1e-5)


@pytest.mark.parametrize(("category", "alpha"), [("A", 0.553), ("B", -0.926), ("C", 0.679), ("D", 0.066)])
def test_unitized_alpha_krippendorff_1995_fine_resolution(category, alpha):
    assert _k1995(50_000, category)["alpha"] == pytest.approx(alpha, abs=0.02)


@pytest.mark.parametrize(("category", "kappa"), [("A", 0.385), ("B", 0.385), ("C", 0.314)])
def test_character_kappa_is_cohens_kappa_on_the_digitized_continuum(category, kappa):
    t = Transcript(id="t", text="x" * 24)
    names = {0: "first", 1: "second"}
    codings = [Coding("t", cat, s, s + ln, names[c]) for s, ln, c, cat in K1995 if cat == category]
    row = character_agreement(codings, [t], coders=["first", "second"]).iloc[0]
    assert row["kappa"] == pytest.approx(kappa, abs=1e-3)
    if category == "A":
        assert row["alpha"] == pytest.approx(0.329, abs=1e-3)
        assert (row["both"], row["coded_a"], row["coded_b"], row["neither"]) == (6, 14, 6, 10)
        # QualCoder's kappa, by hand from its formula on the characters either coder coded (14):
        # Po = 6/14, Pe = (14/14 * 6/14) * (0/14 * 8/14) = 0, so kappa = 6/14.
        assert row["kappa_qualcoder"] == pytest.approx(6 / 14)
        assert row["agree_pct"] == pytest.approx(100 * 16 / 24)


def test_segment_threshold_as_maxqda_counts_it():
    t = Transcript(id="t", text="x" * 200)
    codings = [
        Coding("t", "support", 0, 100, "ana"),
        Coding("t", "support", 5, 100, "ben"),  # overlap 95/100
        Coding("t", "support", 120, 160, "ana"),
        Coding("t", "support", 130, 170, "ben"),  # overlap 30/50 = 60 %
        Coding("t", "travel", 10, 30, "ana"),  # ben never codes travel
    ]
    strict = segment_agreement(codings, [t], threshold=0.9).set_index("code")
    assert strict.loc["support", ["agreements", "disagreements", "total"]].tolist() == [2, 2, 4]
    assert strict.loc["travel", ["agreements", "total"]].tolist() == [0, 1]
    # Overall: 2 of 5 segments agree; chance 1/2 (two codes): kappa = (0.4 - 0.5) / 0.5.
    assert strict.loc["(overall)", "percent"] == pytest.approx(40.0)
    assert strict.loc["(overall)", "kappa"] == pytest.approx(-0.2)
    loose = segment_agreement(codings, [t], threshold=0.6).set_index("code")
    assert loose.loc["support", "agreements"] == 4
    assert (
        segment_agreement(codings, [t], threshold=0.6, min_chars=35).set_index("code").loc["support", "agreements"] == 2
    )  # the 30-character overlap is too short


def test_one_character_overlap_no_longer_counts_as_agreement():
    # Two coders who mark mostly different stretches of one long answer: the turn unit says
    # they agree perfectly; characters, segments and uα say they do not.
    text = "P01: " + "word " * 80
    t = Transcript(id="t", text=text)
    codings = [Coding("t", "benefit", 5, 200, "ana"), Coding("t", "benefit", 150, 400, "ben")]
    chars = character_agreement(codings, [t]).iloc[0]
    assert chars["both"] == 50 and chars["kappa"] < 0.2
    assert segment_agreement(codings, [t], threshold=0.9).iloc[0]["agreements"] == 0
    assert unitized_alpha(codings, [t]).iloc[0]["alpha"] < 0.5


def test_exactly_two_coders_for_pairwise_methods():
    t = Transcript(id="t", text="x" * 10)
    codings = [Coding("t", "a", 0, 5, c) for c in ("x", "y", "z")]
    with pytest.raises(ValueError, match="exactly two"):
        character_agreement(codings, [t])
    assert unitized_alpha(codings, [t]).iloc[0]["n_coders"] == 3
    with pytest.raises(ValueError, match="threshold"):
        segment_agreement(codings, [t], threshold=0, coders=["x", "y"])
