"""Worked examples: expected values are written down from the published scoring rules (see each
definition's ``source``/``notes``), never computed by the engine."""

import pytest

import instruments
from instruments import ValidationFailed

from .conftest import items


def one(instrument, answers, scale=None, **kw):
    scores = {s.scale: s for s in instruments.score(instrument, answers, **kw)}
    return scores[scale or instrument]


def spread(prefix, n, total, top):
    """n items whose codes sum to ``total`` (fill items with ``top`` from the left)."""
    out, left = {}, total
    for i in range(1, n + 1):
        v = min(top, left)
        out[f"{prefix}_{i}"] = v
        left -= v
    assert left == 0
    return out


# ---------------------------------------------------------------- PHQ-9
@pytest.mark.parametrize(
    "total,band",
    [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "moderately severe"),
        (19, "moderately severe"),
        (20, "severe"),
        (27, "severe"),
    ],
)
def test_phq9_band_edges(total, band):
    s = one("phq9", spread("phq9", 9, total, 3))
    assert (s.value, s.band, s.prorated, s.items_answered) == (total, band, False, 9)


def test_phq9_minimum_and_maximum():
    assert one("phq9", items("phq9", 9, 0)).value == 0
    assert one("phq9", items("phq9", 9, 3)).value == 27
    assert one("phq9", items("phq9", 9, 3)).level == 5


def test_phq9_prorating_two_missing_is_scored():
    # 7 answered, sum 10: 10 / 7 * 9 = 12.857 -> 13 (rounded half up)
    a = {"phq9_1": 3, "phq9_2": 3, "phq9_3": 2, "phq9_4": 1, "phq9_5": 1, "phq9_6": 0, "phq9_7": 0}
    s = one("phq9", a)
    assert (s.value, s.band, s.prorated, s.items_answered, s.items_expected) == (13, "moderate", True, 7, 9)


def test_phq9_three_missing_is_not_scored():
    a = {"phq9_1": 3, "phq9_2": 3, "phq9_3": 2, "phq9_4": 1, "phq9_5": 1, "phq9_6": 0, "phq9_7": None}
    s = one("phq9", a)
    assert s.value is None and s.band is None and "6 of 9" in s.missing_reason


def test_phq9_rounding_half_up():
    # 7 answered, sum 7: 7 / 7 * 9 = 9 exactly; 8 answered, sum 6: 6 / 8 * 9 = 6.75 -> 7
    assert one("phq9", items("phq9", 7, 1)).value == 9
    assert one("phq9", {**items("phq9", 6, 1), "phq9_7": 0, "phq9_8": 0}).value == 7


def test_phq9_item9_flag_and_difficulty_not_scored():
    s = one("phq9", {**items("phq9", 8, 0), "phq9_9": 1, "phq9_10": 3})
    assert s.value == 1 and s.flags == ["phq9_item9_positive"]
    assert one("phq9", {**items("phq9", 9, 0), "phq9_10": 3}).flags == []
    # the flag is raised even when the total cannot be scored
    s = one("phq9", {"phq9_9": 2})
    assert s.value is None and s.flags == ["phq9_item9_positive"]


# ---------------------------------------------------------------- GAD-7
@pytest.mark.parametrize(
    "total,band",
    [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "severe"),
        (21, "severe"),
    ],
)
def test_gad7_band_edges(total, band):
    s = one("gad7", spread("gad7", 7, total, 3))
    assert (s.value, s.band) == (total, band)


def test_gad7_missing_rule():
    # one missing: 6 answered, sum 8 -> 8 / 6 * 7 = 9.33 -> 9 (mild)
    s = one("gad7", {"gad7_1": 3, "gad7_2": 3, "gad7_3": 2, "gad7_4": 0, "gad7_5": 0, "gad7_6": 0})
    assert (s.value, s.band, s.prorated) == (9, "mild", True)
    assert one("gad7", items("gad7", 5, 3)).value is None
    assert one("gad7", {**items("gad7", 7, 0), "gad7_8": 3}).value == 0  # difficulty item not scored


