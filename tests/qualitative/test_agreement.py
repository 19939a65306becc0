"""Agreement statistics against published worked examples, and agreement on codings."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest

from qualitative.agreement import (
    agreement,
    cohens_kappa,
    disagreements,
    kappa_from_table,
    krippendorff_alpha,
    percent_agreement,
    unit_matrix,
)
from qualitative.codebook import Coding
from qualitative.transcripts import parse_text

n = None
# Krippendorff (2011) "Computing Krippendorff's Alpha-Reliability", section C:
# nominal data, 4 observers x 12 units, missing values. Published alpha = 0.743
# (nominal); the same paper gives 0.849 for the interval metric.
K2011_C = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
    [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
]
# Krippendorff (2004) Content Analysis, 11.3.1: binary data, two observers (Jon, Han), 10 units; alpha = 0.095.
K2004_BINARY = [[1, 1, 0, 0, 0, 0, 0, 0, 0, 0], [0, 1, 1, 0, 0, 1, 0, 1, 0, 0]]


def test_alpha_nominal_four_coders_missing_data():
    assert round(krippendorff_alpha(K2011_C), 3) == 0.743


def test_alpha_interval_same_data():
    ours = krippendorff_alpha(K2011_C, level="interval")
    assert round(ours, 3) == 0.849
    data = np.array([[np.nan if v is None else v for v in row] for row in K2011_C])
    assert ours == pytest.approx(krippendorff.alpha(reliability_data=data, level_of_measurement="interval"))


def test_alpha_binary_two_observers():
    assert round(krippendorff_alpha(K2004_BINARY), 3) == 0.095


def test_alpha_agrees_with_independent_package():
    rng = np.random.default_rng(3)
    data = rng.integers(0, 4, size=(3, 40)).astype(float)
    data[rng.random(data.shape) < 0.15] = np.nan
    ours = krippendorff_alpha([[None if np.isnan(v) else v for v in row] for row in data])
    assert ours == pytest.approx(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"), abs=1e-12)


def test_alpha_undefined_without_variation_or_pairs():
    assert np.isnan(krippendorff_alpha([[1, 1, 1], [1, 1, 1]]))
    assert np.isnan(krippendorff_alpha([[1, n], [n, 2]]))


def test_kappa_two_by_two_textbook():
    # 50 grant proposals, two readers: yes/yes 20, yes/no 5, no/yes 10, no/no 15
    # -> p_o = 0.70, p_e = 0.50, kappa = 0.40.
    assert kappa_from_table([[20, 5], [10, 15]]) == pytest.approx(0.4, abs=5e-4)


def test_kappa_three_by_three_textbook():
    # Three diagnostic categories, 100 subjects: p_o = 0.770, p_e = 0.336, kappa = 0.654.
    table = [[25, 3, 5], [6, 32, 8], [1, 0, 20]]
    assert round(kappa_from_table(table), 3) == 0.654


def test_kappa_from_labels_matches_table():
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohens_kappa(a, b) == pytest.approx(0.4)


def test_percent_agreement_ignores_unpairable_units():
    assert percent_agreement([[1, 1, 0, n], [1, 0, 0, 1]]) == pytest.approx(2 / 3)


@pytest.fixture
def two_coders():
    text = "\n".join(
        [
            "Interviewer: How was it?",
            "P01: I felt so lonely before the group.",
            "P01: Now I walk every day with them.",
            "P01: My sugars are better too.",
        ]
    )
    t = parse_text(text, id="p01", participant="P01")
    span = lambda i: (t.turns[i].start, t.turns[i].end)  # noqa: E731
    codings = [
        Coding("p01", "isolation", *span(1), "ana"),
        Coding("p01", "isolation", *span(1), "ben"),
        Coding("p01", "activity", *span(2), "ana"),
        Coding("p01", "activity", *span(3), "ben"),
        Coding("p01", "glycaemia", *span(3), "ana"),
        Coding("p01", "glycaemia", t.turns[3].start, t.turns[3].start + 9, "ben"),
    ]
    return t, codings


def test_agreement_per_code_and_overall_states_unit(two_coders):
    t, codings = two_coders
    table = agreement(codings, [t], unit="turn").set_index("code")
    assert set(table["unit"]) == {"turn"}
    assert (table["n_units"] == 4).all() and (table["n_coders"] == 2).all()
    # isolation and glycaemia: identical presence over 4 turns.
    assert table.loc["isolation", "percent_agreement"] == 1.0
    assert table.loc["isolation", "kappa"] == 1.0
    assert table.loc["glycaemia", "alpha"] == pytest.approx(1.0)
    # activity: ana turn 2, ben turn 3 -> agree on turns 0 and 1 only.
    act = table.loc["activity"]
    assert act["percent_agreement"] == 0.5
    assert act["kappa"] == pytest.approx(kappa_from_table([[2, 1], [1, 0]]))
    assert act["alpha"] == pytest.approx(krippendorff_alpha([[0, 0, 1, 0], [0, 0, 0, 1]]))
    # Overall pools 4 turns x 3 codes = 12 binary items, 10 of them agreed.
    overall = table.loc["(overall)"]
    assert overall["percent_agreement"] == pytest.approx(10 / 12)
    assert overall["kappa_method"] == "cohen"


def test_segment_unit_and_disagreement_listing(two_coders):
    t, codings = two_coders
    seg = agreement(codings, [t], unit="segment")
    assert set(seg["unit"]) == {"segment"}
    # Segments per code: isolation 1, activity 2 (ana's turn and ben's turn), glycaemia 1.
    assert seg.loc[seg["code"] == "(overall)", "n_units"].item() == 4
    by_code = seg.set_index("code")
    assert by_code.loc["activity", "n_units"] == 2 and by_code.loc["activity", "percent_agreement"] == 0.0
    assert by_code.loc["isolation", "percent_agreement"] == 1.0
    d = disagreements(codings, [t], unit="turn")
    assert d[["code", "unit_index"]].values.tolist() == [["activity", 2], ["activity", 3]]
    row = d.iloc[0]
    assert row["coded_by"] == ["ana"] and row["not_coded_by"] == ["ben"]
    assert row["text"] == "Now I walk every day with them."


def test_paragraph_unit_and_three_coders_use_light_kappa(two_coders):
    t, codings = two_coders
    codings = codings + [Coding("p01", "isolation", t.turns[1].start, t.turns[1].end, "cai")]
    table = agreement(codings, [t], unit="paragraph")
    assert set(table["kappa_method"]) == {"light"}
    mat = unit_matrix(codings, [t], unit="paragraph")
    assert list(mat.columns[-3:]) == ["ana", "ben", "cai"]


def test_agreement_needs_two_coders(two_coders):
    t, codings = two_coders
    with pytest.raises(ValueError, match="two coders"):
        agreement([c for c in codings if c.coder == "ana"], [t])
