"""Alert rules: declared in definitions, checked when loaded, evaluated on answers and scores."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

import instruments
from instruments.alerts import AlertRule, evaluate, rule_problems
from instruments.loader import DEFINITIONS_DIR, instrument_from_dict
from instruments.model import InstrumentError

PHQ9 = instruments.get("phq9")


def codes(hits):
    return [h.rule.code for h in hits]


@pytest.mark.parametrize(
    "item9, expected", [(None, []), (0, []), (1, ["phq9_item9"]), (2, ["phq9_item9"]), (3, ["phq9_item9"])]
)
def test_any_positive_answer_to_item_9_alerts_whatever_the_total(item9, expected):
    answers = {f"phq9_{i}": 0 for i in range(1, 9)} | {"phq9_9": item9}
    assert codes(evaluate(PHQ9, answers)) == expected


@pytest.mark.parametrize(
    "answers, total, expected",
    [
        ({f"phq9_{i}": 2 for i in range(1, 10)} | {"phq9_9": 1}, 17, ["phq9_item9"]),  # 8 x 2 + 1
        ({f"phq9_{i}": 3 for i in range(1, 8)} | {"phq9_8": 0, "phq9_9": 0}, 21, ["phq9_severe"]),
        ({f"phq9_{i}": 2 for i in range(1, 9)} | {"phq9_9": 3, "phq9_1": 3}, 20, ["phq9_item9", "phq9_severe"]),
        ({f"phq9_{i}": 2 for i in range(1, 9)} | {"phq9_9": 0, "phq9_1": 3}, 17, []),
    ],
)
def test_total_of_20_or_more_alerts(answers, total, expected):
    [score] = instruments.score(PHQ9, answers)
    assert score.value == total
    assert codes(evaluate(PHQ9, answers)) == expected


def test_the_total_rule_reads_the_prorated_score_and_an_unscored_total_never_alerts():
    # 7 items answered at 3, items 8 and 9 blank: prorated 21 x 9/7 = 27
    seven = {f"phq9_{i}": 3 for i in range(1, 8)} | {"phq9_8": None, "phq9_9": None}
    hits = evaluate(PHQ9, seven)
    assert [(h.rule.code, h.observed) for h in hits] == [("phq9_severe", 27.0)]
    six = seven | {"phq9_7": None}  # three missing: not scored
    assert instruments.score(PHQ9, six)[0].value is None
    assert evaluate(PHQ9, six) == []


def test_study_rules_apply_to_their_instrument_only_and_once():
    gad = AlertRule("gad7_severe", "GAD-7 15+", "scale", "gad7", ">=", 15, instrument="gad7")
    severe = {f"gad7_{i}": 3 for i in range(1, 8)}  # 21
    assert codes(evaluate(instruments.get("gad7"), severe, extra=[gad, gad])) == ["gad7_severe"]
    assert codes(evaluate(instruments.get("gad7"), {f"gad7_{i}": 2 for i in range(1, 8)}, extra=[gad])) == []
    assert codes(evaluate(PHQ9, {f"phq9_{i}": 0 for i in range(1, 10)}, extra=[gad])) == []


def test_a_no_answer_option_never_meets_an_item_rule():
    ctx = instruments.get("context")
    rule = AlertRule("low_support", "x", "item", "context_expects_emotional", ">", 4, instrument="context")
    assert codes(evaluate(ctx, {"context_expects_emotional": 5}, extra=[rule])) == ["low_support"]
    assert evaluate(ctx, {"context_expects_emotional": 99}, extra=[rule]) == []  # "prefer not to say"


def test_rule_problems_name_what_is_wrong():
    gad = instruments.get("gad7")
    assert rule_problems(gad, AlertRule("a", "a", "scale", "gad7", ">=", 15)) == []
    assert rule_problems(gad, AlertRule("a", "a", "scale", "phq9", ">=", 15)) == ["unknown scale phq9"]
    assert rule_problems(gad, AlertRule("a", "a", "item", "gad7_9", ">", 0)) == ["unknown item gad7_9"]
    assert rule_problems(gad, AlertRule("a", "a", "both", "gad7", "~", 0)) == [
        "kind must be one of item, scale",
        "op must be one of >, >=, <, <=, ==",
    ]


def _phq9_definition():
    return yaml.safe_load((Path(DEFINITIONS_DIR) / "phq9.yaml").read_text(encoding="utf-8"))


def test_definitions_with_broken_alert_rules_fail_to_load():
    data = _phq9_definition()
    assert [a.code for a in instrument_from_dict(copy.deepcopy(data)).alerts] == ["phq9_item9", "phq9_severe"]
    bad = copy.deepcopy(data)
    bad["alerts"][0]["target"] = "phq9_99"
    with pytest.raises(InstrumentError, match="alert phq9_item9: unknown item phq9_99"):
        instrument_from_dict(bad)
    bad = copy.deepcopy(data)
    bad["alerts"][1]["op"] = "=>"
    with pytest.raises(InstrumentError, match="alerts/1/op"):
        instrument_from_dict(bad)
    bad = copy.deepcopy(data)
    bad["alerts"].append(copy.deepcopy(bad["alerts"][0]))
    with pytest.raises(InstrumentError, match="duplicate alert code phq9_item9"):
        instrument_from_dict(bad)
