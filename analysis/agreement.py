"""Agreement and reliability between raters: weighted kappa, Fleiss' kappa, ICC, Krippendorff's alpha.

Fidelity ratings by independent evaluators, double-coded outcome assessments and repeated
measurements need an agreement statistic that fits the scale:

* :func:`weighted_kappa`: two raters, nominal (unweighted) or ordinal (linear, quadratic weights;
  Cohen 1968), with the large-sample SE of Fleiss, Cohen & Everitt (1969) (statsmodels);
* :func:`fleiss_kappa`: any fixed number of raters per subject, nominal categories (Fleiss 1971);
* :func:`icc`: the six Shrout & Fleiss (1979) intraclass correlations with F-based intervals
  (pingouin ``intraclass_corr``);
* :func:`krippendorff_alpha`: any number of raters, missing ratings, nominal, ordinal, interval or
  ratio level (Krippendorff 2011; the ``krippendorff`` package).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["weighted_kappa", "fleiss_kappa", "icc", "krippendorff_alpha"]


def weighted_kappa(
    rater1: Sequence, rater2: Sequence, weights: str | None = None, categories: Sequence | None = None, ci: float = 0.95
) -> pd.DataFrame:
    """Cohen's kappa for two raters, unweighted or with linear / quadratic agreement weights.

    Parameters
    ----------
    rater1, rater2 : sequences of the same length
        Ratings of the same subjects; pairs with a missing rating are left out (counted in ``n_excluded``).
    weights : {None, "linear", "quadratic"}
        Linear (Cicchetti–Allison) or quadratic (Fleiss–Cohen) weights over the ordered ``categories``.
    categories : sequence, optional
        All possible categories in order (default: the sorted observed values), so that unused
        categories still count in the weights.

    Returns
    -------
    DataFrame
        One row: ``weights, n, n_excluded, kappa, se, ci_lower, ci_upper, z, p`` (SE and test under the
        large-sample variance; the test is of kappa = 0).

    Examples
    --------
    >>> r1 = [1, 2, 3, 3, 2, 1, 4, 1, 2, 3]
    >>> r2 = [1, 2, 3, 4, 2, 2, 4, 1, 3, 3]
    >>> round(float(weighted_kappa(r1, r2, "quadratic")["kappa"].iloc[0]), 3)
    0.857
    """
    from statsmodels.stats.inter_rater import cohens_kappa

    if weights not in (None, "linear", "quadratic"):
        raise ValueError("weights must be None, 'linear' or 'quadratic'")
    a, b = pd.Series(list(rater1)), pd.Series(list(rater2))
    if len(a) != len(b):
        raise ValueError("the two raters must rate the same subjects (equal lengths)")
    ok = a.notna() & b.notna()
    a, b = a[ok], b[ok]
    cats = list(categories) if categories is not None else sorted(set(a) | set(b))
    unknown = (set(a) | set(b)) - set(cats)
    if unknown:
        raise ValueError(f"ratings outside the categories: {sorted(map(str, unknown))}")
    table = pd.crosstab(pd.Categorical(a, categories=cats), pd.Categorical(b, categories=cats), dropna=False)
    table = table.reindex(index=cats, columns=cats, fill_value=0).to_numpy(float)
    wt = {None: None, "linear": "linear", "quadratic": "quadratic"}[weights]
    res = cohens_kappa(table, wt=wt) if wt else cohens_kappa(table)
    k, se = float(res.kappa), float(res.std_kappa)
    q = stats.norm.ppf(1 - (1 - ci) / 2)
    se0 = float(res.std_kappa0)
    z = k / se0 if se0 > 0 else np.nan
    return pd.DataFrame(
        [
            {
                "weights": weights or "unweighted",
                "n": int(ok.sum()),
                "n_excluded": int((~ok).sum()),
                "kappa": k,
                "se": se,
                "ci_lower": k - q * se,
                "ci_upper": k + q * se,
                "z": z,
                "p": float(2 * stats.norm.sf(abs(z))) if np.isfinite(z) else np.nan,
            }
        ]
    )


def fleiss_kappa(ratings: pd.DataFrame | np.ndarray, counts: bool = False) -> pd.DataFrame:
    """Fleiss' kappa for a fixed number of raters per subject (nominal categories).

    Parameters
    ----------
    ratings : DataFrame or array
        ``counts=False``: subjects × raters, each cell a category. ``counts=True``: subjects ×
        categories, each cell the number of raters choosing that category (every row the same total).

    Returns
    -------
    DataFrame
        One row: ``n_subjects, n_raters, n_categories, kappa, se0, z, p`` (SE under kappa = 0, Fleiss,
        Nee & Landis 1979).

    Examples
    --------
    >>> import numpy as np
    >>> counts = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    ...                    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    >>> round(float(fleiss_kappa(counts, counts=True)["kappa"].iloc[0]), 3)
    0.21
    """
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as _fk

    arr = np.asarray(ratings)
    if counts:
        table = arr.astype(float)
    else:
        df = pd.DataFrame(arr).dropna()
        codes = pd.DataFrame(
            {c: pd.Categorical(df[c], categories=sorted(pd.unique(df.to_numpy().ravel()))).codes for c in df}
        )
        table, _ = aggregate_raters(codes.to_numpy())
        table = table.astype(float)
    m = table.sum(axis=1)
    if len(np.unique(m)) != 1:
        raise ValueError("every subject must be rated by the same number of raters")
    n, k = table.shape
    kappa = float(_fk(table, method="fleiss"))
    p_j = table.sum(axis=0) / table.sum()
    r = float(m[0])
    s = float((p_j * (1 - p_j)).sum())
    var0 = 2 / (n * r * (r - 1)) * (s**2 - (p_j * (1 - p_j) * (1 - 2 * p_j)).sum()) / s**2 if s > 0 else np.nan
    se0 = float(np.sqrt(var0)) if var0 and var0 > 0 else np.nan
    z = kappa / se0 if se0 and np.isfinite(se0) else np.nan
    return pd.DataFrame(
        [
            {
                "n_subjects": n,
                "n_raters": int(r),
                "n_categories": k,
                "kappa": kappa,
                "se0": se0,
                "z": z,
                "p": float(2 * stats.norm.sf(abs(z))) if np.isfinite(z) else np.nan,
            }
        ]
    )


# pingouin's row order and McGraw & Wong names -> (type, Shrout & Fleiss name, description)
_SF = [
    ("ICC1", "ICC(1,1)", "one-way random, single rater"),
    ("ICC2", "ICC(2,1)", "two-way random, absolute agreement, single rater"),
    ("ICC3", "ICC(3,1)", "two-way mixed, consistency, single rater"),
    ("ICC1k", "ICC(1,k)", "one-way random, mean of k raters"),
    ("ICC2k", "ICC(2,k)", "two-way random, absolute agreement, mean of k raters"),
    ("ICC3k", "ICC(3,k)", "two-way mixed, consistency, mean of k raters"),
]


def icc(data: pd.DataFrame, targets: str, raters: str, ratings: str, ci: float = 0.95) -> pd.DataFrame:
    """The six Shrout & Fleiss (1979) intraclass correlations (long data: one row per target × rater).

    Returns
    -------
    DataFrame
        ``type`` (ICC1 … ICC3k), ``shrout_fleiss`` (``ICC(2,1)`` …), ``description, icc, F, df1, df2, p,
        ci_lower, ci_upper``. ICC(2,·) is absolute agreement, ICC(3,·) consistency. Targets with a
        missing rating are left out (complete cases).

    Examples
    --------
    >>> import pandas as pd
    >>> sf = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    >>> long = pd.DataFrame([(t, j, v) for t, row in enumerate(sf) for j, v in enumerate(row)],
    ...                     columns=["target", "judge", "rating"])
    >>> icc(long, "target", "judge", "rating")["icc"].round(2).tolist()
    [0.17, 0.29, 0.71, 0.44, 0.62, 0.91]
    """
    import pingouin as pg

    if ci != 0.95:
        raise ValueError("pingouin's ICC intervals are 95%; ci must be 0.95")
    d = data[[targets, raters, ratings]].copy()
    d[ratings] = pd.to_numeric(d[ratings], errors="coerce")
    res = pg.intraclass_corr(data=d, targets=targets, raters=raters, ratings=ratings, nan_policy="omit")
    res = res.reset_index(drop=True)
    ci_col = "CI95" if "CI95" in res.columns else "CI95%"
    out = pd.DataFrame(
        {
            "type": [t for t, _, _ in _SF],
            "shrout_fleiss": [n for _, n, _ in _SF],
            "description": [d_ for _, _, d_ in _SF],
            "icc": res["ICC"].astype(float),
            "F": res["F"].astype(float),
            "df1": res["df1"].astype(float),
            "df2": res["df2"].astype(float),
            "p": res["pval"].astype(float),
            "ci_lower": res[ci_col].map(lambda x: float(x[0])),
            "ci_upper": res[ci_col].map(lambda x: float(x[1])),
        }
    )
    return out.reset_index(drop=True)


def krippendorff_alpha(reliability_data, level: str = "nominal") -> pd.DataFrame:
    """Krippendorff's alpha for raters × units data with missing ratings (``NaN``).

    Parameters
    ----------
    reliability_data : array-like or DataFrame, shape (raters, units)
    level : {"nominal", "ordinal", "interval", "ratio"}

    Returns
    -------
    DataFrame
        One row: ``level, n_raters, n_units, n_pairable, alpha``.

    Examples
    --------
    >>> import numpy as np
    >>> nan = np.nan
    >>> data = [[1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
    ...         [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
    ...         [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
    ...         [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan]]
    >>> round(float(krippendorff_alpha(data, "ordinal")["alpha"].iloc[0]), 3)
    0.815
    """
    import krippendorff

    if level not in ("nominal", "ordinal", "interval", "ratio"):
        raise ValueError("level must be 'nominal', 'ordinal', 'interval' or 'ratio'")
    arr = np.asarray(pd.DataFrame(reliability_data).apply(pd.to_numeric, errors="coerce"), float)
    pairable = int((np.sum(~np.isnan(arr), axis=0) >= 2).sum())
    alpha = float(krippendorff.alpha(reliability_data=arr, level_of_measurement=level)) if pairable else np.nan
    return pd.DataFrame(
        [{"level": level, "n_raters": arr.shape[0], "n_units": arr.shape[1], "n_pairable": pairable, "alpha": alpha}]
    )