# ---------------------------------------------------------------- PHQ-4
def test_phq4_subscales_and_total():
    scores = {s.scale: s for s in instruments.score("phq4", {"phq4_1": 1, "phq4_2": 2, "phq4_3": 0, "phq4_4": 2})}
    assert (scores["phq4_anxiety"].value, scores["phq4_anxiety"].band) == (3, "positive screen")
    assert (scores["phq4_depression"].value, scores["phq4_depression"].band) == (2, "negative screen")
    assert (scores["phq4"].value, scores["phq4"].band) == (5, "mild")


@pytest.mark.parametrize(
    "total,band",
    [
        (0, "normal"),
        (2, "normal"),
        (3, "mild"),
        (5, "mild"),
        (6, "moderate"),
        (8, "moderate"),
        (9, "severe"),
        (12, "severe"),
    ],
)
def test_phq4_total_band_edges(total, band):
    assert one("phq4", spread("phq4", 4, total, 3)).band == band


def test_phq4_all_items_required():
    scores = {s.scale: s for s in instruments.score("phq4", {"phq4_1": 1, "phq4_2": 2, "phq4_3": 0})}
    assert scores["phq4"].value is None
    assert scores["phq4_depression"].value is None
    assert scores["phq4_anxiety"].value == 3


# ---------------------------------------------------------------- PAM-13
def test_pam13_raw_min_max_and_extreme_flag():
    low = instruments.score("pam13", items("pam13", 13, 1))
    assert low[0].value == 13 and "pam13_extreme_pattern" in low[0].flags
    high = instruments.score("pam13", items("pam13", 13, 4))
    assert high[0].value == 52 and "pam13_extreme_pattern" in high[0].flags
    mixed = instruments.score("pam13", {**items("pam13", 12, 4), "pam13_13": 3})
    assert mixed[0].value == 51 and mixed[0].flags == []


def test_pam13_activation_needs_calibration_or_external_score():
    s = instruments.score("pam13", items("pam13", 13, 3))
    assert s[1].scale == "pam13_activation" and s[1].value is None
    assert "calibration" in s[1].missing_reason


def test_pam13_missing_threshold_and_na():
    # 10 answered (3 N/A): all 3 -> raw = 3 * 13 = 39, prorated
    s = one("pam13", {**items("pam13", 10, 3), **items("pam13", 3, 5, start=11)}, "pam13_raw")
    assert (s.value, s.items_answered, s.prorated) == (39, 10, True)
    # 9 answered -> not scored
    s = one("pam13", {**items("pam13", 9, 3), **items("pam13", 4, 5, start=10)}, "pam13_raw")
    assert s.value is None and s.items_answered == 9


@pytest.mark.parametrize(
    "value,level", [(0, 1), (47.0, 1), (47.1, 2), (55.1, 2), (55.2, 3), (67.0, 3), (67.1, 4), (100, 4)]
)
def test_pam13_level_cutoffs_external(value, level):
    s = one("pam13", items("pam13", 13, 3), "pam13_activation", external_scores={"pam13_activation": value})
    assert (s.value, s.level) == (value, level)


def test_pam13_external_out_of_range():
    with pytest.raises(ValidationFailed) as exc:
        instruments.score("pam13", items("pam13", 13, 3), external_scores={"pam13_activation": 100.5})
    assert [(p.loc, p.rule) for p in exc.value.problems] == [("pam13_activation", "external_out_of_range")]


def test_pam13_calibration_table(tmp_path):
    path = tmp_path / "pam.csv"
    path.write_text("raw_score,activation_score\n13,0\n39,60\n52,100\n")
    instruments.load_calibration(path, instrument="pam13")
    s = one("pam13", items("pam13", 13, 3), "pam13_activation")  # raw 39
    assert (s.value, s.level) == (60, 3)
    s = one("pam13", {**items("pam13", 12, 3), "pam13_13": 4}, "pam13_activation")  # raw 40: 60 + 40/13
    assert s.value == pytest.approx(60 + 40 / 13) and s.level == 3
    instruments.clear_calibration()
    assert one("pam13", items("pam13", 13, 3), "pam13_activation").value is None


