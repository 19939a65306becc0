import io
import json

import jsonschema
import pytest
import yaml

import instruments
from instruments import InstrumentError, ValidationFailed
from instruments.loader import DEFINITIONS_DIR, SCHEMA_PATH, instrument_from_dict


def test_every_problem_at_once():
    probs = instruments.validate(
        "phq9",
        {"phq9_1": 4, "phq9_2": "two", "phq9_3": 1.5, "phq9_99": 1, "phq9_4": None, "phq9_5": True},
        external_scores={"phq9": 10},
    )
    assert [(p.loc, p.rule) for p in probs] == [
        ("phq9_1", "not_an_option"),
        ("phq9_2", "not_a_number"),
        ("phq9_3", "not_an_option"),
        ("phq9_99", "unknown_item"),
        ("phq9_5", "not_a_number"),
        ("phq9", "external_not_allowed"),
    ]
    with pytest.raises(ValidationFailed) as exc:
        instruments.score("phq9", {"phq9_1": 4, "phq9_99": 1})
    assert len(exc.value.problems) == 2


def test_external_score_rules():
    rules = lambda ext: [p.rule for p in instruments.validate("pam13", {}, external_scores=ext)]  # noqa: E731
    assert rules({"pam13_activation": 61.2}) == []
    assert rules({"pam13_activation": -1}) == ["external_out_of_range"]
    assert rules({"pam13_activation": "high"}) == ["not_a_number"]
    assert rules({"pam13_raw": 40}) == ["external_not_allowed"]


def test_numeric_strings_and_missing_options_are_valid():
    assert instruments.validate("phq9", {"phq9_1": "2", "phq9_2": float("nan")}) == []
    # PAM N/A (5) and HLS-EU don't know (5) are valid answers that count as unanswered
    assert instruments.validate("pam13", {"pam13_1": 5}) == []
    s = instruments.score("pam13", {f"pam13_{i}": 5 for i in range(1, 14)})
    assert s[0].value is None and s[0].items_answered == 0


def test_reverse_scoring_custom_instrument():
    inst = instrument_from_dict(
        {
            "code": "rev",
            "name": "Reverse demo",
            "version": "1",
            "citation": "-",
            "licence": "-",
            "option_sets": {
                "agree": [
                    {"code": 1, "label": "a"},
                    {"code": 2, "label": "b"},
                    {"code": 3, "label": "c"},
                    {"code": 4, "label": "d"},
                    {"code": 9, "label": "n/a", "missing": True},
                ]
            },
            "items": [{"code": "rev_1", "options": "agree"}, {"code": "rev_2", "options": "agree", "reverse": True}],
            "scales": [
                {
                    "code": "rev",
                    "label": "R",
                    "items": ["rev_1", "rev_2"],
                    "method": "sum",
                    "min_items": 2,
                    "range": [2, 8],
                }
            ],
        }
    )
    # rev_2 = 1 is scored 4 (1 + 4 - 1)
    assert instruments.score(inst, {"rev_1": 1, "rev_2": 1})[0].value == 5
    assert instruments.score(inst, {"rev_1": 4, "rev_2": 4})[0].value == 5
    assert instruments.score(inst, {"rev_1": 4, "rev_2": 1})[0].value == 8
    assert instruments.score(inst, {"rev_1": 4, "rev_2": 9})[0].value is None


def test_schema_accepts_every_definition():
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    files = sorted(DEFINITIONS_DIR.glob("*.yaml"))
    assert len(files) == 18  # 14 questionnaires, 4 clinical measures
    for path in files:
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)


@pytest.mark.parametrize(
    "mutation",
    [
        lambda d: d.pop("licence"),
        lambda d: d["scales"][0].update(method="median"),
        lambda d: d["items"][0].update(colour="red"),
        lambda d: d["scales"][0].update(items=["phq9_1", "nope"]),
    ],
)
def test_bad_definitions_are_refused(mutation):
    data = yaml.safe_load((DEFINITIONS_DIR / "phq9.yaml").read_text())
    mutation(data)
    with pytest.raises(InstrumentError):
        instrument_from_dict(data)


def test_load_wording_registers_process_wide():
    instruments.load_wording("pam13", io.StringIO("item_code,text\npam13_2,Licensed text two\n"))
    assert instruments.get("pam13").item("pam13_2").text == "Licensed text two"
    assert instruments.get("pam13").item("pam13_1").text is None
    instruments.unregister("pam13")
    assert instruments.get("pam13").item("pam13_2").text is None
    with pytest.raises(InstrumentError):
        instruments.load_wording("pam13", io.StringIO("item_code,text\npam13_99,x\n"))


