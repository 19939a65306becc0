"""Missing outcome data: multiple imputation by chained equations, Rubin's rules, tipping point.

* :func:`rubin` pools the estimates of ``m`` completed-data analyses (Rubin 1987, §3.1) with the
  Barnard & Rubin (1999) small-sample degrees of freedom, as mice's ``pool.scalar``.
* :func:`multiple_imputation` imputes the missing waves of a scale by chained equations (Bayesian
  linear regression with predictive mean matching, as mice's ``pmm``; van Buuren 2018), within
  each arm (so the imputation model keeps arm differences and their interactions), with the scale
  at every wave and baseline auxiliary variables (e.g. LSNS-6 isolation, which predicts dropout) as
  predictors; runs the ANCOVA at the
  follow-up wave or the trajectory model on every completed data set and pools them.
* :func:`tipping_point` repeats the imputation with the imputed follow-up values of one arm shifted
  by ``delta`` (delta-adjusted MNAR sensitivity analysis; Ratitch, O'Kelly & Tosiello 2013; Cro et
  al. 2020) and reports the smallest shift at which the conclusion changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .frame import _ensure, baseline, participants, wide

__all__ = ["rubin", "impute", "multiple_imputation", "tipping_point"]


def rubin(
    estimates: Sequence[float], variances: Sequence[float], df_complete: float = np.inf, alpha: float = 0.05
) -> dict:
    """Pool one parameter over ``m`` imputations (Rubin's rules, Barnard–Rubin df).

    Returns
    -------
    dict
        ``m, estimate, within, between, total, se, riv`` (relative increase in variance), ``lambda``
        (proportion of variance due to missingness), ``fmi``, ``df``, ``t``, ``p``, ``ci_lower, ci_upper``.

    Examples
    --------
    >>> r = rubin([1.0, 1.2, 0.8, 1.1, 0.9], [0.04, 0.05, 0.04, 0.05, 0.04])
    >>> round(r["estimate"], 3), round(r["total"], 4), round(r["df"], 1)
    (1.0, 0.074, 24.3)
    """
    q = np.asarray(estimates, float)
    u = np.asarray(variances, float)
    m = len(q)
    if m < 2 or len(u) != m:
        raise ValueError("Rubin's rules need at least two imputations and one variance per estimate")
    qbar, ubar = float(q.mean()), float(u.mean())
    b = float(q.var(ddof=1))
    t = ubar + (1 + 1 / m) * b
    riv = (1 + 1 / m) * b / ubar if ubar > 0 else np.inf
    lam = (1 + 1 / m) * b / t if t > 0 else 0.0
    lam_ = max(lam, 1e-4)  # as mice: keeps df finite when imputations agree exactly
    df_old = (m - 1) / lam_**2
    if np.isfinite(df_complete):
        df_obs = (df_complete + 1) / (df_complete + 3) * df_complete * (1 - lam)
        df = df_old * df_obs / (df_old + df_obs)
    else:
        df = df_old
    fmi = (riv + 2 / (df + 3)) / (riv + 1)
    se = float(np.sqrt(t))
    tval = qbar / se if se > 0 else np.nan
    h = stats.t.ppf(1 - alpha / 2, df) * se
    return {
        "m": m,
        "estimate": qbar,
        "within": ubar,
        "between": b,
        "total": t,
        "se": se,
        "riv": riv,
        "lambda": lam,
        "fmi": fmi,
        "df": float(df),
        "t": tval,
        "p": float(2 * stats.t.sf(abs(tval), df)) if np.isfinite(tval) else np.nan,
        "ci_lower": qbar - h,
        "ci_upper": qbar + h,
    }


def _wide_frame(long: pd.DataFrame, scale: str, auxiliary: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    w = wide(long, scale)
    waves = [c for c in w.columns if w[c].notna().any()]
    per = participants(long).set_index("participant")
    d = w[waves].copy()
    d.columns = [f"w_{i}" for i in range(len(waves))]
    aux = [a for a in auxiliary if a != scale]
    if aux:
        b = baseline(long, scales=aux).set_index("participant")
        missing = [a for a in aux if a not in b.columns]
        if missing:
            raise ValueError(f"auxiliary scale(s) not in the frame: {missing}")
        for a in aux:
            d[f"aux_{a}"] = b[a]
    d["arm"] = per["arm"]
    return d, waves


def _draw(
    X: np.ndarray, y: np.ndarray, obs: np.ndarray, rng: np.random.Generator, method: str = "pmm", donors: int = 5
) -> np.ndarray:
    """One Bayesian-regression PMM draw for the missing entries of ``y`` (van Buuren 2018, algorithms 3.1, 3.3).

    β is drawn from its posterior under a flat prior; each missing case takes the observed value of one
    of the ``donors`` observed cases whose predictions (with the point estimate) are closest to its own
    prediction (with the drawn β): type-1 matching, as mice's ``pmm``.
    """
    Xo, yo = X[obs], y[obs]
    XtX = Xo.T @ Xo + 1e-6 * np.eye(X.shape[1])  # ridge as mice, against collinear predictors
    beta_hat = np.linalg.solve(XtX, Xo.T @ yo)
    resid = yo - Xo @ beta_hat
    df = max(len(yo) - X.shape[1], 1)
    sigma2 = float(resid @ resid) / rng.chisquare(df)
    beta_star = beta_hat + np.linalg.cholesky(np.linalg.inv(XtX) * sigma2) @ rng.standard_normal(X.shape[1])
    pred_mis = X[~obs] @ beta_star
    if method == "norm":  # Bayesian linear regression draw (mice's "norm")
        return pred_mis + np.sqrt(sigma2) * rng.standard_normal(len(pred_mis))
    pred_obs = Xo @ beta_hat
    dist = np.abs(pred_mis[:, None] - pred_obs[None, :])
    k = min(donors, len(yo))
    nearest = np.argpartition(dist, k - 1, axis=1)[:, :k]
    pick = nearest[np.arange(len(pred_mis)), rng.integers(0, k, len(pred_mis))]
    return yo[pick]


def _mice(
    num: pd.DataFrame, m: int, rng: np.random.Generator, burn_in: int, between: int, method: str
) -> list[pd.DataFrame]:
    """Chained equations over the numeric columns of ``num`` (every column with missing values imputed)."""
    X = num.to_numpy(float)
    miss = np.isnan(X)
    targets = [j for j in range(X.shape[1]) if miss[:, j].any() and (~miss[:, j]).sum() >= 3]
    # Start from random draws among the observed values of each column.
    for j in range(X.shape[1]):
        obs = ~miss[:, j]
        if miss[:, j].any() and obs.any():
            X[miss[:, j], j] = rng.choice(X[obs, j], miss[:, j].sum())
    out = []
    total = burn_in + (m - 1) * between + 1
    keep = {burn_in + k * between for k in range(m)}
    for it in range(total):
        for j in targets:
            others = np.column_stack([np.ones(len(X)), np.delete(X, j, axis=1)])
            X[miss[:, j], j] = _draw(others, X[:, j], ~miss[:, j], rng, method)
        if it in keep:
            out.append(pd.DataFrame(X.copy(), index=num.index, columns=num.columns))
    return out


def impute(
    frame: pd.DataFrame,
    scale: str,
    m: int = 20,
    auxiliary: Sequence[str] = (),
    seed: int = 0,
    burn_in: int = 10,
    between: int = 5,
    min_arm: int = 10,
    method: str = "pmm",
) -> tuple[list[pd.DataFrame], list[str]]:
    """``m`` completed participant × wave tables of a scale (chained equations with PMM, within arm).

    Every wave of the scale and the baseline ``auxiliary`` scales predict each other; arms are imputed
    separately (with arm indicators jointly when an arm has fewer than ``min_arm`` participants).
    The chain runs ``burn_in`` cycles, then keeps one completed table every ``between`` cycles.
    ``method="pmm"`` (default, as mice) imputes observed values of similar participants; ``"norm"``
    draws from the Bayesian linear regression (no range limits, but no extrapolation bias either).

    Returns
    -------
    (list of DataFrame, list of str)
        Completed tables indexed by participant with one column per wave (plus ``arm`` and an
        ``imputed_<wave>`` flag per wave), and the wave codes.

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> sets, waves = impute(long_from_synthetic(simulate_cohort(60, seed=2)), "phq9", m=2)
    >>> len(sets), bool(sets[0][waves].notna().all().all())
    (2, True)
    """
    long = _ensure(frame)
    d, waves = _wide_frame(long, scale, auxiliary)
    cols = [c for c in d.columns if c != "arm"]
    flags = {f"imputed_{w}": d[f"w_{i}"].isna() for i, w in enumerate(waves)}
    groups = [g for _, g in d.groupby("arm")]
    if any(len(g) < min_arm for g in groups):
        dummies = pd.get_dummies(d["arm"], prefix="arm", drop_first=True, dtype=float)
        groups = [pd.concat([d, dummies], axis=1)]
    rng = np.random.default_rng(seed)
    completed: list[list[pd.DataFrame]] = [[] for _ in range(m)]
    for g in groups:
        num = g.drop(columns=["arm"]).astype(float)
        num = num.loc[:, num.notna().any()]
        chains = _mice(num, m, rng, burn_in, between, method)
        for k in range(m):
            completed[k].append(chains[k].reindex(columns=cols).assign(arm=g["arm"]))
    sets = []
    for parts in completed:
        c = pd.concat(parts).reindex(d.index)
        c = c.rename(columns={f"w_{i}": w for i, w in enumerate(waves)})
        for k, v in flags.items():
            c[k] = v
        sets.append(c)
    return sets, waves


def _long_from_completed(
    c: pd.DataFrame, waves: list[str], long: pd.DataFrame, scale: str, per: pd.DataFrame | None = None
) -> pd.DataFrame:
    offsets = long.groupby("wave")["wave_offset"].first()
    per = participants(long).set_index("participant") if per is None else per
    rows = c[waves].stack().rename("value").reset_index()
    rows.columns = ["participant", "wave", "value"]
    rows["scale"] = scale
    rows["wave_offset"] = rows["wave"].map(offsets)
    rows["days"] = rows["wave_offset"]
    for col in ("site", "arm", "arm_kind", "status", "status_days"):
        rows[col] = rows["participant"].map(per[col])
    return rows


def _completed_two_wave(c: pd.DataFrame, waves: list[str], followup: str, per: pd.DataFrame) -> pd.DataFrame:
    """The participant frame :func:`~analysis.trial.ancova` builds from the long form of a completed
    table (``pre`` at the first wave, ``post`` at ``followup``, ``arm``), read off the table itself:
    the participants with any value, in sorted order, as the long form's wide table has them."""
    vals = c[waves]
    vals = vals[vals.notna().any(axis=1)].sort_index()
    d = pd.DataFrame({"pre": vals[waves[0]], "post": vals[followup]})
    d.index.name = "participant"
    return d.join(per[["arm"]])


def multiple_imputation(
    frame: pd.DataFrame,
    scale: str,
    followup: str | None = None,
    analysis: str = "ancova",
    m: int = 20,
    auxiliary: Sequence[str] = (),
    reference: str | None = None,
    seed: int = 0,
    delta: float = 0.0,
    delta_arm: str | None = None,
    alpha: float = 0.05,
    imputations: tuple[list[pd.DataFrame], list[str]] | None = None,
) -> pd.DataFrame:
    """Multiple imputation of a scale's missing waves, the analysis on each completed set, Rubin's rules.

    Parameters
    ----------
    followup : str
        The follow-up wave of the ANCOVA (required for ``analysis="ancova"``).
    analysis : {"ancova", "trajectory"}
        Baseline-adjusted ANCOVA at ``followup``, or the random-intercept trajectory model's slope
        difference per arm (time in years).
    auxiliary : sequence of str
        Baseline scales used as predictors in the imputation model (e.g. ``["lsns6"]``).
    delta, delta_arm : float, str
        Add ``delta`` to the imputed follow-up values of ``delta_arm`` (default: every non-reference arm),
        the MNAR shift of :func:`tipping_point`. ``delta=0`` is missing at random.
    imputations : (list, list), optional
        The result of :func:`impute`, to reuse one set of imputations across analyses or deltas.

    Returns
    -------
    DataFrame
        One row per non-reference arm: ``scale, analysis, followup_wave, arm, reference, m, delta,
        n_imputed`` (the arm's participants with an imputed follow-up), and the pooled columns of :func:`rubin`.

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> long = long_from_synthetic(simulate_cohort(120, seed=2))
    >>> mi = multiple_imputation(long, "phq9", followup="m6", m=3, auxiliary=["lsns6"])
    >>> mi[["arm", "m", "delta"]].values.tolist()
    [['group', 3, 0.0], ['online', 3, 0.0]]
    """
    from .trial import _ancova_fit, reference_arm

    long = _ensure(frame)
    if analysis not in ("ancova", "trajectory"):
        raise ValueError("analysis must be 'ancova' or 'trajectory'")
    if analysis == "ancova" and followup is None:
        raise ValueError("name the follow-up wave (followup=...) for the ANCOVA")
    per = participants(long).set_index("participant")
    ref = reference_arm(per.reset_index(), reference)
    sets, waves = imputations or impute(long, scale, m=m, auxiliary=auxiliary, seed=seed)
    if analysis == "ancova" and followup not in waves:
        raise ValueError(f"follow-up wave {followup!r} has no {scale} scores (waves: {waves})")
    shift_arms = [delta_arm] if delta_arm else None
    results: list[pd.DataFrame] = []
    n_imputed = 0
    for c in sets:
        c = c.copy()
        target = [followup] if analysis == "ancova" else waves[1:]
        arms = shift_arms or [a for a in c["arm"].unique() if a != ref]
        for w in target:
            mask = c[f"imputed_{w}"] & c["arm"].isin(arms)
            c.loc[mask, w] = c.loc[mask, w] + delta
        flag = c[f"imputed_{followup or waves[-1]}"]
        n_imputed = flag.groupby(c["arm"]).sum().astype(int).to_dict()
        if analysis == "ancova":
            # ancova() of the completed set's long form, without building and re-reading that form
            d = _completed_two_wave(c, waves, followup, per)
            r = _ancova_fit(d, per, scale, waves[0], followup, reference=ref)
            results.append(r[["arm", "estimate", "se", "df"]])
        else:
            from .trajectories import TrajectoryModel

            completed = _long_from_completed(c, waves, long, scale, per)
            tm = TrajectoryModel(scale, reference=ref, cluster="fixed" if completed["site"].nunique() > 1 else None)
            sl = tm.fit(completed).slopes()
            sl = sl[sl["arm"] != ref]
            results.append(
                pd.DataFrame({"arm": sl["arm"], "estimate": sl["diff"], "se": sl["diff_se"], "df": sl["diff_df"]})
            )
    allr = pd.concat(results, ignore_index=True)
    rows = []
    for arm, g in allr.groupby("arm", sort=True):
        pooled = rubin(g["estimate"], g["se"] ** 2, df_complete=float(g["df"].median()), alpha=alpha)
        rows.append(
            {
                "scale": scale,
                "analysis": analysis,
                "followup_wave": followup if analysis == "ancova" else waves[-1],
                "arm": arm,
                "reference": ref,
                "delta": float(delta),
                "n_imputed": int(n_imputed.get(arm, 0)),
                **pooled,
            }
        )
    out = pd.DataFrame(rows)
    cols = ["scale", "analysis", "followup_wave", "arm", "reference", "m", "delta", "n_imputed"]
    return out[cols + [c for c in out.columns if c not in cols]]


def tipping_point(
    frame: pd.DataFrame,
    scale: str,
    followup: str,
    deltas: Sequence[float] | None = None,
    arm: str | None = None,
    m: int = 20,
    auxiliary: Sequence[str] = (),
    reference: str | None = None,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Delta-adjusted MI over a grid of shifts: where does the treatment effect stop being significant?

    The imputed follow-up values of ``arm`` (default: the first non-reference arm) are shifted by each
    ``delta`` (in scale points; choose the sign that makes dropouts in that arm do *worse*); the same
    imputations (seed) are used at every delta, so the curve is smooth.

    Returns
    -------
    DataFrame
        One row per delta: ``delta, arm, reference, estimate, se, ci_lower, ci_upper, p, significant,
        same_conclusion`` (significant with the sign found under MAR, ``delta = 0``) and
        ``tipping_point``: the delta nearest 0 at which the MAR conclusion no longer holds (repeated;
        NaN if it holds over the whole grid).

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> long = long_from_synthetic(simulate_cohort(120, seed=2))
    >>> tp = tipping_point(long, "phq9", "m6", deltas=[0, 2, 4], m=3)
    >>> tp["delta"].tolist()
    [0.0, 2.0, 4.0]
    """
    from .trial import reference_arm

    long = _ensure(frame)
    ref = reference_arm(participants(long), reference)
    arms = sorted(a for a in participants(long)["arm"].dropna().unique() if a != ref)
    target = arm or arms[0]
    if target not in arms:
        raise ValueError(f"arm {target!r} is not a non-reference arm (arms: {arms})")
    if deltas is None:
        sd = float(wide(long, scale)[followup].std())
        deltas = list(np.round(np.linspace(-sd, sd, 9), 2))
    rows = []
    imputations = impute(long, scale, m=m, auxiliary=auxiliary, seed=seed)
    for dlt in deltas:
        r = multiple_imputation(
            long,
            scale,
            followup=followup,
            m=m,
            reference=ref,
            delta=float(dlt),
            delta_arm=target,
            alpha=alpha,
            imputations=imputations,
        )
        r = r[r["arm"] == target].iloc[0]
        rows.append(
            {
                "delta": float(dlt),
                "arm": target,
                "reference": ref,
                "estimate": r["estimate"],
                "se": r["se"],
                "ci_lower": r["ci_lower"],
                "ci_upper": r["ci_upper"],
                "p": r["p"],
                "significant": bool(r["p"] < alpha),
            }
        )
    out = pd.DataFrame(rows)
    mar = multiple_imputation(
        long, scale, followup=followup, m=m, reference=ref, delta=0.0, alpha=alpha, imputations=imputations
    )
    mar = mar[mar["arm"] == target].iloc[0]
    sign = np.sign(mar["estimate"])
    mar_sig = bool(mar["p"] < alpha)
    out["same_conclusion"] = (out["significant"] & (np.sign(out["estimate"]) == sign)) == mar_sig
    out["same_conclusion"] &= out["significant"] | ~pd.Series(mar_sig, index=out.index)
    changed = out[~out["same_conclusion"]]
    out["tipping_point"] = float(changed.loc[changed["delta"].abs().idxmin(), "delta"]) if len(changed) else np.nan
    return out.sort_values("delta").reset_index(drop=True)
