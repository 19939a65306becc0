"""Table 1: baseline characteristics by arm, as CONSORT item 15 asks (no significance tests).

Continuous variables show mean (SD), or median [IQR] when the pooled distribution is skewed
(|sample skewness| > 1); categorical variables show n (%) of the arm's participants with a value;
every variable shows how many participants of the arm have no value. Quartiles are R's type 7.

Examples
--------
>>> import pandas as pd
>>> people = pd.DataFrame({"arm": ["A", "A", "A", "B", "B"], "age": [40, 50, None, 30, 34],
...                        "sex": ["f", "m", "f", None, "f"]})
>>> t = table1(people, [Variable("age", "Age, years"), Variable("sex", "Sex", "categorical")], arms=["A", "B"])
>>> t[["variable", "level", "arm", "cell", "missing"]].values.tolist()  # doctest: +NORMALIZE_WHITESPACE
[['age', '', 'A', '45.0 (7.1)', 1], ['age', '', 'B', '32.0 (2.8)', 0],
 ['sex', 'f', 'A', '2 (66.7%)', 0], ['sex', 'f', 'B', '1 (100.0%)', 1],
 ['sex', 'm', 'A', '1 (33.3%)', 0], ['sex', 'm', 'B', '0 (0.0%)', 1]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["Variable", "table1", "SKEW_LIMIT"]

#: Above this absolute pooled skewness a continuous variable is summarised by median [IQR].
SKEW_LIMIT = 1.0


@dataclass(frozen=True)
class Variable:
    """A row group of Table 1: a column, its label, ``continuous`` or ``categorical``, and for
    categorical variables the order of levels (default: sorted) with their labels."""

    column: str
    label: str
    kind: str = "continuous"
    decimals: int = 1
    levels: tuple[str, ...] | None = None


def _summary(values: pd.Series, skewed: bool, decimals: int) -> tuple[str, str]:
    v = values.dropna().astype(float)
    if v.empty:
        return "", "no data"
    if skewed:
        q1, med, q3 = np.percentile(v, [25, 50, 75])
        return "median [IQR]", f"{med:.{decimals}f} [{q1:.{decimals}f}, {q3:.{decimals}f}]"
    sd = v.std(ddof=1) if len(v) > 1 else float("nan")
    sd_text = "–" if np.isnan(sd) else f"{sd:.{decimals}f}"
    return "mean (SD)", f"{v.mean():.{decimals}f} ({sd_text})"


def table1(
    people: pd.DataFrame, variables: Sequence[Variable], *, arm: str = "arm", arms: Sequence[str] | None = None
) -> pd.DataFrame:
    """Baseline characteristics by arm, one row per variable × level × arm (tidy).

    Parameters
    ----------
    people : DataFrame
        One row per participant: ``arm`` and the variables' columns (NaN/None = missing).
    variables : sequence of Variable
    arms : sequence of str, optional
        Column order (default: order of appearance).

    Returns
    -------
    DataFrame
        ``variable, label, kind, level, statistic, arm, N, n, cell, missing``: ``N`` the arm's
        participants, ``n`` those with a value (continuous) or with this level (categorical),
        ``cell`` the printed summary, ``missing`` the arm's participants without a value.
    """
    arms = list(arms) if arms is not None else list(dict.fromkeys(people[arm]))
    rows = []
    for var in variables:
        col = people[var.column] if var.column in people else pd.Series([np.nan] * len(people), index=people.index)
        if var.kind == "continuous":
            pooled = pd.to_numeric(col, errors="coerce").dropna()
            skewed = len(pooled) > 2 and pooled.nunique() > 1 and abs(stats.skew(pooled, bias=False)) > SKEW_LIMIT
            for a in arms:
                vals = pd.to_numeric(col[people[arm] == a], errors="coerce")
                stat, cell = _summary(vals, skewed, var.decimals)
                rows.append(
                    [
                        var.column,
                        var.label,
                        var.kind,
                        "",
                        stat or "mean (SD)",
                        a,
                        len(vals),
                        int(vals.notna().sum()),
                        cell,
                        int(vals.isna().sum()),
                    ]
                )
        else:
            present = col.dropna().astype(str)
            levels = list(var.levels) if var.levels else sorted(present.unique())
            for lev in levels:
                for a in arms:
                    vals = col[people[arm] == a]
                    have = vals.dropna().astype(str)
                    k = int((have == lev).sum())
                    cell = f"{k} ({100 * k / len(have):.1f}%)" if len(have) else "no data"
                    rows.append(
                        [var.column, var.label, var.kind, lev, "n (%)", a, len(vals), k, cell, int(vals.isna().sum())]
                    )
    return pd.DataFrame(
        rows, columns=["variable", "label", "kind", "level", "statistic", "arm", "N", "n", "cell", "missing"]
    )
