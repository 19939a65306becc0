"""Complete or partial: each instrument's missing-data rule (min_items of its YAML definition)."""

from __future__ import annotations

import doctest
import importlib

import pytest

import instruments

# the module (instruments.completeness is the function the package exports)
module = importlib.import_module("instruments.completeness")


def test_doctests():
    assert doctest.testmod(module).failed == 0


@pytest.mark.parametrize(
    "code, answered, expected",
    [
        ("semcd6", 0, "partial"),
        ("semcd6", 3, "partial"),  # "at least 4 of 6" (Lorig 2001)
        ("semcd6", 4, "complete"),
        ("gad7", 3, "partial"),
        ("gad7", 5, "partial"),
        ("gad7", 6, "complete"),  # one missing item is prorated
        ("phq9", 6, "partial"),
        ("phq9", 7, "complete"),
        ("pam13", 9, "partial"),
        ("pam13", 10, "complete"),
    ],
)
def test_threshold_is_the_definitions_min_items(code, answered, expected):
    inst = instruments.get(code)
    items = [it for it in inst.items if it.scored][:answered]
    answers = {it.code: min(o.code for o in it.options if not o.missing) for it in items}
    assert instruments.completeness(code, answers) == expected


def test_missing_options_do_not_count_as_answers():
    # PAM-13 "Not applicable" (code 5) is stored but is not an answer for scoring
    answers = {f"pam13_{i}": 5 for i in range(1, 14)}
    assert instruments.completeness("pam13", answers) == "partial"
    assert instruments.missing_rules("pam13", answers) == ["pam13_raw", "pam13_activation"]


def test_an_external_score_stands_for_the_items():
    assert instruments.completeness("pam13", {}, external_scores={"pam13_activation": 61.2}) == "complete"


def test_instruments_without_scales_need_one_answer():
    item = instruments.get("context").items[0]
    assert instruments.completeness("context", {}) == "partial"
    assert instruments.completeness("context", {item.code: item.options[0].code}) == "complete"


def test_a_clinical_visit_that_measured_one_thing_is_complete():
    assert instruments.completeness("anthropometry", {"weight_kg": 82.5}) == "complete"
    assert instruments.completeness("hba1c", {"hba1c_pct": 7.1}) == "complete"
    assert instruments.completeness("anthropometry", {}) == "partial"
    assert instruments.completeness("blood_pressure", {"sbp_1": 132, "dbp_1": 84}) == "complete"
    assert instruments.completeness("blood_pressure", {"heart_rate_bpm": None}) == "partial"
