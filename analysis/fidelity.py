"""Fidelity of delivery: scores over time by session, supporter or site, and inter-rater agreement.

Input is the ``fidelity`` export (one row per rating × score part) or any frame with these columns:

``session`` (session id), ``rater`` (who rated), ``part`` (``total``, ``core``, ``form``,
``core_full``), ``value`` (0–100), a time column (``session_date`` as a date, or a number such as
``session_day``) and the grouping columns asked for (``supporter``, ``site``, ``arm``, ``group``).

A session rated by two evaluators counts once in the summaries: its score is the mean of its
raters' scores. The item-level ``fidelity_items`` export (``session, rater, item, component,
value``) feeds :func:`item_agreement`; session scores feed :func:`score_agreement`. Both use the
agreement statistics of :mod:`analysis.agreement` (weighted kappa, ICC).

Examples
--------
>>> import pandas as pd
>>> ratings = pd.DataFrame({
...     "session": [1, 1, 2, 3, 4],
...     "rater": ["e1", "e2", "e1", "e1", "e2"],
...     "supporter": ["S1", "S1", "S1", "S2", "S2"],
...     "part": ["total"] * 5,
...     "value": [80.0, 90.0, 70.0, 60.0, 100.0],
...     "session_date": pd.to_datetime(["2026-01-10", "2026-01-10", "2026-02-03", "2026-01-20", "2026-02-10"]),
... })
>>> t = fidelity_over_time(ratings, by="supporter", period="month")
>>> t[["supporter", "period", "n_sessions", "mean"]].values.tolist()
[['S1', '2026-01', 1, 85.0], ['S1', '2026-02', 1, 70.0], ['S2', '2026-01', 1, 60.0], ['S2', '2026-02', 1, 100.0]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from analysis.agreement import icc, weighted_kappa

__all__ = ["session_scores", "fidelity_over_time", "double_rated", "item_agreement", "score_agreement", "plot_fidelity"]

_PERIODS = {"week": "W", "month": "M", "quarter": "Q", "year": "Y"}


def _need(df: pd.DataFrame, cols: Sequence[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"missing columns: {missing}")


def session_scores(ratings: pd.DataFrame, part: str = "total", keep: Sequence[str] = ()) -> pd.DataFrame:
    """One row per rated session: the mean of its raters' ``part`` scores.

    Returns
    -------
    DataFrame
        ``session``, the ``keep`` columns (first value per session), ``n_raters``, ``value``. Ratings
        whose part has no score (too few items answered) are left out.

    Examples
    --------
    >>> import pandas as pd
    >>> r = pd.DataFrame({"session": [1, 1, 2], "rater": ["a", "b", "a"], "part": ["total"] * 3,
    ...                   "value": [80.0, 90.0, 70.0]})
    >>> session_scores(r)[["n_raters", "value"]].values.tolist()
    [[2.0, 85.0], [1.0, 70.0]]
    """
    _need(ratings, ["session", "rater", "part", "value", *keep])
    d = ratings[(ratings["part"] == part) & ratings["value"].notna()]
    agg = {c: (c, "first") for c in keep}
    out = d.groupby("session", sort=True).agg(**agg, n_raters=("rater", "nunique"), value=("value", "mean"))
    return out.reset_index()


def fidelity_over_time(
    ratings: pd.DataFrame,
    by: str | Sequence[str] | None = "supporter",
    period: str | float | None = "month",
    part: str = "total",
    time: str | None = None,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Mean fidelity per group and period (sessions as the unit; double-rated sessions averaged).

    Parameters
    ----------
    by : str or list of str or None
        Grouping columns, e.g. ``"session"``, ``"supporter"``, ``"site"``, ``["site", "arm"]``; None
        for the whole study.
    period : {"week", "month", "quarter", "year"}, number, or None
        Calendar periods of a date column (default ``session_date``), or bins of that width over a
        numeric column (default ``session_day``, e.g. ``period=28`` for four-week blocks); None for
        no time split.
    part : {"total", "core", "form", "core_full"}
    ci : float
        Level of the t-based interval of the mean.

    Returns
    -------
    DataFrame
        The ``by`` columns, ``period`` (label: ``2026-03`` or the bin's first day), ``n_sessions``,
        ``n_double_rated``, ``mean``, ``sd``, ``min``, ``max``, ``ci_lower``, ``ci_upper``.

    Examples
    --------
    >>> import pandas as pd
    >>> r = pd.DataFrame({"session": [1, 2, 3], "rater": ["a"] * 3, "site": ["n", "n", "s"],
    ...                   "part": ["total"] * 3, "value": [80.0, 60.0, 90.0], "session_day": [3, 40, 10]})
    >>> fidelity_over_time(r, by="site", period=28)[["site", "period", "mean"]].values.tolist()
    [['n', 0, 80.0], ['n', 28, 60.0], ['s', 0, 90.0]]
    """
    keys = [by] if isinstance(by, str) else list(by or [])
    if period is None:
        tcol = None
    elif isinstance(period, str):
        if period not in _PERIODS:
            raise ValueError(f"period must be one of {sorted(_PERIODS)}, a number of days or None")
        tcol = time or "session_date"
    else:
        if not float(period) > 0:
            raise ValueError("a numeric period must be a positive number of days")
        tcol = time or "session_day"
    keep = [k for k in keys if k != "session"] + ([tcol] if tcol else [])
    per = session_scores(ratings, part, keep=keep)
    if tcol is None:
        per["period"] = "all"
    elif isinstance(period, str):
        when = pd.to_datetime(per[tcol])
        per["period"] = when.dt.to_period(_PERIODS[period]).astype(str)
    else:
        width = float(period)  # type: ignore[arg-type]
        start = np.floor(pd.to_numeric(per[tcol]) / width) * width
        per["period"] = start.astype(int) if width.is_integer() else start
    rows = []
    for key, g in per.groupby([*keys, "period"], sort=True):
        key = key if isinstance(key, tuple) else (key,)
        v = g["value"].to_numpy(float)
        n = len(v)
        sd = float(np.std(v, ddof=1)) if n > 1 else np.nan
        half = float(stats.t.ppf(1 - (1 - ci) / 2, n - 1) * sd / np.sqrt(n)) if n > 1 else np.nan
        m = float(v.mean())
        rows.append(
            {
                **dict(zip([*keys, "period"], key, strict=True)),
                "n_sessions": n,
                "n_double_rated": int((g["n_raters"] > 1).sum()),
                "mean": m,
                "sd": sd,
                "min": float(v.min()),
                "max": float(v.max()),
                "ci_lower": m - half,
                "ci_upper": m + half,
            }
        )
    cols = [*keys, "period", "n_sessions", "n_double_rated", "mean", "sd", "min", "max", "ci_lower", "ci_upper"]
    return pd.DataFrame(rows, columns=cols)


