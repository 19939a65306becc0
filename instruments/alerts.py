"""Safety alert rules: which answers or scores the study team must act on.

An instrument definition may declare ``alerts`` (PHQ-9: item 9 above 0, total 20 or more); a study
may add its own rules (e.g. GAD-7 of 15 or more). :func:`evaluate` checks one response against
both and returns the rules it meets. It is a pure function: the service decides what an alert
leads to (a stored alert, notifications, the support message on the participant's form).

A rule of kind ``item`` compares the item's numeric answer; an unanswered item, an option coded as
"no answer" (``missing: true``) or a non-numeric answer never meets a rule. A rule of kind ``scale``
compares the score; a scale not scored (missing-data rule not met) never meets a rule either.

Examples
--------
>>> import instruments
>>> answers = {f"phq9_{i}": 1 for i in range(1, 10)}
>>> [(h.rule.code, h.observed) for h in evaluate(instruments.get("phq9"), answers)]
[('phq9_item9', 1.0)]
>>> severe = {f"phq9_{i}": 3 for i in range(1, 9)} | {"phq9_9": 0}
>>> [(h.rule.code, h.observed) for h in evaluate(instruments.get("phq9"), severe)]
[('phq9_severe', 24.0)]
>>> gad = AlertRule("gad7_severe", "GAD-7 15 or more", "scale", "gad7", ">=", 15, instrument="gad7")
>>> [h.rule.code for h in evaluate(instruments.get("gad7"), {f"gad7_{i}": 3 for i in range(1, 8)}, extra=[gad])]
['gad7_severe']
>>> rule_problems(instruments.get("gad7"), AlertRule("x", "x", "item", "gad7_99", ">", 0))
['unknown item gad7_99']
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .model import AlertRule, Instrument

OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq}
KINDS = ("item", "scale")
#: How each operator reads in plain words, for generated labels.
OP_WORDS = {">": "above", ">=": "at or above", "<": "below", "<=": "at or below", "==": "equal to"}


@dataclass(frozen=True)
class AlertHit:
    """A rule a response meets, with the value that met it."""

    rule: AlertRule
    observed: float


def rule_problems(instrument: Instrument, rule: AlertRule) -> list[str]:
    """Why ``rule`` cannot apply to ``instrument`` (empty when it can)."""
    problems = []
    if rule.kind not in KINDS:
        problems.append(f"kind must be one of {', '.join(KINDS)}")
    if rule.op not in OPS:
        problems.append(f"op must be one of {', '.join(OPS)}")
    if rule.kind == "item":
        items = {it.code: it for it in instrument.items}
        item = items.get(rule.target)
        if item is None:
            problems.append(f"unknown item {rule.target}")
        elif item.kind in ("text", "date", "datetime", "time", "multi"):
            problems.append(f"item {rule.target} has no numeric answer ({item.kind})")
    elif rule.kind == "scale":
        if rule.target not in {s.code for s in instrument.scales}:
            problems.append(f"unknown scale {rule.target}")
    return problems


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def evaluate(
    instrument: Instrument,
    answers: Mapping[str, Any],
    scores: Iterable[Any] | None = None,
    *,
    extra: Iterable[AlertRule] = (),
) -> list[AlertHit]:
    """The alert rules one response meets: the instrument's own, then ``extra`` (a study's).

    Parameters
    ----------
    instrument : Instrument
    answers : mapping
        Item code → answer, as submitted (already validated).
    scores : iterable, optional
        Objects with ``scale`` and ``value`` (the engine's :class:`~instruments.model.Score` or
        stored score rows); computed with :func:`instruments.score` when not given.
    extra : iterable of AlertRule
        More rules; those naming another instrument are ignored.

    Returns
    -------
    list of AlertHit
        In rule order; each rule at most once.
    """
    rules = list(instrument.alerts) + [r for r in extra if r.instrument in (None, instrument.code)]
    if not rules:
        return []
    by_scale: dict[str, float | None] | None = None
    missing = {it.code: {o.code for o in it.options if o.missing} for it in instrument.items}
    hits = []
    seen: set[str] = set()
    for rule in rules:
        if rule.code in seen or rule.op not in OPS:
            continue
        if rule.kind == "item":
            raw = answers.get(rule.target)
            observed = _number(raw)
            if observed is not None and raw in missing.get(rule.target, ()):
                observed = None  # "prefer not to say" is not an answer
        elif rule.kind == "scale":
            if by_scale is None:
                if scores is None:
                    from .engine import score

                    scores = score(instrument, answers)
                by_scale = {s.scale: s.value for s in scores}
            observed = _number(by_scale.get(rule.target))
        else:
            continue
        if observed is not None and OPS[rule.op](observed, float(rule.value)):
            seen.add(rule.code)
            hits.append(AlertHit(rule, observed))
    return hits


def default_label(rule_kind: str, target: str, op: str, value: float) -> str:
    """A plain label for a rule declared without one, e.g. ``"gad7 at or above 15"``.

    >>> default_label("scale", "gad7", ">=", 15.0)
    'gad7 at or above 15'
    """
    shown = int(value) if float(value).is_integer() else value
    return f"{target} {OP_WORDS.get(op, op)} {shown}"


#: The name the package exports.
evaluate_alerts = evaluate
