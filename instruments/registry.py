"""The process-wide registry: built-in definitions (loaded lazily, once), custom instruments,
licensee wording and licensee calibration tables.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from .loader import check_references, load_directory
from .model import Instrument, InstrumentError

_lock = threading.RLock()
_builtin: dict[str, Instrument] | None = None
_custom: dict[str, Instrument] = {}
_calibrations: dict[tuple[str, str], Calibration] = {}


def _builtins() -> dict[str, Instrument]:
    global _builtin
    if _builtin is None:
        with _lock:
            if _builtin is None:
                _builtin = load_directory()
    return _builtin


def get(code: str | Instrument) -> Instrument:
    """Return the instrument registered under ``code``.

    Custom registrations (``register``, ``load_wording``) take precedence over the built-in file.

    Raises
    ------
    InstrumentError
        For an unknown code.

    Examples
    --------
    >>> get("phq9").scale("phq9").range
    (0, 27)
    """
    if isinstance(code, Instrument):
        return code
    inst = _custom.get(code) or _builtins().get(code)
    if inst is None:
        raise InstrumentError(f"unknown instrument {code!r}; known: {', '.join(codes())}")
    return inst


def codes() -> list[str]:
    """Codes of every registered instrument, sorted.

    Examples
    --------
    >>> "gad7" in codes()
    True
    """
    return sorted(set(_builtins()) | set(_custom))


def all_instruments() -> list[Instrument]:
    """Every registered instrument, sorted by code."""
    return [get(c) for c in codes()]


def register(instrument: Instrument, *, replace: bool = False) -> Instrument:
    """Add a custom instrument (e.g. from :func:`from_redcap_dictionary`) to the process registry.

    A code already in use is refused unless ``replace=True``; built-in codes can only be replaced
    by an instrument with the same items (as :func:`load_wording` does).

    Examples
    --------
    >>> from instruments import from_redcap_dictionary
    >>> insts, report = from_redcap_dictionary("Variable / Field Name,Form Name,Field Type,Field Label\\n"
    ...     "record_id,mood,text,ID\\nmood_1,mood,yesno,Feeling well?\\n")
    >>> register(insts[0]).code
    'mood'
    >>> unregister("mood")
    """
    if not isinstance(instrument, Instrument):
        raise InstrumentError("register() takes an Instrument")
    check_references(instrument, where=instrument.code)
    with _lock:
        existing = _custom.get(instrument.code) or _builtins().get(instrument.code)
        if existing is not None and not replace:
            raise InstrumentError(f"instrument {instrument.code!r} is already registered")
        builtin = _builtins().get(instrument.code)
        if builtin is not None and [i.code for i in builtin.items] != [i.code for i in instrument.items]:
            raise InstrumentError(f"{instrument.code!r} is a built-in instrument; its items cannot change")
        _custom[instrument.code] = instrument
    return instrument


def unregister(code: str) -> None:
    """Remove a custom registration (a built-in instrument falls back to its shipped definition)."""
    with _lock:
        _custom.pop(code, None)


def _read_csv(source: str | Path | IO[str]) -> list[dict[str, str]]:
    if hasattr(source, "read"):
        text = source.read()
        if isinstance(text, bytes):
            text = text.decode("utf-8-sig")
    else:
        text = Path(source).read_text(encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader]
    if reader.fieldnames is None:
        raise InstrumentError("empty CSV")
    return rows


def load_wording(code: str, path: str | Path | IO[str]) -> Instrument:
    """Load a licensee's item wording for an instrument whose wording is not shipped.

    The CSV has the columns ``item_code,text`` (header required, UTF-8). Every item code must exist;
    items absent from the file keep their current text. The updated instrument is registered
    process-wide, so the participant web forms show the wording from then on.

    Examples
    --------
    >>> import io
    >>> inst = load_wording("pam13", io.StringIO("item_code,text\\npam13_1,Licensed wording of item 1\\n"))
    >>> inst.item("pam13_1").text
    'Licensed wording of item 1'
    >>> unregister("pam13")
    """
    inst = get(code)
    rows = _read_csv(path)
    if rows and not {"item_code", "text"} <= set(rows[0]):
        raise InstrumentError("wording CSV needs the columns item_code,text")
    known = {i.code for i in inst.items}
    texts: dict[str, str] = {}
    bad = []
    for n, row in enumerate(rows, start=2):
        if row["item_code"] not in known:
            bad.append(f"line {n}: unknown item {row['item_code']!r}")
        elif not row["text"]:
            bad.append(f"line {n}: empty text for {row['item_code']}")
        else:
            texts[row["item_code"]] = row["text"]
    if bad:
        raise InstrumentError("; ".join(bad))
    items = tuple(dataclasses.replace(i, text=texts.get(i.code, i.text)) for i in inst.items)
    notes = dict(inst.notes)
    notes["wording_loaded"] = True
    updated = dataclasses.replace(inst, items=items, notes=notes)
    return register(updated, replace=True)


@dataclass(frozen=True)
class Calibration:
    """A raw-to-score table for a ``lookup`` scale. Values between two rows are interpolated linearly;
    raw values outside the table are not scored."""

    instrument: str
    scale: str
    raw: np.ndarray
    value: np.ndarray

    def lookup(self, raw: Any) -> np.ndarray:
        arr = np.asarray(raw, dtype=float)
        out = np.interp(arr, self.raw, self.value)
        outside = (arr < self.raw[0]) | (arr > self.raw[-1]) | np.isnan(arr)
        return np.where(outside, np.nan, out)


_RAW_COLUMNS = ("raw", "raw_score")
_VALUE_COLUMNS = ("activation", "activation_score", "score", "value")


def load_calibration(path: str | Path | IO[str], instrument: str = "pam13", scale: str | None = None) -> Calibration:
    """Register a licensee's raw-to-score calibration table (CSV) for a ``lookup`` scale.

    Accepted columns (case-insensitive, header required): the raw score in ``raw``, ``raw_score`` or
    ``<source scale>`` (e.g. ``pam13_raw``), and the calibrated score in ``activation``,
    ``activation_score``, ``score``, ``value`` or ``<scale>`` (e.g. ``pam13_activation``). Other columns
    are ignored. Raw values must be unique numbers; scores must lie in the scale's range.
    From then on (process-wide) :func:`score` computes the scale and its bands; raw values between
    two rows are interpolated linearly, values outside the table are not scored.

    Examples
    --------
    >>> import io
    >>> cal = load_calibration(io.StringIO("raw,activation\\n13,0\\n52,100\\n"), instrument="pam13")
    >>> round(float(cal.lookup(32.5)), 6)
    50.0
    >>> clear_calibration()
    """
    inst = get(instrument)
    lookups = [s for s in inst.scales if s.method == "lookup"]
    if scale is not None:
        lookups = [s for s in lookups if s.code == scale]
    if len(lookups) != 1:
        raise InstrumentError(f"{inst.code}: name the lookup scale to calibrate (found {[s.code for s in lookups]})")
    target = lookups[0]
    rows = _read_csv(path)
    if not rows:
        raise InstrumentError("calibration table has no rows")
    cols = set(rows[0])
    raw_col = next((c for c in (*_RAW_COLUMNS, target.source) if c in cols), None)
    val_col = next((c for c in (*_VALUE_COLUMNS, target.code) if c in cols), None)
    if raw_col is None or val_col is None:
        raise InstrumentError(
            f"calibration CSV needs a raw column ({', '.join(_RAW_COLUMNS)}, {target.source}) "
            f"and a score column ({', '.join(_VALUE_COLUMNS)}, {target.code}); got {sorted(cols)}"
        )
    raw, val, bad = [], [], []
    for n, row in enumerate(rows, start=2):
        try:
            raw.append(float(row[raw_col]))
            val.append(float(row[val_col]))
        except ValueError:
            bad.append(f"line {n}: not a number")
    lo, hi = target.range
    raw_a, val_a = np.array(raw), np.array(val)
    if len(set(raw)) != len(raw):
        bad.append("raw scores repeat")
    if np.any(np.isnan(raw_a)) or np.any(np.isnan(val_a)):
        bad.append("missing numbers")
    if np.any((val_a < lo) | (val_a > hi)):
        bad.append(f"scores outside {lo}-{hi}")
    if bad:
        raise InstrumentError("calibration table: " + "; ".join(bad))
    order = np.argsort(raw_a)
    cal = Calibration(inst.code, target.code, raw_a[order], val_a[order])
    with _lock:
        _calibrations[(inst.code, target.code)] = cal
    return cal


def clear_calibration(instrument: str | None = None) -> None:
    """Forget registered calibration tables (of one instrument, or all)."""
    with _lock:
        for key in list(_calibrations):
            if instrument is None or key[0] == instrument:
                del _calibrations[key]


def calibration(instrument: str, scale: str) -> Calibration | None:
    """The registered calibration of a lookup scale, or None."""
    return _calibrations.get((instrument, scale))
