"""From an HTML form post to instrument answers, and the missing-answer rule of a page.

Form fields are named ``i_<item code>``; a blank field is an unanswered question (``None``).

Examples
--------
>>> import instruments
>>> inst = instruments.get("phq4")
>>> answers, errors = parse_answers(inst, {"i_phq4_1": "1", "i_phq4_2": "", "i_phq4_3": "7"})
>>> answers["phq4_1"], answers["phq4_2"], errors
(1, None, {'phq4_3': 'Please choose one of the answers shown.'})
>>> [o.code for o in open_items(inst, {"phq4_1": 1, "phq4_2": None})]
['phq4_2', 'phq4_3', 'phq4_4']
>>> blocking_shortfall(inst, {"phq4_1": 1, "phq4_2": 0, "phq4_3": 1, "phq4_4": None})
{'phq4_4'}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import instruments
from instruments.model import Instrument, Item

FIELD_PREFIX = "i_"
#: Seconds a participant takes per question, for "about N minutes left" (a generous figure for
#: older readers on a phone; self-completion of PROs runs at roughly 5-10 seconds an item).
SECONDS_PER_ITEM = 12


def form_order(codes: list[str]) -> list[str]:
    """The order the form offers a wave's instruments: outcome measures (scored instruments) first,
    then unscored ones such as the context questionnaire, each group in the wave's order.

    >>> form_order(["context", "pam13", "phq9"])
    ['pam13', 'phq9', 'context']
    """
    return sorted(codes, key=lambda c: (not instruments.get(c).scales, codes.index(c)))


def minutes_left(codes: list[str]) -> int:
    """Minutes (rounded up, at least 1) to answer the questions of ``codes``.

    >>> minutes_left(["phq9", "gad7"])  # 10 + 8 questions at 12 s each
    4
    """
    seconds = SECONDS_PER_ITEM * sum(len(instruments.get(c).items) for c in codes)
    return max(1, -(-seconds // 60))


def field_name(item: Item) -> str:
    return FIELD_PREFIX + item.code


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, list) and not v)


def _number(raw: str, integer: bool) -> int | float:
    value = float(raw.strip().replace(",", "."))
    if integer:
        if value != int(value):
            raise ValueError
        return int(value)
    return value


def parse_answers(inst: Instrument, form: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Answers by item code (every item present, ``None`` when blank) and plain-language errors.

    ``form`` maps field names to a string, or to a list of strings for multiple-choice items.
    """
    answers: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for item in inst.items:
        raw = form.get(field_name(item))
        if _blank(raw):
            answers[item.code] = None
            continue
        try:
            if item.kind == "multi":
                values = raw if isinstance(raw, list) else [raw]
                by_text = {str(o.code): o.code for o in item.options}
                if any(v not in by_text for v in values):
                    raise ValueError
                answers[item.code] = [by_text[v] for v in values]
            elif item.options:
                by_text = {str(o.code): o.code for o in item.options}
                if raw not in by_text:
                    raise ValueError
                answers[item.code] = by_text[raw]
            elif item.kind in ("integer", "number"):
                answers[item.code] = _number(raw, item.kind == "integer")
            else:
                answers[item.code] = raw.strip()
        except (ValueError, TypeError, AttributeError):
            answers[item.code] = None
            errors[item.code] = (
                "Please choose one of the answers shown."
                if item.options
                else "Please enter a number."
                if item.kind in ("integer", "number")
                else "Please check this answer."
            )
    return answers, errors


def _chose_no_answer(value: Any, missing: set | None) -> bool:
    return bool(missing) and not isinstance(value, list) and value in missing


def open_items(inst: Instrument, answers: Mapping[str, Any]) -> list[Item]:
    """The questions without an answer, in the instrument's order."""
    return [it for it in inst.items if _blank(answers.get(it.code))]


def blocking_shortfall(inst: Instrument, answers: Mapping[str, Any]) -> set[str]:
    """Blank items that must be answered for the instrument's missing-data rule to hold.

    An item is blocking when it is marked required, or when it belongs to a scale that would
    have fewer than ``min_items`` usable answers. Answers coded as "no answer" (e.g. N/A) are
    the participant's choice and never block: only blank questions are asked again.
    """
    missing_codes = {it.code: {o.code for o in it.options if o.missing} for it in inst.items}
    blank = {it.code for it in open_items(inst, answers)}
    blocking = {it.code for it in inst.items if it.required and it.code in blank}
    for scale in inst.scales:
        usable = sum(
            1
            for code in scale.items
            if code not in blank and not _chose_no_answer(answers.get(code), missing_codes.get(code))
        )
        if usable < scale.min_items:
            blocking |= {code for code in scale.items if code in blank}
    return blocking
