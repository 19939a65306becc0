"""Clinical measures: unit conversion, derived values, plausibility and warning flags.

Reference values are published ones (the NGSP/IFCC conversion table of the HbA1c master equation) or
worked by hand from the published equation (Enright & Sherrill 1998; WHO BMI), never the code's own
output.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fhir.resources.R4B.observation import Observation

from instruments import get, score, score_frame, validate
from instruments.clinical import bmi, ifcc_from_ngsp, ngsp_from_ifcc, six_minute_walk_predicted
from instruments.fhir import to_fhir_observations

# The NGSP/IFCC conversion table (HbA1c %, mmol/mol), as laboratories print it: mmol/mol to the
# whole number, % to one decimal.
NGSP_IFCC_TABLE = [
    (5.0, 31),
    (6.0, 42),
    (6.5, 48),
    (7.0, 53),
    (8.0, 64),
    (9.0, 75),
    (10.0, 86),
    (11.0, 97),
    (12.0, 108),
]


@pytest.mark.parametrize(("pct", "mmol"), NGSP_IFCC_TABLE)
def test_hba1c_master_equation_reproduces_the_conversion_table(pct, mmol):
    assert round(float(ifcc_from_ngsp(pct))) == mmol
    assert round(float(ngsp_from_ifcc(mmol)), 1) == pct


@pytest.mark.parametrize(("pct", "mmol"), NGSP_IFCC_TABLE)
def test_hba1c_entered_in_either_unit_scores_the_same_canonical_value(pct, mmol):
    from_pct = {s.scale: s for s in score("hba1c", {"hba1c_pct": pct})}
    from_mmol = {s.scale: s for s in score("hba1c", {"hba1c_mmol": mmol})}
    assert round(from_pct["hba1c"].value) == mmol  # canonical: mmol/mol
    assert from_mmol["hba1c"].value == mmol
    assert round(from_mmol["hba1c_pct"].value, 1) == pct  # both shown
    assert from_pct["hba1c_pct"].value == pct


@pytest.mark.parametrize(
    ("mmol", "band"),
    [(41, "normal"), (42, "at risk (prediabetes)"), (47.9, "at risk (prediabetes)"), (48, "diabetes range")],
)
def test_hba1c_bands_follow_the_who_thresholds(mmol, band):
    assert {s.scale: s for s in score("hba1c", {"hba1c_mmol": mmol})}["hba1c"].band == band


def test_implausible_values_are_refused_naming_the_item_and_rare_ones_flagged():
    assert [(p.loc, p.rule) for p in validate("hba1c", {"hba1c_pct": 25})] == [("hba1c_pct", "out_of_range")]
    assert [(p.loc, p.rule) for p in validate("hba1c", {"hba1c_mmol": 5})] == [("hba1c_mmol", "out_of_range")]
    assert [(p.loc, p.rule) for p in validate("blood_pressure", {"sbp_1": 300})] == [("sbp_1", "out_of_range")]
    assert [(p.loc, p.rule) for p in validate("blood_pressure", {"sbp_1": 59})] == [("sbp_1", "out_of_range")]
    assert validate("blood_pressure", {"sbp_1": 60, "dbp_1": 30}) == []
    # Plausible but rare: stored, with a warning flag on the score.
    high = {s.scale: s for s in score("hba1c", {"hba1c_pct": 15})}
    assert high["hba1c"].flags == ["hba1c_high"] and high["hba1c"].value is not None
    assert {s.scale: s for s in score("hba1c", {"hba1c_pct": 7})}["hba1c"].flags == []
    severe = {s.scale: s for s in score("blood_pressure", {"sbp_1": 182, "sbp_2": 178, "dbp_1": 100})}
    assert severe["sbp"].value == 180 and severe["sbp"].flags == ["sbp_severe"] and severe["dbp"].flags == []


def test_a_measure_in_two_units_at_once_is_refused_once():
    problems = validate("hba1c", {"hba1c_pct": 7.0, "hba1c_mmol": 53})
    assert [(p.loc, p.rule) for p in problems] == [("hba1c_mmol", "one_unit")]
    assert [(p.loc, p.rule) for p in validate("anthropometry", {"weight_kg": 70, "weight_lb": 154})] == [
        ("weight_lb", "one_unit")
    ]


def test_weight_and_height_convert_and_bmi_is_derived():
    # 154.324 lb = 70.0 kg (1 lb = 0.45359237 kg); 68.898 in = 175.0 cm; 70 / 1.75^2 = 22.857
    s = {x.scale: x for x in score("anthropometry", {"weight_lb": 154.324, "height_in": 68.898})}
    assert s["weight"].value == pytest.approx(70.0, abs=1e-3)
    assert s["height"].value == pytest.approx(175.0, abs=1e-3)
    assert s["bmi"].value == pytest.approx(70 / 1.75**2, abs=1e-3) and s["bmi"].band == "normal weight"
    assert float(bmi(100, 200)) == 25.0
    assert {x.scale: x for x in score("anthropometry", {"weight_kg": 75, "height_cm": 158})}["bmi"].band == "obese"
    missing = {x.scale: x for x in score("anthropometry", {"weight_kg": 70})}["bmi"]
    assert missing.value is None and "formula needs" in missing.missing_reason


def test_blood_pressure_is_the_mean_of_the_readings_given():
    s = {x.scale: x for x in score("blood_pressure", {"sbp_1": 150, "sbp_2": 144, "sbp_3": 141, "dbp_1": 90})}
    assert s["sbp"].value == 145 and s["sbp"].items_answered == 3 and s["dbp"].value == 90


def test_six_minute_walk_predicted_by_enright_and_sherrill_worked_by_hand():
    # Men: 7.57 x 175 - 5.02 x 60 - 1.76 x 80 - 309 = 1324.75 - 301.2 - 140.8 - 309 = 573.75 m.
    # Women: 2.11 x 160 - 2.29 x 65 - 5.78 x 60 + 667 = 337.6 - 148.85 - 346.8 + 667 = 508.95 m.
    assert float(six_minute_walk_predicted(1, 60, 175, 80)) == pytest.approx(573.75)
    assert float(six_minute_walk_predicted(2, 60, 160, 65)) == pytest.approx(508.95)
    s = {
        x.scale: x
        for x in score(
            "six_mwt",
            {"six_mwt_ft": 1500, "six_mwt_sex": 1, "six_mwt_age": 60, "six_mwt_height": 175, "six_mwt_weight": 80},
        )
    }
    assert s["six_mwt"].value == pytest.approx(457.2)  # 1500 ft x 0.3048
    assert s["six_mwt_predicted"].value == pytest.approx(573.75)
    assert s["six_mwt_pct_predicted"].value == pytest.approx(100 * 457.2 / 573.75)
    assert s["six_mwt_lln"].value == pytest.approx(573.75 - 153)
    # Without sex the prediction cannot be made; the distance itself still is.
    partial = {x.scale: x for x in score("six_mwt", {"six_mwt_m": 400})}
    assert partial["six_mwt"].value == 400 and partial["six_mwt_predicted"].value is None


def test_score_frame_scores_a_cohort_as_score_scores_one_response():
    rows = [{"hba1c_pct": 7.0}, {"hba1c_mmol": 64}, {"hba1c_pct": None}]
    frame = pd.DataFrame(rows).assign(rid=[1, 2, 3])
    out = score_frame("hba1c", frame, id_cols=["rid"])
    for rid, answers in zip((1, 2, 3), rows, strict=True):
        one = {s.scale: s.value for s in score("hba1c", {k: v for k, v in answers.items() if v is not None})}
        got = out[out["rid"] == rid].set_index("scale")["value"]
        for scale, value in one.items():
            assert (value is None and math.isnan(got[scale])) or got[scale] == pytest.approx(value)


def test_units_are_part_of_each_definition():
    assert get("hba1c").scale("hba1c").unit == "mmol/mol" and get("hba1c").scale("hba1c_pct").unit == "%"
    assert get("anthropometry").scale("bmi").unit == "kg/m2"
    assert get("six_mwt").scale("six_mwt").unit == "m"
    assert get("blood_pressure").item("sbp_1").unit == "mm[Hg]"


def test_fhir_observations_validate_and_carry_loinc_and_ucum():
    checks = {
        "hba1c": ({"hba1c_pct": 7.0}, {"59261-8": "mmol/mol", "4548-4": "%"}),
        "anthropometry": (
            {"weight_kg": 70, "height_cm": 175},
            {"29463-7": "kg", "8302-2": "cm", "39156-5": "kg/m2"},
        ),
        "blood_pressure": (
            {"sbp_1": 140, "dbp_1": 85, "heart_rate_bpm": 70},
            {"8480-6": "mm[Hg]", "8462-4": "mm[Hg]", "8867-4": "/min"},
        ),
        "six_mwt": ({"six_mwt_m": 420}, {"64098-7": "m"}),
    }
    for code, (answers, expected) in checks.items():
        obs = to_fhir_observations(
            code, score(code, answers), identifier=f"S1/P1/bl/{code}/1", subject="Patient/P1", effective="2026-01-05"
        )
        got = {}
        for o in obs:
            Observation.model_validate(o)  # raises on an invalid resource
            loinc = [c["code"] for c in o["code"]["coding"] if c["system"] == "http://loinc.org"]
            if loinc:
                assert o["valueQuantity"]["system"] == "http://unitsofmeasure.org"
                got[loinc[0]] = o["valueQuantity"]["code"]
        assert got == expected, code
    assert np.isclose(
        to_fhir_observations(
            "hba1c", score("hba1c", {"hba1c_mmol": 48}), identifier="x", subject="Patient/P1", effective="2026-01-05"
        )[1]["valueQuantity"]["value"],
        6.543,
        atol=1e-3,
    )
