"""Fidelity checklists: defined as data like instruments, scored by one pure function.

A fidelity checklist lists what a session of a programme should contain. Each item belongs to the
programme's **core** components (what must be delivered for the programme to be itself) or to its
adaptable **form** (how it is delivered, which may be tailored), following the core/form distinction
of Hawe, Shiell & Riley (2004) used by FRAME (Wiltsey Stirman et al. 2019). Items are rated on an
ordered option set (e.g. 0 = not delivered, 1 = partly, 2 = fully) that may include a "not
applicable" option (``missing: true``), which is stored but does not count.

Scores (:func:`score_checklist`) are percentages of the maximum possible score (POMP) over the
answered items of a part: ``100 · Σ(value − min) / Σ(max − min)``, for ``total``, ``core`` and
``form``, plus ``core_full``, the percentage of answered core items rated at the top option
("fully delivered"), the usual adherence figure in fidelity reports. A part with fewer answered
items than ``min_answered`` (a proportion of its items) has no score.

Examples
--------
>>> checklist = load_checklist("peer_group_session")
>>> answers = {i.code: 2 for i in checklist.items}
>>> answers["goal_setting"] = 1
>>> [(s.part, s.value) for s in score_checklist(checklist, answers)]
[('total', 96.875), ('core', 93.75), ('form', 100.0), ('core_full', 87.5)]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .model import InstrumentError, Option, Problem, ValidationFailed

CHECKLISTS_DIR = Path(__file__).parent / "checklists"
COMPONENTS = ("core", "form")
PARTS = ("total", "core", "form", "core_full")

__all__ = [
    "Checklist",
    "ChecklistItem",
    "ChecklistScore",
    "checklist_from_dict",
    "load_checklist",
    "shipped_checklists",
    "validate_answers",
    "score_checklist",
]


@dataclass(frozen=True)
class ChecklistItem:
    """One element a session should contain: its code, wording, component and rating options."""

    code: str
    text: str
    component: str  # core | form
    options: tuple[Option, ...]
    required: bool = False

    @property
    def scored_codes(self) -> tuple[float, ...]:
        return tuple(sorted(float(o.code) for o in self.options if not o.missing))

    @property
    def min(self) -> float:
        return self.scored_codes[0]

    @property
    def max(self) -> float:
        return self.scored_codes[-1]


@dataclass(frozen=True)
class Checklist:
    """A fidelity checklist: items (core or form) on ordered option sets, and its scoring rule."""

    code: str
    name: str
    version: str
    items: tuple[ChecklistItem, ...]
    min_answered: float = 0.8
    source: str | None = None
    instructions: str | None = None

    def item(self, code: str) -> ChecklistItem:
        for it in self.items:
            if it.code == code:
                return it
        raise KeyError(code)

    def as_dict(self) -> dict[str, Any]:
        """The definition as a plain mapping (what :func:`checklist_from_dict` reads back)."""
        return {
            "code": self.code,
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "instructions": self.instructions,
            "min_answered": self.min_answered,
            "items": [
                {
                    "code": it.code,
                    "text": it.text,
                    "component": it.component,
                    "required": it.required,
                    "options": [{"code": o.code, "label": o.label, "missing": o.missing} for o in it.options],
                }
                for it in self.items
            ],
        }


@dataclass(frozen=True)
class ChecklistScore:
    """One part's score: ``value`` is None when fewer than the required items were answered."""

    part: str  # total | core | form | core_full
    value: float | None
    items_answered: int
    items_expected: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fail(where: str, msg: str) -> InstrumentError:
    return InstrumentError(f"{where}: {msg}")


def checklist_from_dict(data: dict[str, Any], where: str = "checklist") -> Checklist:
    """Build a :class:`Checklist` from its definition mapping, checking every rule.

    Raises
    ------
    InstrumentError
        Naming the first problem: a missing field, a duplicated item code, an unknown option set,
        an option set with fewer than two scored options, a component other than core/form.
    """
    if not isinstance(data, dict):
        raise _fail(where, "a checklist is a mapping")
    for key in ("code", "name", "version", "items"):
        if data.get(key) in (None, "", []):
            raise _fail(where, f"{key} is required")
    option_sets = data.get("option_sets") or {}
    if not isinstance(option_sets, dict):
        raise _fail(where, "option_sets must be a mapping of name to options")
    min_answered = float(data.get("min_answered", 0.8))
    if not 0 < min_answered <= 1:
        raise _fail(where, "min_answered must be a proportion in (0, 1]")
    if not isinstance(data["items"], list):
        raise _fail(where, "items must be a list")
    items: list[ChecklistItem] = []
    seen: set[str] = set()
    for n, raw in enumerate(data["items"]):
        at = f"{where}: items[{n}]"
        if not isinstance(raw, dict) or not raw.get("code") or not raw.get("text"):
            raise InstrumentError(f"{at}: code and text are required")
        code = str(raw["code"])
        if code in seen:
            raise InstrumentError(f"{at}: item code {code!r} is repeated")
        seen.add(code)
        component = raw.get("component")
        if component not in COMPONENTS:
            raise InstrumentError(f"{at}: component must be 'core' or 'form'")
        options = raw.get("options")
        if isinstance(options, str):
            if options not in option_sets:
                raise InstrumentError(f"{at}: unknown option set {options!r}")
            options = option_sets[options]
        if not isinstance(options, list) or not all(isinstance(o, dict) and "code" in o for o in options):
            raise InstrumentError(f"{at}: options must be a list of {{code, label}} or an option set name")
        try:
            opts = tuple(
                Option(code=float(o["code"]), label=str(o.get("label", o["code"])), missing=bool(o.get("missing")))
                for o in options
            )
        except (TypeError, ValueError):
            raise InstrumentError(f"{at}: option codes must be numbers") from None
        if len({o.code for o in opts}) != len(opts):
            raise InstrumentError(f"{at}: option codes are repeated")
        if sum(not o.missing for o in opts) < 2:
            raise InstrumentError(f"{at}: at least two scored options are needed")
        items.append(ChecklistItem(code, str(raw["text"]), component, opts, bool(raw.get("required", False))))
    if not any(it.component == "core" for it in items):
        raise _fail(where, "at least one item must be a core component")
    return Checklist(
        code=str(data["code"]),
        name=str(data["name"]),
        version=str(data["version"]),
        items=tuple(items),
        min_answered=min_answered,
        source=data.get("source"),
        instructions=data.get("instructions"),
    )


