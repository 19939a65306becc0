"""Fidelity checklists: definitions checked on load, answers validated, scores worked by hand."""

from __future__ import annotations

import doctest

import pytest

from instruments import checklist as cl
from instruments.model import InstrumentError, ValidationFailed

DELIVERY = [{"code": 0, "label": "no"}, {"code": 1, "label": "partly"}, {"code": 2, "label": "fully"}]
NA = {"code": 9, "label": "not applicable", "missing": True}


def small(**extra):
    return cl.checklist_from_dict(
        {
            "code": "demo",
            "name": "Demo",
            "version": "1",
            "option_sets": {"d": DELIVERY + [NA], "q": [{"code": c, "label": str(c)} for c in range(1, 6)]},
            "items": [
                {"code": "c1", "text": "core one", "component": "core", "options": "d", "required": True},
                {"code": "c2", "text": "core two", "component": "core", "options": "d"},
                {"code": "c3", "text": "core three", "component": "core", "options": "d"},
                {"code": "f1", "text": "form one", "component": "form", "options": "q"},
                {"code": "f2", "text": "form two", "component": "form", "options": "d"},
            ],
            **extra,
        }
    )


def test_docstring_examples():
    assert doctest.testmod(cl, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


def test_scores_by_hand():
    c = small()
    # core: c1=2, c2=1, c3=n/a -> answered 2 of 3 (>= ceil(0.8*3)=3? no) -> no core score
    s = {x.part: x for x in cl.score_checklist(c, {"c1": 2, "c2": 1, "c3": 9, "f1": 4, "f2": 2})}
    assert s["core"].value is None and s["core"].items_answered == 2 and s["core"].items_expected == 3
    # total: 4 of 5 answered (>= 4): (2-0)+(1-0)+(4-1)+(2-0) = 8 over spans 2+2+4+2 = 10
    assert s["total"].value == pytest.approx(80.0)
    # form: (4-1)+(2-0) = 5 over 4+2 = 6
    assert s["form"].value == pytest.approx(500 / 6)
    # all rated: core = (2+1+0)/6, core_full = 1 of 3 at the top option
    s = {x.part: x.value for x in cl.score_checklist(c, {"c1": 2, "c2": 1, "c3": 0, "f1": 1, "f2": 0})}
    assert s["core"] == pytest.approx(50.0) and s["core_full"] == pytest.approx(100 / 3)
    assert s["total"] == pytest.approx(100 * 3 / 12) and s["form"] == 0.0


def test_a_lower_threshold_scores_a_part_with_fewer_items():
    c = small(min_answered=0.5)
    s = {x.part: x.value for x in cl.score_checklist(c, {"c1": 2, "c2": 1})}
    assert s["core"] == pytest.approx(75.0) and s["form"] is None


def test_every_problem_named_by_item():
    c = small()
    with pytest.raises(ValidationFailed) as e:
        cl.score_checklist(c, {"c2": 3, "f1": 0, "zz": 1, "f2": "two"})
    got = {(p.loc, p.rule) for p in e.value.problems}
    assert got == {
        ("c1", "required"),
        ("c2", "out_of_range"),
        ("f1", "out_of_range"),
        ("zz", "unknown_item"),
        ("f2", "not_a_number"),
    }


@pytest.mark.parametrize(
    "change, message",
    [
        ({"items": []}, "items is required"),
        (
            {"min_answered": 0, "items": [{"code": "a", "text": "A", "component": "core", "options": DELIVERY}]},
            "min_answered",
        ),
        ({"items": [{"code": "a", "text": "A", "component": "core", "options": "nope"}]}, "unknown option set"),
        ({"items": [{"code": "a", "text": "A", "component": "both", "options": DELIVERY}]}, "component"),
        ({"items": [{"code": "a", "text": "A", "component": "core", "options": [NA, {"code": 1}]}]}, "two scored"),
        ({"items": [{"code": "a", "text": "A", "component": "form", "options": DELIVERY}]}, "core component"),
        (
            {"items": [{"code": "a", "text": "A", "component": "core", "options": DELIVERY}] * 2},
            "repeated",
        ),
    ],
)
def test_bad_definitions_are_refused(change, message):
    raw = {"code": "x", "name": "X", "version": "1", **change}
    with pytest.raises(InstrumentError, match=message):
        cl.checklist_from_dict(raw)


def test_shipped_checklist_round_trips():
    assert "peer_group_session" in cl.shipped_checklists()
    c = cl.load_checklist("peer_group_session")
    assert {it.component for it in c.items} == {"core", "form"}
    assert cl.checklist_from_dict(c.as_dict()) == c