def test_load_calibration_rejects_bad_tables():
    with pytest.raises(InstrumentError):
        instruments.load_calibration(io.StringIO("raw,value\n13,0\n13,5\n"))
    with pytest.raises(InstrumentError):
        instruments.load_calibration(io.StringIO("raw,activation\n13,0\n52,120\n"))
    with pytest.raises(InstrumentError):
        instruments.load_calibration(io.StringIO("x,y\n1,2\n"))
    with pytest.raises(InstrumentError):
        instruments.load_calibration(io.StringIO("raw,activation\n13,0\n"), instrument="phq9")
    cal = instruments.load_calibration(io.StringIO("pam13_raw,pam13_activation\n13,0\n52,100\n"))
    assert cal.scale == "pam13_activation"


def test_reverse_scoring_in_score_frame():
    import pandas as pd

    inst = instrument_from_dict(
        {
            "code": "rev",
            "name": "Reverse demo",
            "version": "1",
            "citation": "-",
            "licence": "-",
            "items": [
                {"code": "rev_1", "options": [{"code": c, "label": str(c)} for c in (0, 1, 3)]},
                {"code": "rev_2", "reverse": True, "options": [{"code": c, "label": str(c)} for c in (0, 1, 3)]},
            ],
            "scales": [
                {
                    "code": "rev",
                    "label": "R",
                    "items": ["rev_1", "rev_2"],
                    "method": "sum",
                    "min_items": 2,
                    "range": [0, 6],
                }
            ],
        }
    )
    df = pd.DataFrame({"rev_1": [0, 3, 1], "rev_2": [0, 1, 3]})
    # rev_2 mirrored by position: 0 -> 3, 1 -> 1, 3 -> 0
    assert instruments.score_frame(inst, df)["value"].tolist() == [3, 4, 1]
    assert [instruments.score(inst, r)[0].value for r in df.to_dict("records")] == [3, 4, 1]


def test_scored_items_mirror_reversed_items_and_drop_missing_codes_and_unscored_items():
    import pandas as pd

    inst = instrument_from_dict(
        {
            "code": "rev_items",
            "name": "Reverse items demo",
            "version": "1",
            "citation": "-",
            "licence": "-",
            "option_sets": {
                "agree": [
                    {"code": 1, "label": "a"},
                    {"code": 2, "label": "b"},
                    {"code": 4, "label": "d"},
                    {"code": 9, "label": "n/a", "missing": True},
                ]
            },
            "items": [
                {"code": "ri_1", "options": "agree"},
                {"code": "ri_2", "options": "agree", "reverse": True},
                {"code": "ri_note", "options": "agree"},  # in no scale
            ],
            "scales": [
                {
                    "code": "ri",
                    "label": "R",
                    "items": ["ri_1", "ri_2"],
                    "method": "sum",
                    "min_items": 1,
                    "range": [2, 8],
                }
            ],
        }
    )
    instruments.register(inst)
    try:
        answers = pd.DataFrame(
            {
                "participant": ["p1", "p1", "p1", "p2", "p2", "p2"],
                "wave": "m0",
                "instrument": "rev_items",
                "item": ["ri_1", "ri_2", "ri_note", "ri_1", "ri_2", "ri_2"],
                "value": [2, 1, 4, 9, "4", 3],
            }
        )
        out = instruments.scored_items(answers)
        # p1: ri_1 2 as is, ri_2 1 -> 4 (mirrored over 1, 2, 4); ri_note is in no scale.
        # p2: ri_1 9 is "n/a", ri_2 "4" -> 1, and 3 is not an option of ri_2.
        assert out.to_dict("list") == {
            "participant": ["p1", "p1", "p2"],
            "wave": ["m0"] * 3,
            "instrument": ["rev_items"] * 3,
            "item": ["ri_1", "ri_2", "ri_2"],
            "value": [2.0, 4.0, 1.0],
        }
        unknown = pd.DataFrame(
            {"participant": ["p3"], "wave": ["m0"], "instrument": ["not_registered"], "item": ["x"], "value": [1]}
        )
        assert instruments.scored_items(unknown).empty
        assert list(instruments.scored_items(unknown).columns) == ["participant", "wave", "instrument", "item", "value"]
    finally:
        instruments.unregister("rev_items")
