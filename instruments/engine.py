"""One scoring engine for every instrument: validation and single-response scoring.

Vectorised scoring (:mod:`instruments.frames`) shares the arithmetic (``_scale_values``), so
:func:`instruments.score_frame` and :func:`score` agree row by row.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import registry
from .model import Instrument, InstrumentError, Item, Problem, Scale, Score, ValidationFailed

if TYPE_CHECKING:
    pass  # imported at run time only where frames are scored

_NUMERIC_KINDS = {"choice", "integer", "number"}
_OPS = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal, "==": np.equal, "!=": np.not_equal}


@dataclass
class _Compiled:
    instrument: Instrument
    items: dict[str, Item]
    valid: dict[str, frozenset]  # choice items: every option code (missing ones included)
    missing: dict[str, frozenset]  # option codes that count as unanswered
    reverse: dict[str, np.ndarray]  # reverse-scored items: substantive codes, ascending
    # extreme-pattern flags: (lowest, highest) substantive code of their items, found on first use
    extremes: dict[str, tuple[float, float]] = field(default_factory=dict)


_cache: dict[int, _Compiled] = {}


def _compile(inst: Instrument) -> _Compiled:
    hit = _cache.get(id(inst))
    if hit is not None and hit.instrument is inst:
        return hit
    items, valid, missing, reverse = {}, {}, {}, {}
    for it in inst.items:
        items[it.code] = it
        if it.options:
            valid[it.code] = frozenset(o.code for o in it.options)
            missing[it.code] = frozenset(o.code for o in it.options if o.missing)
            if it.reverse:
                reverse[it.code] = np.array(sorted(o.code for o in it.options if not o.missing), dtype=float)
    comp = _Compiled(inst, items, valid, missing, reverse)
    if len(_cache) > 256:  # custom instruments come and go; keep the cache bounded
        _cache.clear()
    _cache[id(inst)] = comp
    return comp


def reverse_value(item: Item, value: float) -> float:
    """Reverse-score ``value``: the k-th lowest substantive option becomes the k-th highest.

    For evenly spaced codes this is ``lowest + highest - value``; mirroring by position keeps uneven code
    sets (0, 1, 3) inside the option set. Applying it twice gives the value back (an involution).

    Examples
    --------
    >>> from instruments.model import Item, Option
    >>> it = Item("x_1", None, tuple(Option(c, str(c)) for c in (1, 2, 3, 4)), reverse=True)
    >>> reverse_value(it, 1)
    4
    """
    sub = sorted(o.code for o in item.options if not o.missing)
    return sub[len(sub) - 1 - sub.index(value)]


def _mirror(codes: np.ndarray, x: np.ndarray) -> np.ndarray:
    idx = np.clip(np.searchsorted(codes, x), 0, len(codes) - 1)
    return np.where(np.isnan(x), np.nan, codes[::-1][idx])


def _is_missing(v: Any) -> bool:
    # pandas' NA and NaT by type name: pandas is loaded only for frames, not for single responses.
    return v is None or (isinstance(v, float) and math.isnan(v)) or type(v).__name__ in ("NAType", "NaTType")


def _as_number(v: Any) -> float | int | None:
    """A number from an int/float/numpy scalar or a numeric string; None if it is not one."""
    # Plain ints and floats first (what JSON gives): the abstract-class checks below cost more.
    kind = type(v)
    if kind is int:
        return v
    if kind is float:
        return None if math.isinf(v) else v
    if isinstance(v, bool) or isinstance(v, np.bool_):
        return None
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        f = float(v)
        return None if math.isinf(f) else f
    if isinstance(v, str):
        try:
            f = float(v.strip())
        except ValueError:
            return None
        if math.isnan(f) or math.isinf(f):
            return None
        return int(f) if f.is_integer() and "." not in v else f
    return None


def validate(
    instrument: str | Instrument, answers: Mapping[str, Any], external_scores: Mapping[str, Any] | None = None
) -> list[Problem]:
    """Check one response and return every problem at once (empty list = valid).

    Rules (``Problem.rule``): ``unknown_item``, ``not_a_number``, ``not_an_option``, ``not_an_integer``,
    ``out_of_range``, ``not_text``, ``external_not_allowed``, ``external_out_of_range``, ``one_unit``
    (a clinical measure entered in two units at once).
    ``None`` (or NaN) means unanswered and is always valid.

    Examples
    --------
    >>> [p.rule for p in validate("phq9", {"phq9_1": 4, "phq9_99": 1, "phq9_2": "x"})]
    ['not_an_option', 'unknown_item', 'not_a_number']
    """
    inst = registry.get(instrument)
    comp = _compile(inst)
    problems: list[Problem] = []
    for code, raw in answers.items():
        item = comp.items.get(code)
        if item is None:
            problems.append(Problem(code, "unknown_item", f"{code} is not an item of {inst.code}"))
            continue
        if _is_missing(raw):
            continue
        if item.kind in _NUMERIC_KINDS:
            v = _as_number(raw)
            if v is None:
                problems.append(Problem(code, "not_a_number", f"{raw!r} is not a number"))
            elif item.options and v not in comp.valid[code]:
                allowed = ", ".join(str(o.code) for o in item.options)
                problems.append(Problem(code, "not_an_option", f"{raw!r} is not one of the options ({allowed})"))
            elif not item.options:
                if item.kind == "integer" and not float(v).is_integer():
                    problems.append(Problem(code, "not_an_integer", f"{raw!r} is not a whole number"))
                elif (item.min is not None and v < item.min) or (item.max is not None and v > item.max):
                    problems.append(Problem(code, "out_of_range", f"{raw!r} is outside {item.min} to {item.max}"))
        elif item.kind == "multi":
            vals = raw if isinstance(raw, (list, tuple, set, frozenset)) else [raw]
            for one in vals:
                v = _as_number(one)
                if v is None or v not in comp.valid.get(code, frozenset()):
                    problems.append(Problem(code, "not_an_option", f"{one!r} is not one of the options"))
        elif not isinstance(raw, str):
            problems.append(Problem(code, "not_text", f"{raw!r} is not text"))
    # A measure entered in two units at once (HbA1c in % and in mmol/mol) is ambiguous: which one
    # the lab reported cannot be told, so the second one given is refused.
    groups: set[frozenset[str]] = set()
    order = {it.code: i for i, it in enumerate(inst.items)}
    for sc in inst.scales:
        group = frozenset(sc.items)
        if sc.method != "convert" or group in groups:
            continue
        groups.add(group)
        given = sorted((c for c in sc.items if c in answers and not _is_missing(answers[c])), key=order.get)
        for extra in given[1:]:
            problems.append(
                Problem(extra, "one_unit", f"{given[0]} is given already: enter {' or '.join(sorted(group))}, not both")
            )
    for code, raw in (external_scores or {}).items():
        try:
            sc = inst.scale(code)
        except KeyError:
            sc = None
        if sc is None or not sc.external:
            problems.append(
                Problem(code, "external_not_allowed", f"{inst.code} does not accept an external score for {code}")
            )
            continue
        if _is_missing(raw):
            continue
        v = _as_number(raw)
        if v is None:
            problems.append(Problem(code, "not_a_number", f"external score {raw!r} is not a number"))
        elif not sc.range[0] <= v <= sc.range[1]:
            problems.append(
                Problem(
                    code, "external_out_of_range", f"external score {raw!r} is outside {sc.range[0]} to {sc.range[1]}"
                )
            )
    return problems


# ---------------------------------------------------------------------------------------------
# arithmetic shared by score() and score_frame(): X is (n, k) with NaN for unanswered items


def _matrix(columns: list[np.ndarray]) -> np.ndarray:
    """The (n, k) matrix of k item columns of length n.

    One copy into a (k, n) block, seen transposed: a third of ``np.column_stack``'s time for one
    response (a submission) and a quarter for 100,000 rows, whose row sums then run faster too.
    """
    return np.array(columns, dtype=float).T


def _round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5)


def _scale_values(
    sc: Scale,
    X: np.ndarray,
    lookup_source: np.ndarray | dict[str, np.ndarray] | None,
    inst_code: str,
    external: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (value, answered, prorated, reason_code) arrays for one scale.

    reason_code: 0 scored, 1 too few items, 2 no calibration/external score, 3 raw outside table.
    """
    n = X.shape[0]
    k = len(sc.items)
    if sc.method == "derived":
        # ``lookup_source`` carries the formula's input columns (see _score_columns).
        from .clinical import derive

        inputs = lookup_source if isinstance(lookup_source, dict) else {}
        value = derive(sc.options["formula"], inputs)
        have = np.column_stack([~np.isnan(v) for v in inputs.values()]) if inputs else np.zeros((n, 0), dtype=bool)
        answered = have.sum(axis=1).astype(np.int64)
        complete = answered == len(inputs)
        reason = np.where(np.isnan(value), np.where(complete, 5, 4), 0).astype(np.int8)
        return value, answered, np.zeros(n, dtype=bool), reason
    if sc.method == "lookup":
        cal = registry.calibration(inst_code, sc.code)
        value = np.full(n, np.nan)
        reason = np.zeros(n, dtype=np.int8)
        src = lookup_source if lookup_source is not None else np.full(n, np.nan)
        if cal is not None:
            value = cal.lookup(src)
            reason[np.isnan(value)] = 3
            reason[np.isnan(src)] = 1
        else:
            reason[:] = 2
        answered = (~np.isnan(X)).sum(axis=1) if X.size else np.zeros(n, dtype=np.int64)
        if external is not None:
            # An external score stands for items answered elsewhere (the licensed software); when some
            # items were answered here but fewer than the missing-data rule needs, the response fails
            # that rule and no external score may be banded for it.
            too_few = (answered > 0) & (answered < max(sc.min_items, 1))
            use = np.isnan(value) & ~np.isnan(external) & ~too_few
            value = np.where(use, external, value)
            reason[use] = 0
            reason[too_few & np.isnan(value)] = 1
        return value, answered.astype(np.int64), np.zeros(n, dtype=bool), reason
    answered_mask = ~np.isnan(X)
    answered = answered_mask.sum(axis=1)
    ok = answered >= max(sc.min_items, 1)
    safe = np.where(answered > 0, answered, 1)
    if sc.method == "dichotomised_sum":
        X = np.where(answered_mask, (X >= sc.options["threshold"]).astype(float), np.nan)
    with np.errstate(invalid="ignore"):
        total = np.where(answered_mask, X, 0.0).sum(axis=1)
    prorated = ok & (answered < k)
    if sc.method == "sum":
        value = total
        prorated = np.zeros(n, dtype=bool)
    elif sc.method == "mean":
        value = total / safe
    elif sc.method == "item":
        value = total
        prorated = np.zeros(n, dtype=bool)
    elif sc.method in ("prorated_sum", "dichotomised_sum"):
        if sc.method == "dichotomised_sum" and not sc.options.get("prorate", False):
            value = total
            prorated = np.zeros(n, dtype=bool)
        else:
            value = np.where(answered < k, total * k / safe, total)
            if sc.options.get("rounding", "none") == "half_up":
                value = _round_half_up(value)
    elif sc.method == "convert":
        from .clinical import convert

        factors = {c: tuple(sc.options["factors"][c]) for c in sc.items}
        value = convert(factors, {c: X[:, j] for j, c in enumerate(sc.items)}, n)
        prorated = np.zeros(n, dtype=bool)
    else:  # the schema admits no other method
        raise InstrumentError(f"scale {sc.code}: unknown method {sc.method!r}")
    value = np.where(ok, value, np.nan)
    reason = np.where(ok, 0, 1).astype(np.int8)
    return value, answered, prorated, reason


