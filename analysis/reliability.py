"""Internal consistency: Cronbach's alpha (with CI), McDonald's omega, item-total correlations.

Input is the ``items`` export (one row per participant × wave × item: ``participant, wave,
instrument, item, value``) or a wide DataFrame of item columns.

Omega estimator: omega total from a one-factor maximum-likelihood factor analysis of the item
correlation matrix (statsmodels ``Factor(method="ml")``):
``omega = (Σλ)² / ((Σλ)² + Σψ)`` with standardised loadings λ and uniquenesses ψ = 1 − λ²
(McDonald 1999, *Test theory: a unified treatment*, ch. 6). It equals alpha when the items are
tau-equivalent and exceeds it otherwise.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pingouin as pg

__all__ = ["cronbach_alpha", "mcdonald_omega", "item_total", "reliability"]


#: Column names that identify a respondent rather than hold an item (never scored as items).
ID_COLUMNS = frozenset({"participant", "participant_id", "id", "pid", "subject", "record_id", "respondent", "wave"})


def _wide(items: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Item columns as floats: ``columns`` if given, else the numeric columns that are not identifiers."""
    if columns is not None:
        missing = [c for c in columns if c not in items.columns]
        if missing:
            raise ValueError(f"item column(s) not in the frame: {missing}")
        return items[list(columns)].apply(pd.to_numeric, errors="coerce").astype(float)
    num = items.select_dtypes("number")
    keep = [c for c in num.columns if str(c).lower() not in ID_COLUMNS and not str(c).lower().endswith("_id")]
    return num[keep].astype(float)


