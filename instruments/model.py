"""Data types of the instrument library.

An :class:`Instrument` is loaded from a YAML definition; the scoring engine turns a response's
answers into :class:`Score` rows and reports every :class:`Problem` at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Option:
    """One response option: the numeric code stored, its label, and whether it means "no answer"."""

    code: int | float
    label: str
    missing: bool = False  # e.g. PAM-13 "N/A", HLS-EU "don't know": stored, but not an answer for scoring
    loinc: str | None = None  # LOINC answer code (LA…) where one is published, used in FHIR exports
    # The code another system uses when it is not a number (a REDCap choice coded "GB" or "adult"):
    # stored as ``code`` (its position), written back as ``value`` to REDCap files and the REDCap API.
    value: str | None = None


@dataclass(frozen=True)
class Item:
    code: str
    text: str | None  # None where the licence forbids shipping the wording
    options: tuple[Option, ...] = ()
    reverse: bool = False
    scored: bool = True
    kind: str = "choice"  # choice | integer | number | text | date | multi
    min: float | None = None
    max: float | None = None
    identifier: bool = False  # direct identifier: exports drop it
    label: str | None = None  # short label for data dictionaries (wording may be absent)
    loinc: str | None = None  # LOINC question code where one is published
    required: bool = False
    notes: str | None = None  # e.g. a field imported from REDCap that keeps its branching logic as text
    unit: str | None = None  # UCUM-style unit of a measured value (e.g. "mmol/mol", "kg")

    def option_codes(self) -> set:
        return {o.code for o in self.options}


@dataclass(frozen=True)
class Band:
    label: str
    min: float
    max: float
    level: int | None = None
    # True: the band starts just above ``min`` (e.g. PAM level 2 is "> 47.0 and <= 55.1"), so bands
    # given to one decimal in the source leave no gap for values in between.
    min_exclusive: bool = False

    def contains(self, value: float) -> bool:
        above = value > self.min if self.min_exclusive else value >= self.min
        return above and value <= self.max


@dataclass(frozen=True)
class Scale:
    code: str
    label: str
    items: tuple[str, ...]
    method: str  # sum | mean | prorated_sum | dichotomised_sum | lookup | item | convert | derived
    min_items: int
    range: tuple[float, float]
    bands: tuple[Band, ...] = ()
    mcid: float | None = None
    source: str | None = None  # for `lookup`: the scale whose value is looked up (e.g. the raw sum)
    options: dict[str, Any] = field(default_factory=dict)
    # An activation score computed elsewhere (e.g. the licensee's PAM software) may be supplied
    # through ``external_scores`` for this scale; it is validated against ``range`` and banded.
    external: bool = False
    higher_is: str | None = None  # "better" | "worse": direction, for responder analysis
    notes: str | None = None
    unit: str | None = None  # unit of the score (clinical measures), shown in dictionaries and labels
    loinc: str | None = None  # LOINC code of the measured quantity (FHIR Observation.code)


@dataclass(frozen=True)
class Flag:
    code: str
    rule: str  # human-readable rule, e.g. "phq9_9 > 0"
    message: str
    # Machine form of ``rule``. kind "item": ``items[0] op value``; kind "scale": the score of
    # ``scales[0]`` ``op value`` (e.g. a plausible but alarming HbA1c); kind "extreme_pattern": every
    # one of ``items`` answered (at least ``min_answered``) and all at the lowest, or all at the
    # highest, non-missing option.
    kind: str = "item"
    items: tuple[str, ...] = ()
    op: str = ">"
    value: float | None = None
    min_answered: int | None = None
    scales: tuple[str, ...] = ()  # Scores that carry the flag; empty = every scale


@dataclass(frozen=True)
class AlertRule:
    """A safety rule: an answer or a score the study team must act on (see :mod:`instruments.alerts`).

    ``kind`` is ``"item"`` (``target`` is an item code, compared on its numeric answer) or
    ``"scale"`` (``target`` is a scale code, compared on the score). ``instrument`` is filled in
    for rules declared outside a definition (per study).
    """

    code: str
    label: str
    kind: str
    target: str
    op: str
    value: float
    instrument: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class Instrument:
    code: str
    name: str
    version: str
    citation: str
    licence: str
    items: tuple[Item, ...]
    scales: tuple[Scale, ...]
    flags: tuple[Flag, ...] = ()
    alerts: tuple[AlertRule, ...] = ()
    wording_shipped: bool = True
    instructions: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def item(self, code: str) -> Item:
        for it in self.items:
            if it.code == code:
                return it
        raise KeyError(code)

    def scale(self, code: str) -> Scale:
        for sc in self.scales:
            if sc.code == code:
                return sc
        raise KeyError(code)


@dataclass
class Score:
    """One scale score of one response. ``value`` is None when the missing-data rule is not met."""

    scale: str
    value: float | None
    band: str | None = None
    level: int | None = None
    items_answered: int = 0
    items_expected: int = 0
    prorated: bool = False
    missing_reason: str | None = None
    flags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Problem:
    """A validation problem: ``loc`` is the item (or scale) code, ``rule`` a stable machine name."""

    loc: str
    rule: str
    msg: str


class InstrumentError(ValueError):
    """A definition or a request cannot be used (unknown instrument, bad definition file)."""


class ValidationFailed(InstrumentError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(f"{p.loc}: {p.msg}" for p in problems))
