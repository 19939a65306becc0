"""Vectorised scoring: a whole frame of responses (one row each) or a long frame of items at once.

The arithmetic is the engine's (:mod:`instruments.engine`), so :func:`score_frame` and
:func:`instruments.score` agree row by row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import registry
from .model import Instrument, InstrumentError, Problem, ValidationFailed

if TYPE_CHECKING:
    import pandas as pd  # imported at run time only where frames are scored

from .engine import _NUMERIC_KINDS, _REASONS, _compile, _Compiled, _mirror, _score_columns


def _column_values(comp: _Compiled, code: str, series: pd.Series, errors: str, problems: list[Problem]) -> np.ndarray:
    import pandas as pd

    item = comp.items[code]
    if series.dtype == object or pd.api.types.is_string_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        num = pd.to_numeric(series.mask(series.map(lambda x: isinstance(x, (bool, np.bool_)))), errors="coerce")
        bad = num.isna() & series.notna()
        if bad.any():
            rows = list(series.index[bad.to_numpy()][:5])
            problems.append(Problem(code, "not_a_number", f"{int(bad.sum())} value(s) are not numbers (rows {rows})"))
        x = num.to_numpy(dtype=float, na_value=np.nan)
    else:
        x = series.to_numpy(dtype=float, na_value=np.nan)
    present = ~np.isnan(x)
    if item.options:
        codes = np.array(sorted(comp.valid[code]), dtype=float)
        bad = present & ~np.isin(x, codes)
        rule = "not_an_option"
    elif item.kind in ("integer", "number"):
        lo = -np.inf if item.min is None else item.min
        hi = np.inf if item.max is None else item.max
        bad = present & ((x < lo) | (x > hi))
        rule = "out_of_range"
    else:
        bad = np.zeros(len(x), dtype=bool)
        rule = ""
    if bad.any():
        rows = list(series.index[bad][:5])
        problems.append(Problem(code, rule, f"{int(bad.sum())} value(s) invalid (rows {rows})"))
        x = np.where(bad, np.nan, x)
    miss = comp.missing.get(code)
    if miss:
        x = np.where(np.isin(x, np.array(sorted(miss), dtype=float)), np.nan, x)
    rev = comp.reverse.get(code)
    if rev is not None:
        x = _mirror(rev, x)
    return x


def score_frame(
    instrument: str | Instrument,
    df: pd.DataFrame,
    id_cols: Sequence[str] | None = None,
    *,
    errors: str = "raise",
    detail: bool = False,
) -> pd.DataFrame:
    """Score many responses at once (vectorised); long output, one row per input row and scale.

    Parameters
    ----------
    instrument : str or Instrument
    df : DataFrame
        One row per response; item columns named by item code (missing columns = unanswered).
        A column named like an external scale (e.g. ``pam13_activation``) supplies external scores.
    id_cols : list of str, optional
        Columns copied to the output (e.g. participant, wave). Without them the output index repeats
        the input index.
    errors : {"raise", "coerce"}
        ``"raise"``: invalid values raise :class:`ValidationFailed` listing every column and rule;
        ``"coerce"``: invalid values count as unanswered.
    detail : bool
        Also return ``missing_reason`` and ``flags`` columns.

    Returns
    -------
    DataFrame
        Columns ``[*id_cols, scale, value, band, level, items_answered, items_expected, prorated]``,
        rows ordered by input row, then scale in definition order.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"pid": ["a", "b"], **{f"gad7_{i}": [0, 3] for i in range(1, 8)}})
    >>> score_frame("gad7", df, id_cols=["pid"])[["pid", "scale", "value", "band"]]
      pid scale  value     band
    0   a  gad7    0.0  minimal
    1   b  gad7   21.0   severe
    """
    import pandas as pd

    inst = registry.get(instrument)
    if errors not in ("raise", "coerce"):
        raise ValueError("errors must be 'raise' or 'coerce'")
    id_cols = list(id_cols or [])
    missing_ids = [c for c in id_cols if c not in df.columns]
    if missing_ids:
        raise KeyError(f"id columns not in frame: {missing_ids}")
    comp = _compile(inst)
    n = len(df)
    problems: list[Problem] = []
    cols = {
        code: _column_values(comp, code, df[code], errors, problems)
        for code, it in comp.items.items()
        if code in df.columns and it.kind in _NUMERIC_KINDS
    }
    external = {}
    for sc in inst.scales:
        if sc.external and sc.code in df.columns:
            e = pd.to_numeric(df[sc.code], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            bad = ~np.isnan(e) & ((e < sc.range[0]) | (e > sc.range[1]))
            bad |= np.isnan(e) & df[sc.code].notna().to_numpy()
            if bad.any():
                problems.append(
                    Problem(
                        sc.code,
                        "external_out_of_range",
                        f"{int(bad.sum())} external score(s) invalid (rows {list(df.index[bad][:5])})",
                    )
                )
                e = np.where(bad, np.nan, e)
            external[sc.code] = e
    if problems and errors == "raise":
        raise ValidationFailed(problems)
    out, flags = _score_columns(inst, cols, external, n)
    S = len(inst.scales)

    def inter(key, dtype=None):
        return np.column_stack([out[sc.code][key] for sc in inst.scales]).ravel() if S else np.empty(0)

    data: dict[str, Any] = {c: np.repeat(df[c].to_numpy(), S) for c in id_cols}
    data["scale"] = np.tile(np.array([sc.code for sc in inst.scales], dtype=object), n)
    data["value"] = inter("value")
    data["band"] = inter("band")
    data["level"] = pd.array(inter("level"), dtype="Int64")
    data["items_answered"] = inter("answered").astype(np.int64)
    data["items_expected"] = np.tile(np.array([out[sc.code]["expected"] for sc in inst.scales], dtype=np.int64), n)
    data["prorated"] = inter("prorated").astype(bool)
    if detail:
        reasons = inter("reason")
        mins = np.tile(np.array([sc.min_items for sc in inst.scales]), n)
        exp = data["items_expected"]
        data["missing_reason"] = [
            None if r == 0 else _REASONS[int(r)].format(answered=a, expected=e, min=m)
            for r, a, e, m in zip(reasons, data["items_answered"], exp, mins, strict=True)
        ]
        per_scale = []
        for sc in inst.scales:
            mine = [(fl.code, m) for fl, m in flags if not fl.scales or sc.code in fl.scales]
            col: list[list[str]] = [[] for _ in range(n)]
            for code, m in mine:
                for i in np.flatnonzero(m):
                    col[i].append(code)
            per_scale.append(col)
        data["flags"] = [per_scale[j][i] for i in range(n) for j in range(S)]
    index = None if id_cols else np.repeat(df.index.to_numpy(), S)
    return pd.DataFrame(data, index=index)


ITEM_COLUMNS = ["participant", "wave", "instrument", "item", "value"]


def scored_items(items: pd.DataFrame) -> pd.DataFrame:
    """Item answers as the scales score them: what reliability (alpha, omega) should describe.

    Only items that enter a scale scored from its items are kept (not external scores such as the
    PAM-13 activation); answers coded as missing ("N/A", "don't know") are dropped and
    reverse-scored items are mirrored, as :func:`score` does before it sums. Answers that are not
    an option of their item, and instruments the registry does not know, are left out.

    Parameters
    ----------
    items : DataFrame
        The long ``items`` shape: ``participant, wave, instrument, item, value``.

    Returns
    -------
    DataFrame
        The same columns, ``value`` as float, one row per answer kept (instrument by instrument).

    Examples
    --------
    >>> import pandas as pd
    >>> answers = pd.DataFrame({"participant": "p1", "wave": "m0", "instrument": "hls_eu_q6",
    ...                         "item": ["hls_eu_q6_1", "hls_eu_q6_2"], "value": [3, 5]})
    >>> scored_items(answers)["value"].tolist()  # 5 is "don't know": not an answer for scoring
    [3.0]
    """
    import pandas as pd

    parts = []
    for code, group in items.groupby("instrument", sort=False):
        try:
            comp = _compile(registry.get(str(code)))
        except InstrumentError:
            continue
        scored = {i for sc in comp.instrument.scales if not sc.external for i in sc.items if comp.items[i].scored}
        group = group[group["item"].isin(scored)]
        x = pd.to_numeric(group["value"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        out = np.full(len(group), np.nan)
        for item, rows in group.groupby("item", sort=False).indices.items():
            v = x[rows]
            valid = comp.valid.get(item)
            if valid is not None:
                v = np.where(np.isin(v, sorted(valid)), v, np.nan)
            missing = comp.missing.get(item)
            if missing:
                v = np.where(np.isin(v, sorted(missing)), np.nan, v)
            rev = comp.reverse.get(item)
            if rev is not None:
                v = _mirror(rev, v)
            out[rows] = v
        parts.append(group.assign(value=out))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=float if c == "value" else object) for c in ITEM_COLUMNS})
    return pd.concat(parts)[ITEM_COLUMNS].dropna(subset=["value"]).reset_index(drop=True)
