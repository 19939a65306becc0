"""Attrition and missingness: who completed which wave, and whether dropout relates to baseline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .frame import DROPOUT_STATUSES, _ensure, baseline, participants, wave_order

__all__ = ["completion", "dropout_by_baseline"]


def completion(frame: pd.DataFrame, by: Sequence[str] = ("arm",), scale: str | None = None) -> pd.DataFrame:
    """Per-wave completion by group, among the participants for whom the wave is due.

    A wave is due for a participant once its window has closed (``wave_offset <= due_offset``, the
    column the export fills from the study's wave windows); participants still inside or before the
    window are neither completers nor non-completers. A participant completed a wave when at least one
    score (or ``scale``'s score) is non-missing. Frames without ``due_offset`` fall back to everyone
    enrolled, and ``denominator`` says so.

    Returns
    -------
    DataFrame
        ``<by>, wave, wave_offset, enrolled, due, completed, completed_pct, attrition_pct, denominator``
        (``completed_pct = 100 · completed / due``; ``attrition_pct`` its complement among the due).

    Examples
    --------
    >>> import pandas as pd
    >>> long = pd.DataFrame({"participant": ["a", "a", "b", "c"], "arm": "x", "scale": "phq9",
    ...     "wave": ["baseline", "m12", "baseline", "baseline"], "wave_offset": [0, 365, 0, 0],
    ...     "value": [5.0, 4.0, 6.0, 7.0], "due_offset": [365, 365, 365, 0]})
    >>> completion(long)[["wave", "enrolled", "due", "completed", "completed_pct"]].values.tolist()
    [['baseline', 3, 3, 3, 100.0], ['m12', 3, 2, 1, 50.0]]
    """
    long = _ensure(frame)
    by = list(by)
    p = participants(long)
    done = long[long["value"].notna()]
    if scale is not None:
        done = done[done["scale"] == scale]
    done = done[["participant", "wave"]].drop_duplicates()
    waves = wave_order(long)
    offsets = long.groupby("wave")["wave_offset"].first()
    known = p["due_offset"].notna().all() if "due_offset" in p else False

    def count(df: pd.DataFrame, name: str) -> pd.DataFrame:
        if by:
            return df.groupby(by).size().rename(name).reset_index()
        return pd.DataFrame({name: [len(df)]})

    enrolled = count(p, "enrolled")
    rows = []
    for w in waves:
        off = offsets.get(w, np.nan)
        due = p[p["due_offset"] >= off] if known and not np.isnan(off) else p
        got = due[due["participant"].isin(done[done["wave"] == w]["participant"])]
        t = (
            enrolled.merge(count(due, "due"), on=by, how="left")
            if by
            else pd.concat([enrolled, count(due, "due")], axis=1)
        )
        t = (
            t.merge(count(got, "completed"), on=by, how="left")
            if by
            else pd.concat([t, count(got, "completed")], axis=1)
        )
        t["wave"], t["wave_offset"] = w, off
        rows.append(t)
    out = pd.concat(rows, ignore_index=True)
    out["due"] = out["due"].fillna(0).astype(int)
    out["completed"] = out["completed"].fillna(0).astype(int)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["completed_pct"] = np.where(
            out["due"] > 0, 100 * out["completed"] / out["due"].where(out["due"] > 0, 1), np.nan
        )
    out["attrition_pct"] = 100 - out["completed_pct"]
    out["denominator"] = "due (window closed)" if known else "enrolled (no due information)"
    return out[
        by + ["wave", "wave_offset", "enrolled", "due", "completed", "completed_pct", "attrition_pct", "denominator"]
    ]


def dropout_by_baseline(
    frame: pd.DataFrame, scales: Sequence[str] | None = None, context: Sequence[str] | None = None
) -> pd.DataFrame:
    """Compare baseline scores (and context answers) of participants who dropped out and who stayed.

    Returns
    -------
    DataFrame
        One row per scale: ``variable, n_dropout, n_retained, mean_dropout, sd_dropout,
        mean_retained, sd_retained, difference, smd, test, p`` (Welch t-test, SMD with the
        pooled SD). For each context column one row per answer with the percentages in both
        groups and a chi-square test of the whole table (``test="chi2"``).

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> long = long_from_synthetic(simulate_cohort(60, seed=2))
    >>> dropout_by_baseline(long, scales=["phq9", "lsns6"])["variable"].tolist()
    ['phq9', 'lsns6']
    """
    long = _ensure(frame)
    scales = list(scales) if scales is not None else sorted(long["scale"].unique())
    b = baseline(long, scales=scales)
    dropped = b["status"].isin(DROPOUT_STATUSES)
    rows = []
    for s in scales:
        if s not in b.columns:
            continue
        x, y = b.loc[dropped, s].dropna(), b.loc[~dropped, s].dropna()
        if len(x) < 2 or len(y) < 2:
            p = np.nan
        else:
            p = float(stats.ttest_ind(x, y, equal_var=False).pvalue)
        pooled = np.sqrt(((len(x) - 1) * x.var() + (len(y) - 1) * y.var()) / max(len(x) + len(y) - 2, 1))
        diff = x.mean() - y.mean()
        rows.append(
            {
                "variable": s,
                "level": "",
                "n_dropout": len(x),
                "n_retained": len(y),
                "mean_dropout": x.mean(),
                "sd_dropout": x.std(),
                "mean_retained": y.mean(),
                "sd_retained": y.std(),
                "difference": diff,
                "smd": diff / pooled if pooled > 0 else np.nan,
                "test": "welch_t",
                "p": p,
            }
        )
    ctx = list(context) if context is not None else []
    for c in ctx:
        tab = pd.crosstab(b[c].fillna("(missing)"), dropped)
        p = float(stats.chi2_contingency(tab)[1]) if tab.shape[0] > 1 and tab.shape[1] > 1 else np.nan
        for lvl, r in tab.iterrows():
            nd, nr = r.get(True, 0), r.get(False, 0)
            rows.append(
                {
                    "variable": c,
                    "level": lvl,
                    "n_dropout": int(nd),
                    "n_retained": int(nr),
                    "mean_dropout": 100 * nd / max(dropped.sum(), 1),
                    "sd_dropout": np.nan,
                    "mean_retained": 100 * nr / max((~dropped).sum(), 1),
                    "sd_retained": np.nan,
                    "difference": np.nan,
                    "smd": np.nan,
                    "test": "chi2",
                    "p": p,
                }
            )
    return pd.DataFrame(rows)
