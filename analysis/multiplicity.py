"""Multiplicity: Holm and Benjamini–Hochberg adjustment across a family of tests.

A trial report presents families of tests (secondary outcomes, subgroups, moderators); each family's
p-values are adjusted together. Holm (1979) controls the family-wise error rate; Benjamini & Hochberg
(1995) the false discovery rate. Both follow R's ``p.adjust`` (statsmodels ``multipletests``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["adjust_pvalues", "adjust_table", "format_p"]

_METHODS = {
    "holm": "holm",
    "bh": "fdr_bh",
    "fdr_bh": "fdr_bh",
    "bonferroni": "bonferroni",
    "hochberg": "simes-hochberg",
}


def adjust_pvalues(p: Sequence[float], method: str = "holm", alpha: float = 0.05) -> pd.DataFrame:
    """Adjusted p-values and rejections for one family (missing p-values stay missing and do not count).

    Parameters
    ----------
    p : sequence of float
    method : {"holm", "bh", "bonferroni", "hochberg"}
        ``bh`` is Benjamini–Hochberg (false discovery rate).

    Returns
    -------
    DataFrame
        ``p, p_adjusted, reject, method`` in the input order.

    Examples
    --------
    >>> adjust_pvalues([0.01, 0.04, 0.03], "holm")["p_adjusted"].round(2).tolist()
    [0.03, 0.06, 0.06]
    >>> adjust_pvalues([0.01, 0.04, 0.03], "bh")["p_adjusted"].round(2).tolist()
    [0.03, 0.04, 0.04]
    """
    from statsmodels.stats.multitest import multipletests

    if method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}")
    arr = np.asarray(p, float)
    if ((arr < 0) | (arr > 1))[~np.isnan(arr)].any():
        raise ValueError("p-values must lie in [0, 1]")
    adj = np.full(arr.shape, np.nan)
    rej = np.zeros(arr.shape, bool)
    ok = ~np.isnan(arr)
    if ok.any():
        holm = _holm if method == "holm" else None
        r, a = holm(arr[ok], alpha) if holm else multipletests(arr[ok], alpha=alpha, method=_METHODS[method])[:2]
        adj[ok], rej[ok] = a, r
    return pd.DataFrame({"p": arr, "p_adjusted": adj, "reject": rej, "method": method})


def _holm(p: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(reject, adjusted p) of Holm's step-down procedure: statsmodels' ``multipletests(method="holm")``
    step by step, without the full garbage collection it runs on every call (tenths of a second in a
    service process holding many objects)."""
    order = np.argsort(p)
    ps = np.take(p, order)
    k = np.arange(len(ps), 0, -1)
    notreject = ps > alpha / k
    stop = np.nonzero(notreject)[0]
    notreject[(stop.min() if stop.size else len(ps)) :] = True
    adjusted = np.maximum.accumulate(ps * k)
    adjusted[adjusted > 1] = 1
    reject, adj = np.empty_like(notreject), np.empty_like(adjusted)
    reject[order], adj[order] = ~notreject, adjusted
    return reject, adj


def adjust_table(
    table: pd.DataFrame,
    p: str = "p",
    family: str | Sequence[str] | None = None,
    method: str = "holm",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Add ``p_adjusted`` (and ``adjustment``) to a results table, adjusting within each family.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"outcome": ["phq9", "gad7", "lsns6"], "p": [0.01, 0.04, 0.03]})
    >>> adjust_table(t, method="bh")["p_adjusted"].round(2).tolist()
    [0.03, 0.04, 0.04]
    """
    out = table.copy()
    out["p_adjusted"] = np.nan
    groups = [(None, out)] if family is None else out.groupby(family, sort=False, dropna=False)
    for _, g in groups:
        out.loc[g.index, "p_adjusted"] = adjust_pvalues(g[p].to_numpy(float), method, alpha)["p_adjusted"].to_numpy()
    out["adjustment"] = method
    return out


def format_p(p: float, decimals: int = 3) -> str:
    """A p-value for a report: ``< 0.001`` below a thousandth, otherwise rounded (never ``0.00``).

    Examples
    --------
    >>> format_p(0.00004), format_p(0.0421), format_p(float("nan"))
    ('< 0.001', '0.042', '')
    """
    if p is None or not np.isfinite(p):
        return ""
    floor = 10.0**-decimals
    return f"< {floor:.{decimals}f}" if p < floor else f"{p:.{decimals}f}"
