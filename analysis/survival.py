"""Retention and time to event: Kaplan–Meier, log-rank, Cox models (lifelines).

Time to dropout is measured in days from enrolment: the event is withdrawal or loss to follow-up
(``status_days``); everyone else is censored at their last completed questionnaire. Time to
reaching a threshold (PAM level 3+, PHQ-9 below 10) is observed at questionnaire days; participants
already at the threshold at baseline are left out (they cannot "reach" it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test

from .frame import DROPOUT_STATUSES, _ensure, participants, scale_frame

__all__ = ["dropout_frame", "km_table", "km_dropout", "logrank", "fit_cox", "cox_dropout", "time_to_threshold"]


def dropout_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per participant: ``participant, site, arm, arm_kind, duration, event`` + context.

    ``event`` is 1 for withdrawal or loss to follow-up at ``status_days``; otherwise 0, censored
    at the last completed questionnaire (``last_days``).

    Examples
    --------
    >>> import pandas as pd
    >>> long = pd.DataFrame({"participant": ["a", "a", "b"], "arm": "x", "scale": "phq9",
    ...     "wave": ["baseline", "m6", "baseline"], "wave_offset": [0, 182, 0], "days": [0, 180, 1],
    ...     "value": [9, 5, 12], "status": ["active", "active", "withdrawn"], "status_days": [None, None, 40]})
    >>> dropout_frame(long)[["participant", "duration", "event"]].values.tolist()
    [['a', 180.0, 0], ['b', 40.0, 1]]
    """
    p = participants(_ensure(frame))
    event = p["status"].isin(DROPOUT_STATUSES) & p["status_days"].notna()
    p["event"] = event.astype(int)
    p["duration"] = np.where(event, p["status_days"], p["last_days"]).astype(float)
    p["duration"] = p["duration"].fillna(0.0).clip(lower=0.0)
    return p


def km_table(
    df: pd.DataFrame, duration: str = "duration", event: str = "event", by: str | None = None, ci: float = 0.95
) -> pd.DataFrame:
    """Kaplan–Meier estimates as a tidy table.

    Returns
    -------
    DataFrame
        ``group, time, at_risk, events, survival, ci_lower, ci_upper`` (one row per event/censoring
        time and group; Greenwood exponential CIs as in lifelines).

    Examples
    --------
    >>> import pandas as pd
    >>> d = pd.DataFrame({"duration": [5, 8, 8, 12, 20], "event": [1, 1, 0, 1, 0]})
    >>> km_table(d)["survival"].round(3).tolist()
    [1.0, 0.8, 0.6, 0.3, 0.3]
    """
    groups = [(None, df)] if by is None else list(df.groupby(by, sort=True))
    out = []
    for name, g in groups:
        kmf = KaplanMeierFitter(alpha=1 - ci).fit(g[duration], g[event], label="survival")
        sf = kmf.survival_function_["survival"]
        cis = kmf.confidence_interval_survival_function_
        tab = kmf.event_table
        out.append(
            pd.DataFrame(
                {
                    "group": "all" if name is None else name,
                    "time": sf.index.to_numpy(float),
                    "at_risk": tab["at_risk"].reindex(sf.index).to_numpy(),
                    "events": tab["observed"].reindex(sf.index).to_numpy(),
                    "survival": sf.to_numpy(),
                    "ci_lower": cis.iloc[:, 0].to_numpy(),
                    "ci_upper": cis.iloc[:, 1].to_numpy(),
                }
            )
        )
    return pd.concat(out, ignore_index=True)


def km_dropout(frame: pd.DataFrame, by: str = "arm") -> pd.DataFrame:
    """Kaplan–Meier curves of retention (time to dropout) by ``arm`` or ``site``.

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> sorted(km_dropout(long_from_synthetic(simulate_cohort(60, seed=2)), by="site")["group"].unique())
    ['north', 'south']
    """
    return km_table(dropout_frame(frame), by=by)


def logrank(df: pd.DataFrame, by: str, duration: str = "duration", event: str = "event") -> pd.DataFrame:
    """Log-rank test across the groups of ``by``: ``by, groups, chisq, df, p``.

    Examples
    --------
    >>> import pandas as pd
    >>> d = pd.DataFrame({"duration": [5, 8, 9, 12, 20, 21], "event": [1, 1, 1, 0, 1, 0], "arm": list("aaabbb")})
    >>> logrank(d, "arm")[["groups", "df"]].values.tolist()
    [[2, 1]]
    """
    res = multivariate_logrank_test(df[duration], df[by], df[event])
    return pd.DataFrame(
        [
            {
                "by": by,
                "groups": int(df[by].nunique()),
                "chisq": float(res.test_statistic),
                "df": int(res.degrees_of_freedom),
                "p": float(res.p_value),
            }
        ]
    )