def double_rated(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of sessions rated by two or more raters, each session's raters numbered ``rater_slot``
    1, 2, … in the order of ``rater`` (so that two-rater statistics pair them).

    Examples
    --------
    >>> import pandas as pd
    >>> r = pd.DataFrame({"session": [1, 1, 2], "rater": ["b", "a", "a"], "value": [1, 2, 3]})
    >>> double_rated(r)[["session", "rater", "rater_slot"]].values.tolist()
    [[1, 'b', 2], [1, 'a', 1]]
    """
    _need(frame, ["session", "rater"])
    raters = frame[["session", "rater"]].drop_duplicates()
    counts = raters.groupby("session")["rater"].nunique()
    keep = counts[counts >= 2].index
    out = frame[frame["session"].isin(keep)].copy()
    slots = raters[raters["session"].isin(keep)].sort_values(["session", "rater"])
    slots["rater_slot"] = slots.groupby("session").cumcount() + 1
    return out.merge(slots, on=["session", "rater"], how="left")


def item_agreement(items: pd.DataFrame, weights: str | None = "quadratic") -> pd.DataFrame:
    """Agreement of two raters on checklist items of double-rated sessions.

    Each session's first two raters (by ``rater``) are paired; item ratings that are missing or
    "not applicable" (NaN) for either rater are left out. Ratings are ordinal (0 = not delivered …),
    hence quadratic weights by default; ``weights=None`` gives Cohen's unweighted kappa.

    Parameters
    ----------
    items : DataFrame
        ``session, rater, item, value`` (+ ``component``: core / form, optional).

    Returns
    -------
    DataFrame
        One row per item and one per component and ``all`` pooled: ``scope`` (item, component, all),
        ``item``, ``n_sessions``, ``n_pairs``, ``percent_agreement``, ``kappa``, ``se``, ``ci_lower``,
        ``ci_upper``, ``weights``. Kappa is NaN where a scope has a single category (undefined).

    Examples
    --------
    >>> import pandas as pd
    >>> rows = [(s, r, "a", v) for s, r, v in [(1, "x", 2), (1, "y", 2), (2, "x", 1), (2, "y", 2),
    ...                                        (3, "x", 0), (3, "y", 0), (4, "x", 2), (4, "y", 1)]]
    >>> t = item_agreement(pd.DataFrame(rows, columns=["session", "rater", "item", "value"]), weights=None)
    >>> t.loc[t.scope == "all", ["n_pairs", "percent_agreement"]].values.tolist()
    [[4.0, 50.0]]
    """
    _need(items, ["session", "rater", "item", "value"])
    d = double_rated(items)
    d = d[d["rater_slot"] <= 2]
    index = ["session", "item"] + (["component"] if "component" in d.columns else [])
    wide = d.pivot_table(index=index, columns="rater_slot", values="value", aggfunc="first").reset_index()
    wide = wide.rename(columns={1: "r1", 2: "r2"})
    if "r1" not in wide.columns or "r2" not in wide.columns:
        wide = wide.assign(r1=np.nan, r2=np.nan)
    wide = wide.dropna(subset=["r1", "r2"])
    cats = sorted(set(wide["r1"]) | set(wide["r2"]))
    scopes: list[tuple[str, str, pd.DataFrame]] = []
    for item, g in wide.groupby("item", sort=True):
        scopes.append(("item", str(item), g))
    if "component" in wide.columns:
        for comp, g in wide.groupby("component", sort=True):
            scopes.append(("component", str(comp), g))
    scopes.append(("all", "all", wide))
    rows = []
    for scope, name, g in scopes:
        row = {
            "scope": scope,
            "item": name,
            "n_sessions": int(g["session"].nunique()),
            "n_pairs": float(len(g)),
            "percent_agreement": float(100 * (g["r1"] == g["r2"]).mean()) if len(g) else np.nan,
            "kappa": np.nan,
            "se": np.nan,
            "ci_lower": np.nan,
            "ci_upper": np.nan,
            "weights": weights or "unweighted",
        }
        if len(g) >= 2 and len(set(g["r1"]) | set(g["r2"])) >= 2:
            with np.errstate(divide="ignore", invalid="ignore"):  # z of a kappa whose null SE is 0
                k = weighted_kappa(g["r1"].tolist(), g["r2"].tolist(), weights=weights, categories=cats).iloc[0]
            row.update(kappa=float(k["kappa"]), se=float(k["se"]), ci_lower=k["ci_lower"], ci_upper=k["ci_upper"])
        rows.append(row)
    return pd.DataFrame(rows)


def score_agreement(ratings: pd.DataFrame, part: str = "total") -> pd.DataFrame:
    """Intraclass correlation of two raters' session scores (double-rated sessions).

    Different sessions are usually rated by different pairs of evaluators, so the one-way random
    model ICC(1,1) (Shrout & Fleiss 1979) is the primary figure; ICC(2,1) (absolute agreement,
    raters as the first and second rater of each session) is given beside it.

    Returns
    -------
    DataFrame
        ``part, type, shrout_fleiss, description, n_sessions, icc, ci_lower, ci_upper, F, p`` for
        ICC1 and ICC2 (empty when fewer than three sessions were double-rated).

    Examples
    --------
    >>> import pandas as pd
    >>> pairs = [(70, 75), (90, 85), (60, 65), (100, 95), (80, 70)]
    >>> r = pd.DataFrame([(s, rater, "total", v) for s, pair in enumerate(pairs) for rater, v in zip("xy", pair)],
    ...                  columns=["session", "rater", "part", "value"])
    >>> score_agreement(r)[["type", "n_sessions"]].values.tolist()
    [['ICC1', 5], ['ICC2', 5]]
    """
    _need(ratings, ["session", "rater", "part", "value"])
    d = ratings[(ratings["part"] == part) & ratings["value"].notna()]
    d = double_rated(d)
    d = d[d["rater_slot"] <= 2]
    complete = d.groupby("session")["rater_slot"].nunique()
    d = d[d["session"].isin(complete[complete == 2].index)]
    cols = ["part", "type", "shrout_fleiss", "description", "n_sessions", "icc", "ci_lower", "ci_upper", "F", "p"]
    n = int(d["session"].nunique())
    if n < 3:
        return pd.DataFrame(columns=cols)
    res = icc(d, "session", "rater_slot", "value")
    res = res[res["type"].isin(["ICC1", "ICC2"])].copy()
    res["part"] = part
    res["n_sessions"] = n
    return res[cols].reset_index(drop=True)


def plot_fidelity(table: pd.DataFrame, by: str | None = None, ax=None, path=None, title: str | None = None):
    """Mean fidelity per period with its interval, one line per group (a :func:`fidelity_over_time` table).

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"site": ["n", "n", "s"], "period": ["2026-01", "2026-02", "2026-01"],
    ...                   "mean": [80.0, 85.0, 70.0], "ci_lower": [70.0, 75.0, None], "ci_upper": [90.0, 95.0, None]})
    >>> fig = plot_fidelity(t, by="site")
    >>> fig.axes[0].get_legend_handles_labels()[1]
    ['n', 's']
    """
    from analysis.plots import _axes, save

    fig, ax = _axes(ax)
    periods = sorted(
        table["period"].astype(str).unique(), key=lambda p: (len(p), p) if p.lstrip("-").isdigit() else (0, p)
    )
    x = {p: i for i, p in enumerate(periods)}
    groups = table.groupby(by, sort=True) if by else [("all", table)]
    for name, g in groups:
        g = g.assign(_x=g["period"].astype(str).map(x)).sort_values("_x")
        lo = (g["mean"] - g["ci_lower"]).fillna(0).clip(lower=0)
        hi = (g["ci_upper"] - g["mean"]).fillna(0).clip(lower=0)
        ax.errorbar(
            g["_x"].to_numpy(float),
            g["mean"].to_numpy(float),
            yerr=np.vstack([lo.to_numpy(float), hi.to_numpy(float)]),
            marker="o",
            capsize=3,
            label=str(name),
        )
    ax.set_xticks(range(len(periods)), periods, rotation=45 if len(periods) > 6 else 0)
    ax.set_ylim(0, 105)
    ax.set_ylabel("fidelity (% of maximum)")
    ax.set_xlabel("period")
    ax.set_title(title or "Fidelity of delivery over time")
    if by:
        ax.legend(title=by, fontsize="small")
    if path is not None:
        save(fig, path)
    return fig