def shipped_checklists() -> tuple[str, ...]:
    """Codes of the checklists shipped with the library (``instruments/checklists/*.yaml``)."""
    return tuple(sorted(p.stem for p in CHECKLISTS_DIR.glob("*.yaml")))


@lru_cache(maxsize=16)
def load_checklist(code: str) -> Checklist:
    """A shipped checklist by code (a YAML file in ``instruments/checklists``)."""
    if code not in shipped_checklists():
        raise InstrumentError(f"unknown checklist {code!r}; shipped: {', '.join(shipped_checklists())}")
    path = CHECKLISTS_DIR / f"{code}.yaml"
    return checklist_from_dict(yaml.safe_load(path.read_text(encoding="utf-8")), where=path.name)


def validate_answers(checklist: Checklist, answers: dict[str, Any]) -> dict[str, float | None]:
    """The answers as numbers, or :class:`~instruments.model.ValidationFailed` listing every problem.

    An answer must be one of its item's option codes (``None`` = not rated); unknown item codes and
    unanswered required items are problems too.
    """
    problems: list[Problem] = []
    clean: dict[str, float | None] = {}
    codes = {it.code for it in checklist.items}
    for key in answers:
        if key not in codes:
            problems.append(Problem(str(key), "unknown_item", f"{key!r} is not an item of {checklist.code}"))
    for it in checklist.items:
        raw = answers.get(it.code)
        if raw is None:
            if it.required:
                problems.append(Problem(it.code, "required", "this item must be rated"))
            clean[it.code] = None
            continue
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            problems.append(Problem(it.code, "not_a_number", "the rating must be one of the option codes"))
            continue
        allowed = sorted(o.code for o in it.options)
        if float(raw) not in allowed:
            shown = ", ".join(f"{c:g}" for c in allowed)
            problems.append(Problem(it.code, "out_of_range", f"rating {float(raw):g} is not an option ({shown})"))
            continue
        clean[it.code] = float(raw)
    if problems:
        raise ValidationFailed(problems)
    return clean


def score_checklist(checklist: Checklist, answers: dict[str, Any]) -> list[ChecklistScore]:
    """Score one completed checklist: ``total``, ``core``, ``form`` (POMP, 0–100) and ``core_full``.

    Parameters
    ----------
    checklist : Checklist
    answers : dict
        Item code → option code (``None`` or absent = not rated; a ``missing`` option such as
        "not applicable" is stored but not counted).

    Returns
    -------
    list of ChecklistScore
        In the order of :data:`PARTS`. A part whose answered items fall below ``min_answered`` of its
        items (rounded up) has ``value`` None; a checklist without form items has form ``None``.

    Examples
    --------
    >>> c = checklist_from_dict({"code": "x", "name": "X", "version": "1", "items": [
    ...     {"code": "a", "text": "A", "component": "core", "options": [{"code": 0}, {"code": 1}, {"code": 2}]},
    ...     {"code": "b", "text": "B", "component": "form", "options": [{"code": 1}, {"code": 5}]}]})
    >>> [(s.part, s.value) for s in score_checklist(c, {"a": 1, "b": 4})]
    Traceback (most recent call last):
    ...
    instruments.model.ValidationFailed: b: rating 4 is not an option (1, 5)
    >>> [(s.part, s.value) for s in score_checklist(c, {"a": 1, "b": 5})]
    [('total', 83.33333333333333), ('core', 50.0), ('form', 100.0), ('core_full', 0.0)]
    """
    import math

    values = validate_answers(checklist, answers)
    scored: dict[str, float] = {}
    for it in checklist.items:
        v = values.get(it.code)
        if v is not None and not any(o.missing and float(o.code) == v for o in it.options):
            scored[it.code] = v

    def part(name: str, items: list[ChecklistItem]) -> ChecklistScore:
        answered = [it for it in items if it.code in scored]
        need = math.ceil(checklist.min_answered * len(items) - 1e-9)
        value: float | None = None
        if items and answered and len(answered) >= need:
            if name == "core_full":
                value = 100.0 * sum(scored[it.code] == it.max for it in answered) / len(answered)
            else:
                span = sum(it.max - it.min for it in answered)
                value = 100.0 * sum(scored[it.code] - it.min for it in answered) / span
        return ChecklistScore(name, value, len(answered), len(items))

    core = [it for it in checklist.items if it.component == "core"]
    form = [it for it in checklist.items if it.component == "form"]
    return [part("total", list(checklist.items)), part("core", core), part("form", form), part("core_full", core)]