def cronbach_alpha(
    items: pd.DataFrame, ci: float = 0.95, nan_policy: str = "listwise", columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Cronbach's alpha with its F-based confidence interval (pingouin).

    Parameters
    ----------
    items : DataFrame
        One column per item, one row per respondent. Identifier columns (``participant``, ``id``,
        ``*_id``, ...) are never treated as items; pass ``columns`` to name the items explicitly.
    nan_policy : {"listwise", "pairwise"}
        Listwise (default) drops respondents with any missing item.

    Returns
    -------
    DataFrame
        One row: ``n, k, alpha, ci_lower, ci_upper``.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"a": [1, 2, 3, 4, 5], "b": [2, 2, 3, 5, 5], "c": [1, 3, 3, 4, 4]})
    >>> round(float(cronbach_alpha(df)["alpha"].iloc[0]), 3)
    0.954
    """
    w = _wide(items, columns)
    if w.shape[1] < 2:
        raise ValueError("Cronbach's alpha needs at least two item columns")
    n = len(w.dropna()) if nan_policy == "listwise" else len(w)
    a, (lo, hi) = pg.cronbach_alpha(data=w, ci=ci, nan_policy=nan_policy)
    return pd.DataFrame([{"n": n, "k": w.shape[1], "alpha": float(a), "ci_lower": float(lo), "ci_upper": float(hi)}])


def mcdonald_omega(items: pd.DataFrame) -> pd.DataFrame:
    """McDonald's omega total from a one-factor ML factor analysis (listwise complete rows).

    Returns
    -------
    DataFrame
        One row: ``n, k, omega`` plus ``loadings`` (dict item -> standardised loading).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> f = rng.normal(size=300)
    >>> df = pd.DataFrame({f"i{j}": f + rng.normal(scale=0.8, size=300) for j in range(5)})
    >>> 0.85 < float(mcdonald_omega(df)["omega"].iloc[0]) < 0.92
    True
    """
    from statsmodels.multivariate.factor import Factor

    w = _wide(items).dropna()
    k = w.shape[1]
    if len(w) < k + 2:
        return pd.DataFrame([{"n": len(w), "k": k, "omega": np.nan, "loadings": {}}])
    sd = w.std()
    if (sd == 0).any():
        w = w.loc[:, sd > 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fa = Factor(w.to_numpy(), n_factor=1, method="ml").fit()
    lam = np.asarray(fa.loadings).ravel()
    if lam.sum() < 0:  # the sign of a single factor is arbitrary
        lam = -lam
    psi = np.clip(1 - lam**2, 0, None)
    omega = lam.sum() ** 2 / (lam.sum() ** 2 + psi.sum())
    return pd.DataFrame(
        [
            {
                "n": len(w),
                "k": w.shape[1],
                "omega": float(omega),
                "loadings": dict(zip(w.columns, np.round(lam, 4), strict=False)),
            }
        ]
    )


def item_total(items: pd.DataFrame) -> pd.DataFrame:
    """Corrected item-total correlations and alpha if the item is dropped.

    Returns
    -------
    DataFrame
        ``item, n, mean, sd, r_item_rest, alpha_if_deleted`` (listwise complete rows).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"a": [1, 2, 3, 4, 5], "b": [2, 2, 3, 5, 5], "c": [1, 3, 3, 4, 4]})
    >>> item_total(df)["item"].tolist()
    ['a', 'b', 'c']
    """
    w = _wide(items).dropna()
    total = w.sum(axis=1)
    rows = []
    for c in w.columns:
        rest = total - w[c]
        r = float(np.corrcoef(w[c], rest)[0, 1]) if w[c].std() > 0 and rest.std() > 0 else np.nan
        others = w.drop(columns=c)
        a = float(pg.cronbach_alpha(data=others)[0]) if others.shape[1] >= 2 else np.nan
        rows.append(
            {
                "item": c,
                "n": len(w),
                "mean": float(w[c].mean()),
                "sd": float(w[c].std()),
                "r_item_rest": r,
                "alpha_if_deleted": a,
            }
        )
    return pd.DataFrame(rows)


def reliability(
    items: pd.DataFrame,
    by: Sequence[str] = ("instrument", "wave"),
    scales: dict[str, Sequence[str]] | None = None,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Alpha (with CI) and omega per instrument (or scale) and wave from the ``items`` export.

    Parameters
    ----------
    items : DataFrame
        ``participant, wave, instrument, item, value`` rows.
    by : sequence of str
        Grouping columns (default instrument × wave).
    scales : dict, optional
        ``{scale_code: [item codes]}`` to compute subscales (e.g. LSNS-6 family/friends) instead of
        whole instruments; the ``instrument`` column then holds the scale code.

    Returns
    -------
    DataFrame
        ``<by columns>, n, k, alpha, ci_lower, ci_upper, omega``.

    Examples
    --------
    >>> import pandas as pd
    >>> items = pd.DataFrame({"participant": [1, 1, 2, 2, 3, 3, 4, 4], "wave": "baseline", "instrument": "x",
    ...                       "item": ["a", "b"] * 4, "value": [1, 2, 2, 2, 3, 4, 4, 4]})
    >>> reliability(items)[["instrument", "wave", "n", "k"]].values.tolist()
    [['x', 'baseline', 4, 2]]
    """
    need = {"participant", "item", "value"} | set(by)
    missing = need - set(items.columns)
    if missing:
        raise ValueError(f"items frame lacks column(s): {sorted(missing)}")
    df = items.copy()
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    if scales:
        parts = []
        for code, its in scales.items():
            sub = df[df["item"].isin(list(its))].copy()
            sub["instrument"] = code
            parts.append(sub)
        df = pd.concat(parts, ignore_index=True)
    rows = []
    for keys, g in df.groupby(list(by), sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        w = g.pivot_table(index="participant", columns="item", values="value", aggfunc="first")
        w = w.loc[:, w.notna().any()]
        rec = dict(zip(by, keys, strict=False))
        if w.shape[1] < 2 or len(w.dropna()) < 3:
            rows.append(
                {
                    **rec,
                    "n": len(w.dropna()),
                    "k": w.shape[1],
                    "alpha": np.nan,
                    "ci_lower": np.nan,
                    "ci_upper": np.nan,
                    "omega": np.nan,
                }
            )
            continue
        a = cronbach_alpha(w, ci=ci).iloc[0]
        o = mcdonald_omega(w).iloc[0]
        rows.append(
            {
                **rec,
                "n": int(a["n"]),
                "k": int(a["k"]),
                "alpha": a["alpha"],
                "ci_lower": a["ci_lower"],
                "ci_upper": a["ci_upper"],
                "omega": o["omega"],
            }
        )
    return pd.DataFrame(rows)
