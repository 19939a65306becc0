"""Whether a response is complete enough to count: each instrument's own missing-data rule.

A response is **complete** when every scale of the instrument meets its minimum of answered items
(``min_items``, the missing-data rule of the definition; a scale with a value also counts, e.g. one
supplied as an external score) and every item marked ``required`` is answered. Otherwise it is
**partial**: it can be stored and resumed, but it does not complete a wave. An instrument without
scales (e.g. context questions) is complete when its required items are answered and at least one
item is.

Clinical measures (scales with a ``unit``: weight, height, blood pressure, heart rate, HbA1c, walk
distance) are recorded one by one: such a response is complete when at least one measure meets
its rule (values derived from others, like BMI, are not required).

An external score stands for items answered elsewhere (the licensed PAM software): when every
scale that accepts one has it, the response is complete whatever items were sent.

Examples
--------
>>> import instruments
>>> status("gad7", {"gad7_1": 1, "gad7_2": 0, "gad7_3": 2})
'partial'
>>> status("gad7", {f"gad7_{i}": 1 for i in range(1, 7)})  # one item missing: prorated, complete
'complete'
>>> status("semcd6", {})
'partial'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .model import Instrument, Score

COMPLETE = "complete"
PARTIAL = "partial"


def _answered(inst: Instrument, code: str, value: Any) -> bool:
    if value is None or value == "" or value == []:
        return False
    try:
        item = inst.item(code)
    except KeyError:
        return False
    missing = {o.code for o in item.options if o.missing}
    return not (isinstance(value, int | float) and value in missing)


def missing_rules(
    instrument: str | Instrument,
    answers: Mapping[str, Any],
    scores: Sequence[Score] | None = None,
    external_scores: Mapping[str, Any] | None = None,
) -> list[str]:
    """The codes of the scales (and required items) whose rule the answers do not meet.

    ``scores`` are the instrument's scores of these answers (computed when absent).
    """
    from .engine import score
    from .registry import get

    inst = get(instrument) if isinstance(instrument, str) else instrument
    if scores is None:
        scores = score(inst, answers, external_scores)
    external = [sc for sc in inst.scales if sc.external]
    given = {k for k, v in (external_scores or {}).items() if v is not None}
    if external and all(sc.code in given for sc in external):
        return []
    by_scale = {s.scale: s for s in scores}

    def met(sc) -> bool:
        s = by_scale.get(sc.code)
        return s is not None and (s.value is not None or s.items_answered >= sc.min_items)

    unmet: list[str] = []
    measures = [sc for sc in inst.scales if sc.unit and sc.method != "derived"]
    if measures:
        # Clinical measures are recorded one by one: a visit that measured weight but not height,
        # or blood pressure but not heart rate, is a complete record of what was measured.
        if not any(met(sc) for sc in measures):
            unmet.extend(sc.code for sc in measures)
    else:
        unmet.extend(sc.code for sc in inst.scales if not met(sc))
    for it in inst.items:
        if it.required and not _answered(inst, it.code, answers.get(it.code)):
            unmet.append(it.code)
    if not inst.scales and not any(_answered(inst, k, v) for k, v in answers.items()):
        unmet.append("answers")
    return unmet


def status(
    instrument: str | Instrument,
    answers: Mapping[str, Any],
    scores: Sequence[Score] | None = None,
    external_scores: Mapping[str, Any] | None = None,
) -> str:
    """``"complete"`` when the instrument's missing-data rules are met, else ``"partial"``."""
    return PARTIAL if missing_rules(instrument, answers, scores, external_scores) else COMPLETE
