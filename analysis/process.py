"""Process evaluation: dose distributions, training hours, reach, and dose against outcome.

Every function takes the tidy frames of the ``dose`` and ``supporter_training`` exports (or any
frame with the documented columns) and returns a tidy frame; :func:`plot_dose` draws the dose
distribution by group. Nothing here touches HTTP or a database.

Columns used
------------
dose : ``participant``, ``arm``, ``site``, ``wave`` (empty for the whole follow-up),
    ``sessions_attended``, ``minutes_total``, ``proportion_planned``, ``adherent`` …
training : ``supporter``, ``site``, ``record`` (module, refresher, assessment, certification,
    supervision), ``hours``, ``score``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.safety import clopper_pearson

__all__ = ["dose_summary", "training_hours", "reach", "dose_by_tertile", "plot_dose"]


def _overall(dose: pd.DataFrame) -> pd.DataFrame:
    # The whole-follow-up rows when the frame holds wave intervals too.
    if "wave" in dose.columns:
        return dose[dose["wave"].isna() | (dose["wave"] == "")]
    return dose


def _groups(by: str | Sequence[str]) -> list[str]:
    return [by] if isinstance(by, str) else list(by)


def dose_summary(dose: pd.DataFrame, by: str | Sequence[str] = "arm", value: str = "sessions_attended") -> pd.DataFrame:
    """Distribution of a dose measure by group: n, mean, SD, median, quartiles, range, the share
    with any dose and the share adherent.

    Parameters
    ----------
    dose : DataFrame
        The ``dose`` export (whole-follow-up rows are used when wave rows are present).
    by : str or list of str
        Grouping columns, e.g. ``"arm"`` or ``["arm", "site"]``.
    value : str
        ``sessions_attended``, ``minutes_total``, ``proportion_planned`` …

    Returns
    -------
    DataFrame
        ``by`` columns, ``measure``, ``n``, ``mean``, ``sd``, ``median``, ``q1``, ``q3``, ``min``,
        ``max``, ``any_dose`` (share with value > 0), ``adherent`` (share adherent; NaN without a
        definition).

    Examples
    --------
    >>> d = pd.DataFrame({"arm": ["a", "a", "a", "b"], "sessions_attended": [0, 4, 8, 2],
    ...                   "adherent": [False, False, True, None]})
    >>> dose_summary(d)[["arm", "n", "mean", "median", "any_dose", "adherent"]]
      arm  n  mean  median  any_dose  adherent
    0   a  3   4.0     4.0  0.666667  0.333333
    1   b  1   2.0     2.0  1.000000       NaN
    """
    keys = _groups(by)
    df = _overall(dose)
    rows = []
    for key, g in df.groupby(keys, dropna=False, sort=True):
        v = pd.to_numeric(g[value], errors="coerce").dropna()
        adherent = g["adherent"].dropna().astype(bool) if "adherent" in g.columns else pd.Series(dtype=bool)
        rows.append(
            {
                **dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)),
                "measure": value,
                "n": int(len(v)),
                "mean": float(v.mean()) if len(v) else np.nan,
                "sd": float(v.std(ddof=1)) if len(v) > 1 else np.nan,
                "median": float(v.median()) if len(v) else np.nan,
                "q1": float(v.quantile(0.25)) if len(v) else np.nan,
                "q3": float(v.quantile(0.75)) if len(v) else np.nan,
                "min": float(v.min()) if len(v) else np.nan,
                "max": float(v.max()) if len(v) else np.nan,
                "any_dose": float((v > 0).mean()) if len(v) else np.nan,
                "adherent": float(adherent.mean()) if len(adherent) else np.nan,
            }
        )
    return pd.DataFrame(rows)


def training_hours(training: pd.DataFrame, by: str | Sequence[str] = "supporter") -> pd.DataFrame:
    """Training received per supporter (or site): hours of modules and refreshers, modules
    attended, refreshers, supervision contacts, latest assessment score and whether certified.

    Examples
    --------
    >>> t = pd.DataFrame({"supporter": ["s1", "s1", "s1", "s2"], "site": ["n", "n", "n", "s"],
    ...                   "record": ["module", "refresher", "certification", "module"],
    ...                   "hours": [3.0, 1.0, 0.0, 2.5], "score": [None, None, None, None]})
    >>> training_hours(t)[["supporter", "hours", "modules", "refreshers", "certified"]]
      supporter  hours  modules  refreshers  certified
    0        s1    4.0        1           1       True
    1        s2    2.5        1           0      False
    """
    keys = _groups(by)
    rows = []
    for key, g in training.groupby(keys, sort=True):
        taught = g[g["record"].isin(("module", "refresher"))]
        scores = g[g["record"] == "assessment"]["score"].dropna()
        rows.append(
            {
                **dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)),
                "hours": float(taught["hours"].sum()),
                "modules": int((g["record"] == "module").sum()),
                "refreshers": int((g["record"] == "refresher").sum()),
                "supervision": int((g["record"] == "supervision").sum()),
                "last_score": float(scores.iloc[-1]) if len(scores) else np.nan,
                "certified": bool((g["record"] == "certification").any()),
            }
        )
    return pd.DataFrame(rows)


def reach(dose: pd.DataFrame, eligible: Mapping[str, int], by: str = "arm", alpha: float = 0.05) -> pd.DataFrame:
    """RE-AIM reach: of those eligible, the share enrolled, reached by any dose and by an adequate
    (adherent) dose, with exact (Clopper-Pearson) confidence intervals.

    Parameters
    ----------
    dose : DataFrame
        The ``dose`` export (one whole-follow-up row per enrolled participant).
    eligible : mapping
        Eligible people per value of ``by`` (e.g. from the screening log).

    Returns
    -------
    DataFrame
        ``by``, ``stage`` (enrolled, any_dose, adequate_dose), ``n``, ``eligible``, ``proportion``,
        ``ci_lower``, ``ci_upper``.

    Examples
    --------
    >>> d = pd.DataFrame({"arm": ["a"] * 4, "sessions_attended": [0, 1, 5, 7],
    ...                   "adherent": [False, False, True, True]})
    >>> reach(d, {"a": 10})[["stage", "n", "eligible", "proportion"]]
               stage  n  eligible  proportion
    0       enrolled  4        10         0.4
    1       any_dose  3        10         0.3
    2  adequate_dose  2        10         0.2
    """
    df = _overall(dose)
    rows = []
    for group, n_eligible in eligible.items():
        g = df[df[by] == group]
        counts = {
            "enrolled": len(g),
            "any_dose": int((pd.to_numeric(g["sessions_attended"], errors="coerce").fillna(0) > 0).sum()),
            "adequate_dose": int(g["adherent"].fillna(False).astype(bool).sum()),
        }
        for stage, n in counts.items():
            if n > n_eligible:
                raise ValueError(f"{by}={group}: {stage} ({n}) exceeds eligible ({n_eligible})")
            lo, hi = clopper_pearson(n, n_eligible, alpha)
            rows.append(
                {
                    by: group,
                    "stage": stage,
                    "n": n,
                    "eligible": n_eligible,
                    "proportion": n / n_eligible if n_eligible else np.nan,
                    "ci_lower": lo,
                    "ci_upper": hi,
                }
            )
    return pd.DataFrame(rows)


def dose_by_tertile(
    dose: pd.DataFrame, outcome: pd.DataFrame, value: str = "sessions_attended", score: str = "change"
) -> pd.DataFrame:
    """Mean outcome by dose tertile among those offered the intervention (a descriptive
    dose-response table; not a causal estimate — see complier-average analyses for that).

    ``outcome`` has ``participant`` and ``score`` columns (e.g. change from baseline).

    Examples
    --------
    >>> d = pd.DataFrame({"participant": list("abcdef"), "sessions_attended": [0, 1, 3, 4, 8, 9]})
    >>> o = pd.DataFrame({"participant": list("abcdef"), "change": [0.0, 1.0, 2.0, 2.0, 5.0, 7.0]})
    >>> dose_by_tertile(d, o)[["tertile", "n", "dose_mean", "outcome_mean"]]
      tertile  n  dose_mean  outcome_mean
    0     low  2        0.5           0.5
    1     mid  2        3.5           2.0
    2    high  2        8.5           6.0
    """
    df = _overall(dose)[["participant", value]].merge(outcome[["participant", score]], on="participant")
    df = df.dropna()
    ranks = df[value].rank(method="first")
    df["tertile"] = pd.qcut(ranks, 3, labels=["low", "mid", "high"])
    out = (
        df.groupby("tertile", observed=True)
        .agg(n=(value, "size"), dose_mean=(value, "mean"), outcome_mean=(score, "mean"), outcome_sd=(score, "std"))
        .reset_index()
    )
    out["tertile"] = out["tertile"].astype(str)
    return out


def plot_dose(dose: pd.DataFrame, by: str = "arm", value: str = "sessions_attended", ax=None):
    """Histogram of a dose measure per group (one colour per group).

    Examples
    --------
    >>> d = pd.DataFrame({"arm": ["a", "a", "b"], "sessions_attended": [0, 4, 8]})
    >>> fig = plot_dose(d)
    >>> fig.axes[0].get_xlabel()
    'sessions attended'
    """
    from analysis.plots import _axes

    fig, ax = _axes(ax)
    df = _overall(dose)
    values = pd.to_numeric(df[value], errors="coerce")
    top = float(values.max()) if values.notna().any() else 1.0
    bins = np.arange(0, top + 2) - 0.5 if value == "sessions_attended" else 20
    for group, g in df.groupby(by, sort=True):
        ax.hist(pd.to_numeric(g[value], errors="coerce").dropna(), bins=bins, alpha=0.6, label=str(group))
    ax.set_xlabel(value.replace("_", " "))
    ax.set_ylabel("participants")
    ax.legend(title=by)
    return fig