# ---------------------------------------------------------------- SEMCD-6
def test_semcd6():
    assert one("semcd6", items("semcd6", 6, 1)).value == 1
    assert one("semcd6", items("semcd6", 6, 10)).value == 10
    s = one("semcd6", {"semcd6_1": 5, "semcd6_2": 6, "semcd6_3": 7, "semcd6_4": 8})
    assert (s.value, s.items_answered) == (6.5, 4)
    assert one("semcd6", {"semcd6_1": 5, "semcd6_2": 6, "semcd6_3": 7}).value is None


# ---------------------------------------------------------------- GSE
def test_gse():
    assert one("gse", items("gse", 10, 1)).value == 10
    assert one("gse", items("gse", 10, 4)).value == 40
    s = one("gse", items("gse", 7, 3))  # three missing: mean 3 x 10
    assert (s.value, s.prorated) == (30, True)
    s = one("gse", {**items("gse", 6, 3), "gse_7": 2})  # sum 20 over 7 -> 28.571...
    assert s.value == pytest.approx(200 / 7)
    assert one("gse", items("gse", 6, 4)).value is None


# ---------------------------------------------------------------- HLS-EU-Q16
@pytest.mark.parametrize(
    "easy,value,band",
    [
        (0, 0, "inadequate"),
        (8, 8, "inadequate"),
        (9, 9, "problematic"),
        (12, 12, "problematic"),
        (13, 13, "sufficient"),
        (16, 16, "sufficient"),
    ],
)
def test_hls_eu_q16_bands(easy, value, band):
    a = {f"hls_eu_q16_{i}": (4 if i <= easy else 2) for i in range(1, 17)}
    s = one("hls_eu_q16", a)
    assert (s.value, s.band) == (value, band)


def test_hls_eu_q16_dichotomy_and_missing():
    a = {f"hls_eu_q16_{i}": 3 for i in range(1, 17)}  # fairly easy counts as 1
    assert one("hls_eu_q16", a).value == 16
    a = {f"hls_eu_q16_{i}": 1 for i in range(1, 17)}  # very difficult counts as 0
    assert one("hls_eu_q16", a).value == 0
    # two "don't know" (5): 14 valid -> scored, count not prorated
    a = {**{f"hls_eu_q16_{i}": 4 for i in range(1, 15)}, "hls_eu_q16_15": 5, "hls_eu_q16_16": 5}
    s = one("hls_eu_q16", a)
    assert (s.value, s.items_answered, s.band) == (14, 14, "sufficient")
    # 13 valid -> not scored
    a = {**{f"hls_eu_q16_{i}": 4 for i in range(1, 14)}, "hls_eu_q16_14": 5, "hls_eu_q16_15": None}
    assert one("hls_eu_q16", a).value is None


# ---------------------------------------------------------------- HLS-EU-Q6
@pytest.mark.parametrize(
    "answers,value,band",
    [
        ([1] * 6, 1, "inadequate"),
        ([2] * 6, 2, "inadequate"),
        ([3, 2, 2, 2, 2, 2], 13 / 6, "problematic"),
        ([3] * 6, 3, "problematic"),
        ([4, 3, 3, 3, 3, 3], 19 / 6, "sufficient"),
        ([4] * 6, 4, "sufficient"),
    ],
)
def test_hls_eu_q6(answers, value, band):
    s = one("hls_eu_q6", {f"hls_eu_q6_{i}": v for i, v in enumerate(answers, 1)})
    assert s.value == pytest.approx(value) and s.band == band


def test_hls_eu_q6_missing():
    assert one("hls_eu_q6", {**items("hls_eu_q6", 5, 4), "hls_eu_q6_6": 5}).value == 4
    assert one("hls_eu_q6", {**items("hls_eu_q6", 4, 4), "hls_eu_q6_6": 5}).value is None