def _bands(sc: Scale, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.full(value.shape, None, dtype=object)
    levels = np.full(value.shape, None, dtype=object)
    done = np.isnan(value)
    for b in sc.bands:
        lo_ok = value > b.min if b.min_exclusive else value >= b.min
        hit = ~done & lo_ok & (value <= b.max)
        labels[hit] = b.label
        levels[hit] = b.level
        done |= hit
    return labels, levels


def _extremes(comp: _Compiled, fl) -> tuple[float, float]:
    """The lowest and highest substantive option code of an extreme-pattern flag's items."""
    bounds = comp.extremes.get(fl.code)
    if bounds is None:  # a submission scores one response: look the options up once, not per call
        lo = min(min(o.code for o in comp.items[c].options if not o.missing) for c in fl.items)
        hi = max(max(o.code for o in comp.items[c].options if not o.missing) for c in fl.items)
        bounds = comp.extremes[fl.code] = (lo, hi)
    return bounds


def _flag_mask(fl, cols: dict[str, np.ndarray], comp: _Compiled, n: int, out: dict | None = None) -> np.ndarray:
    if fl.kind == "scale":
        x = (out or {}).get(fl.scales[0], {}).get("value")
        if x is None:
            return np.zeros(n, dtype=bool)
        with np.errstate(invalid="ignore"):
            return ~np.isnan(x) & _OPS[fl.op](x, fl.value)
    if fl.kind == "item":
        x = cols.get(fl.items[0])
        if x is None:
            return np.zeros(n, dtype=bool)
        with np.errstate(invalid="ignore"):
            return ~np.isnan(x) & _OPS[fl.op](x, fl.value)
    if fl.kind == "extreme_pattern":
        empty = np.full(n, np.nan)  # one column for every unanswered item, not one per item
        X = _matrix([cols.get(c, empty) for c in fl.items])
        answered = (~np.isnan(X)).sum(axis=1)
        lo, hi = _extremes(comp, fl)
        all_lo = np.all(np.isnan(X) | (X == lo), axis=1)
        all_hi = np.all(np.isnan(X) | (X == hi), axis=1)
        need = fl.min_answered if fl.min_answered is not None else len(fl.items)
        return (answered >= max(need, 1)) & (all_lo | all_hi)
    raise InstrumentError(f"flag {fl.code}: unknown kind {fl.kind!r}")


_REASONS = {
    1: "too few items answered: {answered} of {expected}, at least {min} needed",
    2: "no calibration table registered and no external score given",
    3: "raw score outside the registered calibration table",
    4: "a value the formula needs is missing: {answered} of {expected} given",
    5: "the values given are outside the range the formula applies to",
}


def _score_columns(inst: Instrument, cols: dict[str, np.ndarray], external: dict[str, np.ndarray], n: int):
    """Scores of ``n`` responses given item columns already mapped to scoring values (NaN = unanswered)."""
    comp = _compile(inst)
    out = {}
    empty = np.full(n, np.nan)
    for sc in inst.scales:
        X = _matrix([cols.get(c, empty) for c in sc.items]) if sc.items else np.empty((n, 0))
        src: Any = out[sc.source]["value"] if sc.method == "lookup" else None
        if sc.method == "derived":
            src = {
                arg: out[ref]["value"] if ref in out else cols.get(ref, empty)
                for arg, ref in (sc.options.get("inputs") or {}).items()
            }
        value, answered, prorated, reason = _scale_values(sc, X, src, inst.code, external.get(sc.code))
        if sc.method == "lookup" and sc.source in out:
            answered = out[sc.source]["answered"]
        labels, levels = _bands(sc, value)
        out[sc.code] = {
            "value": value,
            "answered": answered,
            "prorated": prorated,
            "reason": reason,
            "band": labels,
            "level": levels,
            "expected": len(out[sc.source]["scale"].items)
            if sc.method == "lookup" and sc.source in out
            else len(sc.options.get("inputs") or {})
            if sc.method == "derived"
            else len(sc.items),
            "scale": sc,
        }
    flags = [(fl, _flag_mask(fl, cols, comp, n, out)) for fl in inst.flags]
    return out, flags


def _scoring_value(comp: _Compiled, code: str, raw: Any) -> float:
    if _is_missing(raw):
        return math.nan
    v = _as_number(raw)
    if v is None or v in comp.missing.get(code, ()):
        return math.nan
    rev = comp.reverse.get(code)
    if rev is not None:
        return float(_mirror(rev, np.array([float(v)]))[0])
    return float(v)


def score(
    instrument: str | Instrument, answers: Mapping[str, Any], external_scores: Mapping[str, Any] | None = None
) -> list[Score]:
    """Score one response: one :class:`Score` per scale, in definition order.

    A scale whose missing-data rule is not met has ``value=None`` and a ``missing_reason``.

    Raises
    ------
    ValidationFailed
        With every :class:`Problem` when the answers do not validate.

    Examples
    --------
    >>> s = score("phq9", {f"phq9_{i}": 1 for i in range(1, 10)})
    >>> s[0].scale, s[0].value, s[0].band
    ('phq9', 9.0, 'mild')
    """
    inst = registry.get(instrument)
    problems = validate(inst, answers, external_scores)
    if problems:
        raise ValidationFailed(problems)
    comp = _compile(inst)
    values = {
        code: _scoring_value(comp, code, raw)
        for code, raw in answers.items()
        if comp.items[code].kind in _NUMERIC_KINDS
    }
    ext = {code: math.nan if _is_missing(v) else float(_as_number(v)) for code, v in (external_scores or {}).items()}
    one = _score_one(inst, comp, values, ext)
    if one is None:  # a formula or a unit conversion: the arrays' code, for one row
        cols = {code: np.array([v]) for code, v in values.items()}
        out, masks = _score_columns(inst, cols, {code: np.array([v]) for code, v in ext.items()}, 1)
        rows = {
            code: (float(r["value"][0]), int(r["answered"][0]), bool(r["prorated"][0]), int(r["reason"][0]))
            for code, r in out.items()
        }
        expected = {code: int(r["expected"]) for code, r in out.items()}
        flagged = [fl for fl, m in masks if m[0]]
    else:
        rows, expected, flagged = one
    scores = []
    for sc in inst.scales:
        value, answered, prorated, reason = rows[sc.code]
        band, level = _band(sc, value)
        scores.append(
            Score(
                scale=sc.code,
                value=None if math.isnan(value) else value,
                band=band,
                level=level,
                items_answered=answered,
                items_expected=expected[sc.code],
                prorated=prorated,
                missing_reason=None
                if reason == 0
                else _REASONS[reason].format(answered=answered, expected=expected[sc.code], min=sc.min_items),
                flags=[fl.code for fl in flagged if not fl.scales or sc.code in fl.scales],
            )
        )
    return scores


def _band(sc: Scale, value: float) -> tuple[str | None, int | None]:
    """The band of one value, as :func:`_bands` finds it for a column."""
    if not math.isnan(value):
        for b in sc.bands:
            if (value > b.min if b.min_exclusive else value >= b.min) and value <= b.max:
                return b.label, b.level
    return None, None


def _score_one(
    inst: Instrument, comp: _Compiled, values: dict[str, float], external: dict[str, float]
) -> tuple[dict[str, tuple[float, int, bool, int]], dict[str, int], list] | None:
    """One response scored with plain floats: ``(value, answered, prorated, reason)`` and the number
    of items expected per scale, and the flags raised; None for an instrument with a formula or a
    unit conversion, which only the array code computes.

    The same rules as :func:`_scale_values` and :func:`_flag_mask`, step for step, for the
    most frequent call, one submitted response: on one row NumPy's per-call overhead is most of the
    time. ``tests/instruments/test_score_one.py`` checks both give the same scores for every
    instrument over random answers, partial and missing ones included.
    """
    if any(sc.method in ("derived", "convert") for sc in inst.scales):
        return None
    rows: dict[str, tuple[float, int, bool, int]] = {}
    expected: dict[str, int] = {}
    nan = math.nan
    for sc in inst.scales:
        given = [v for v in (values.get(c, nan) for c in sc.items) if not math.isnan(v)]
        answered = len(given)
        if sc.method == "lookup":
            cal = registry.calibration(inst.code, sc.code)
            src = rows[sc.source][0]
            value, reason = nan, 0
            if cal is None:
                reason = 2
            else:
                value = float(cal.lookup(src)[()])
                reason = 1 if math.isnan(src) else 3 if math.isnan(value) else 0
            ext = external.get(sc.code)
            if ext is not None:
                too_few = 0 < answered < max(sc.min_items, 1)
                if math.isnan(value) and not math.isnan(ext) and not too_few:
                    value, reason = ext, 0
                if too_few and math.isnan(value):
                    reason = 1
            answered = rows[sc.source][1]
            expected[sc.code] = len(next(s.items for s in inst.scales if s.code == sc.source))
            rows[sc.code] = (value, answered, False, reason)
            continue
        k = len(sc.items)
        ok = answered >= max(sc.min_items, 1)
        if sc.method == "dichotomised_sum":
            given = [1.0 if v >= sc.options["threshold"] else 0.0 for v in given]
        total = 0.0
        for v in given:  # in item order, as the arrays sum a row
            total += v
        prorated = ok and answered < k
        if sc.method in ("sum", "item") or (sc.method == "dichotomised_sum" and not sc.options.get("prorate", False)):
            value, prorated = total, False
        elif sc.method == "mean":
            value = total / (answered or 1)
        elif sc.method in ("prorated_sum", "dichotomised_sum"):
            value = total * k / (answered or 1) if answered < k else total
            if sc.options.get("rounding", "none") == "half_up":
                value = math.floor(value + 0.5)
        else:  # the schema admits no other method
            raise InstrumentError(f"scale {sc.code}: unknown method {sc.method!r}")
        rows[sc.code] = (float(value) if ok else nan, answered, prorated, 0 if ok else 1)
        expected[sc.code] = k
    flagged = []
    for fl in inst.flags:
        if fl.kind in ("scale", "item"):
            x = rows[fl.scales[0]][0] if fl.kind == "scale" and fl.scales[0] in rows else nan
            if fl.kind == "item":
                x = values.get(fl.items[0], nan)
            hit = not math.isnan(x) and bool(_OPS[fl.op](x, fl.value))
        elif fl.kind == "extreme_pattern":
            lo, hi = _extremes(comp, fl)
            xs = [values.get(c, nan) for c in fl.items]
            given = [x for x in xs if not math.isnan(x)]
            need = fl.min_answered if fl.min_answered is not None else len(fl.items)
            hit = len(given) >= max(need, 1) and (all(x == lo for x in given) or all(x == hi for x in given))
        else:
            raise InstrumentError(f"flag {fl.code}: unknown kind {fl.kind!r}")
        if hit:
            flagged.append(fl)
    return rows, expected, flagged