def fit_cox(
    df: pd.DataFrame, duration: str, event: str, covariates: Sequence[str] | None = None, ci: float = 0.95
) -> tuple[CoxPHFitter, pd.DataFrame]:
    """Cox proportional-hazards model (Efron ties) with categorical covariates dummy-coded.

    Rows with a missing duration, event or covariate are left out and counted (``n_excluded``), never
    dropped silently. Wald intervals at level ``ci``: ``coef ± z_{(1+ci)/2} · se``.

    Returns
    -------
    (CoxPHFitter, DataFrame)
        The fitted lifelines model and a tidy table ``term, coef, hr, se, z, p, ci_lower, ci_upper,
        hr_ci_lower, hr_ci_upper, n, events, n_excluded``.

    Examples
    --------
    >>> from lifelines.datasets import load_rossi
    >>> _, tab = fit_cox(load_rossi(), "week", "arrest", ["fin", "prio"], ci=0.90)
    >>> tab[["term", "n", "n_excluded"]].values.tolist()
    [['fin', 432, 0], ['prio', 432, 0]]
    """
    covariates = list(covariates) if covariates is not None else [c for c in df.columns if c not in (duration, event)]
    full = df[[duration, event] + covariates]
    d = full.dropna()
    n_excluded = len(full) - len(d)
    if d.empty:
        raise ValueError(f"no row has {duration}, {event} and every covariate ({', '.join(covariates)})")
    cat = [c for c in covariates if not pd.api.types.is_numeric_dtype(d[c])]
    if cat:
        d = pd.get_dummies(d, columns=cat, drop_first=True, dtype=float)
    d = d.loc[:, d.std() > 0] if len(d) > 1 else d
    cph = CoxPHFitter(alpha=1 - ci).fit(d, duration_col=duration, event_col=event)
    s = cph.summary
    # lifelines names the interval columns after the level ("coef lower 90%"): find them by meaning.
    lower = next(c for c in s.columns if c.startswith("coef lower"))
    upper = next(c for c in s.columns if c.startswith("coef upper"))
    tidy = pd.DataFrame(
        {
            "term": s.index,
            "coef": s["coef"].to_numpy(),
            "hr": s["exp(coef)"].to_numpy(),
            "se": s["se(coef)"].to_numpy(),
            "z": s["z"].to_numpy(),
            "p": s["p"].to_numpy(),
            "ci_lower": s[lower].to_numpy(),
            "ci_upper": s[upper].to_numpy(),
        }
    )
    tidy["hr_ci_lower"], tidy["hr_ci_upper"] = np.exp(tidy["ci_lower"]), np.exp(tidy["ci_upper"])
    tidy["n"], tidy["events"], tidy["n_excluded"] = len(d), int(d[event].sum()), n_excluded
    return cph, tidy.reset_index(drop=True)


def cox_dropout(
    frame: pd.DataFrame, covariates: Sequence[str] = ("arm",), baseline_scales: Sequence[str] = ()
) -> pd.DataFrame:
    """Cox model of time to dropout on arm, site, context answers and baseline scores.

    Parameters
    ----------
    covariates : sequence of str
        Participant columns (``arm``, ``site``, ``context_*``).
    baseline_scales : sequence of str
        Scale codes whose baseline value enters as a covariate (e.g. ``lsns6``).

    Returns
    -------
    DataFrame
        The tidy table of :func:`fit_cox`.

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> long = long_from_synthetic(simulate_cohort(120, seed=2))
    >>> "lsns6" in cox_dropout(long, baseline_scales=["lsns6"])["term"].tolist()
    True
    """
    from .frame import baseline

    d = dropout_frame(frame)
    if baseline_scales:
        b = baseline(frame, scales=baseline_scales)[["participant"] + list(baseline_scales)]
        d = d.merge(b, on="participant", how="left")
    return fit_cox(d, "duration", "event", list(covariates) + list(baseline_scales))[1]


def time_to_threshold(
    frame: pd.DataFrame, scale: str, threshold: float, direction: str = "above", column: str = "value"
) -> pd.DataFrame:
    """Days until a participant first reaches a threshold (event) or their last observation (censored).

    Parameters
    ----------
    scale : str
        Scale code, e.g. ``pam13_activation`` or ``phq9``.
    threshold : float
    direction : {"above", "below"}
        ``above``: reached when ``column >= threshold`` (PAM level 3+: ``column="level", threshold=3``);
        ``below``: reached when ``column < threshold`` (PHQ-9 below 10).
    column : {"value", "level"}

    Returns
    -------
    DataFrame
        ``participant, arm, site, duration, event`` (participants at the threshold at baseline excluded).

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> t = time_to_threshold(long_from_synthetic(simulate_cohort(60, seed=2)), "phq9", 10, "below")
    >>> list(t.columns)
    ['participant', 'arm', 'arm_kind', 'site', 'duration', 'event']
    """
    sf = scale_frame(frame, scale)
    sf = sf[sf[column].notna()].sort_values(["participant", "days"])
    hit = sf[column] >= threshold if direction == "above" else sf[column] < threshold
    sf = sf.assign(_hit=hit.to_numpy(), _first=sf.groupby("participant").cumcount() == 0)
    at_start = sf[sf["_first"] & sf["_hit"]]["participant"]
    sf = sf[~sf["participant"].isin(at_start)]
    rows = []
    for pid, g in sf.groupby("participant", sort=True):
        hits = g[g["_hit"]]
        if len(hits):
            rows.append((pid, float(hits["days"].iloc[0]), 1))
        else:
            rows.append((pid, float(g["days"].iloc[-1]), 0))
    out = pd.DataFrame(rows, columns=["participant", "duration", "event"])
    meta = participants(_ensure(frame))[["participant", "arm", "arm_kind", "site"]]
    return meta.merge(out, on="participant")