# ---------------------------------------------------------------- BHLS and SILS
def test_bhls():
    scores = {s.scale: s for s in instruments.score("bhls", {"bhls_1": 1, "bhls_2": 1, "bhls_3": 1})}
    assert scores["bhls"].value == 3 and scores["bhls_confidence_forms"].band == "adequate"
    scores = {s.scale: s for s in instruments.score("bhls", {"bhls_1": 5, "bhls_2": 5, "bhls_3": 5})}
    assert scores["bhls"].value == 15
    scores = {s.scale: s for s in instruments.score("bhls", {"bhls_1": 2, "bhls_2": 3})}
    assert scores["bhls"].value is None
    assert scores["bhls_help_reading"].band == "adequate"  # occasionally
    assert scores["bhls_confidence_forms"].band == "limited"  # somewhat
    assert scores["bhls_problems_learning"].value is None


@pytest.mark.parametrize(
    "code,band",
    [
        (1, "adequate reading ability"),
        (2, "adequate reading ability"),
        (3, "limited reading ability"),
        (5, "limited reading ability"),
    ],
)
def test_sils(code, band):
    assert one("sils", {"sils_1": code}).band == band


# ---------------------------------------------------------------- eHEALS
def test_eheals():
    assert one("eheals", items("eheals", 8, 1)).value == 8
    assert one("eheals", {**items("eheals", 8, 5), "eheals_9": 1, "eheals_10": 1}).value == 40
    assert one("eheals", items("eheals", 7, 5)).value is None


# ---------------------------------------------------------------- LSNS-6 and LSNS-18
def test_lsns6():
    s = {x.scale: x for x in instruments.score("lsns6", items("lsns6", 6, 0))}
    assert (s["lsns6"].value, s["lsns6"].band) == (0, "at risk of social isolation")
    assert s["lsns6_family"].band == "little family network"
    s = {x.scale: x for x in instruments.score("lsns6", items("lsns6", 6, 5))}
    assert (s["lsns6"].value, s["lsns6_family"].value, s["lsns6_friends"].value) == (30, 15, 15)
    # edges: total 11 at risk / 12 not; family 5 little / 6 adequate
    s = {
        x.scale: x
        for x in instruments.score(
            "lsns6", {"lsns6_1": 2, "lsns6_2": 2, "lsns6_3": 1, "lsns6_4": 2, "lsns6_5": 2, "lsns6_6": 2}
        )
    }
    assert (s["lsns6"].value, s["lsns6"].band) == (11, "at risk of social isolation")
    assert (s["lsns6_family"].value, s["lsns6_family"].band) == (5, "little family network")
    assert (s["lsns6_friends"].value, s["lsns6_friends"].band) == (6, "adequate friendship network")
    s = {x.scale: x for x in instruments.score("lsns6", items("lsns6", 6, 2))}
    assert (s["lsns6"].value, s["lsns6"].band) == (12, "not at risk")
    s = {x.scale: x for x in instruments.score("lsns6", items("lsns6", 5, 2))}
    assert s["lsns6"].value is None and s["lsns6_family"].value == 6 and s["lsns6_friends"].value is None


def test_lsns18():
    s = {x.scale: x for x in instruments.score("lsns18", items("lsns18", 18, 5))}
    assert (s["lsns18"].value, s["lsns18_family"].value, s["lsns18_neighbours"].value, s["lsns18_friends"].value) == (
        90,
        30,
        30,
        30,
    )
    assert one("lsns18", spread("lsns18", 18, 29, 5)).band == "at risk of social isolation"
    assert one("lsns18", spread("lsns18", 18, 30, 5)).band == "not at risk"
    assert one("lsns18", items("lsns18", 17, 5)).value is None


# ---------------------------------------------------------------- context
def test_context_validates_and_has_no_scores():
    a = {"context_age_band": 3, "context_living_situation": 1, "context_income_band": 99}
    assert instruments.validate("context", a) == []
    assert instruments.score("context", a) == []
    probs = instruments.validate("context", {"context_age_band": 12})
    assert [(p.loc, p.rule) for p in probs] == [("context_age_band", "not_an_option")]
