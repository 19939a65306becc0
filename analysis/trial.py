"""The trial's primary analyses: baseline-adjusted ANCOVA at a named follow-up, and cLDA.

* :func:`ancova`: ``post ~ arm + pre (+ covariates)`` by least squares at one named follow-up wave
  (the usual primary analysis of a two-wave trial; EMA 2015 guideline on baseline covariates), with
  optional cluster-robust (sandwich) SEs for peer groups or sites (CR1, t on G − 1 df, as Stata).
* :func:`clda`: constrained longitudinal data analysis (Liang & Zeger 2000; Liu et al. 2009): every
  wave, baseline included, is an outcome; the arms share one baseline mean (randomisation) and differ
  from the first follow-up on; the within-participant covariance is unstructured (an MMRM), fitted
  by REML, so participants with some missing waves still contribute. Treatment effects at each
  follow-up wave get Satterthwaite df. With complete two-wave data it agrees closely with ANCOVA.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats

from .frame import _ensure, participants, wave_order, wide
from .lmm import satterthwaite_df

__all__ = ["ancova", "clda", "reference_arm"]


def reference_arm(per: pd.DataFrame, reference: str | None = None) -> str:
    """The control arm (``arm_kind == "control"``, else the first arm alphabetically) unless named.

    Examples
    --------
    >>> import pandas as pd
    >>> reference_arm(pd.DataFrame({"arm": ["peer", "usual"], "arm_kind": ["intervention", "control"]}))
    'usual'
    """
    arms = sorted(per["arm"].dropna().astype(str).unique())
    if reference is not None:
        if reference not in arms:
            raise ValueError(f"reference arm {reference!r} is not in the frame (arms: {arms})")
        return reference
    kinds = per.groupby("arm")["arm_kind"].first() if "arm_kind" in per else pd.Series(dtype=object)
    ctrl = [a for a in arms if kinds.get(a) == "control"]
    return ctrl[0] if ctrl else arms[0]


def _two_wave(frame, scale, followup, baseline_wave, covariates):
    long = _ensure(frame)
    waves = wave_order(long)
    base = baseline_wave or waves[0]
    if followup not in waves:
        raise ValueError(f"follow-up wave {followup!r} is not in the frame (waves: {waves})")
    if followup == base:
        raise ValueError("the follow-up wave must differ from the baseline wave")
    w = wide(long, scale)
    for wv in (base, followup):
        if wv not in w.columns:
            raise ValueError(f"wave {wv!r} has no {scale} scores")
    per = participants(long).set_index("participant")
    d = pd.DataFrame({"pre": w[base], "post": w[followup]}).join(per)
    missing = [c for c in covariates if c not in d.columns]
    if missing:
        raise ValueError(f"covariate column(s) not in the frame: {missing}")
    return d, base, per


def ancova(
    frame: pd.DataFrame,
    scale: str,
    followup: str,
    baseline_wave: str | None = None,
    covariates: Sequence[str] = (),
    reference: str | None = None,
    cluster: str | None = None,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Baseline-adjusted difference between arms at a named follow-up wave (ANCOVA).

    Parameters
    ----------
    scale : str
    followup : str
        The follow-up wave (always named: the primary time point is a protocol decision).
    baseline_wave : str, optional
        Default: the first wave.
    covariates : sequence of str
        Participant-level columns (stratification factors: ``site``, ``context_*``).
    cluster : str, optional
        Column of clusters (``site``, ``peer_group``) for cluster-robust SEs. Participants without a
        cluster (the ungrouped arm of a partially nested trial) are their own cluster.

    Returns
    -------
    DataFrame
        One row per non-reference arm: ``scale, baseline_wave, followup_wave, arm, reference, n,
        n_reference, n_excluded, adjusted_mean, adjusted_mean_reference, estimate, se, df, t, p,
        ci_lower, ci_upper, baseline_slope, se_type``. ``adjusted_mean`` is the arm's mean at follow-up
        at the overall baseline mean; ``n_excluded`` counts participants lacking the baseline or
        follow-up score (see :func:`analysis.missing.multiple_imputation` for a sensitivity analysis).

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> long = long_from_synthetic(simulate_cohort(120, seed=2))
    >>> res = ancova(long, "phq9", followup="m6")
    >>> res[["followup_wave", "arm", "reference"]].values.tolist()
    [['m6', 'group', 'usual_care'], ['m6', 'online', 'usual_care']]
    """
    d, base, per = _two_wave(frame, scale, followup, baseline_wave, covariates)
    return _ancova_fit(d, per, scale, base, followup, covariates, reference, cluster, alpha)


def _ancova_fit(
    d: pd.DataFrame,
    per: pd.DataFrame,
    scale: str,
    base: str,
    followup: str,
    covariates: Sequence[str] = (),
    reference: str | None = None,
    cluster: str | None = None,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """:func:`ancova` on its participant frame ``d`` (``pre``, ``post``, ``arm`` and the covariate and
    cluster columns, indexed by participant in sorted order) and the participant table ``per``."""
    import statsmodels.formula.api as smf

    ref = reference_arm(per.reset_index(), reference)
    n_all = len(d)
    keep = ["pre", "post", "arm"] + list(covariates)
    d = d.dropna(subset=keep).copy()
    if d["arm"].nunique() < 2:
        raise ValueError(f"{scale}: fewer than two arms have both {base} and {followup} scores")
    arms = [ref] + sorted(a for a in d["arm"].unique() if a != ref)
    d["arm"] = pd.Categorical(d["arm"], categories=arms)
    rhs = ["C(arm)", "pre"] + [f"C({c})" if not pd.api.types.is_numeric_dtype(d[c]) else c for c in covariates]
    model = smf.ols("post ~ " + " + ".join(rhs), d)
    se_type = "model"
    if cluster:
        if cluster not in d.columns:
            raise ValueError(f"cluster column {cluster!r} is not in the frame")
        groups = d[cluster].astype(object).where(d[cluster].notna(), "p:" + d.index.astype(str))
        codes = pd.factorize(groups)[0]
        fit = model.fit(cov_type="cluster", cov_kwds={"groups": codes}, use_t=True)
        se_type = f"cluster-robust ({cluster}, {len(np.unique(codes))} clusters)"
        df_res = len(np.unique(codes)) - 1
    else:
        fit = model.fit()
        df_res = float(fit.df_resid)
    q = stats.t.ppf(1 - alpha / 2, df_res)
    names = list(fit.params.index)
    Xbar = pd.DataFrame(model.exog, columns=names).mean()
    rows = []

    def adj_mean(arm: str) -> float:
        x = Xbar.copy()
        for a in arms[1:]:
            x[f"C(arm)[T.{a}]"] = 1.0 if a == arm else 0.0
        return float(x @ fit.params)

    for arm in arms[1:]:
        term = f"C(arm)[T.{arm}]"
        est, se = float(fit.params[term]), float(fit.bse[term])
        t = est / se
        rows.append(
            {
                "scale": scale,
                "baseline_wave": base,
                "followup_wave": followup,
                "arm": arm,
                "reference": ref,
                "n": int((d["arm"] == arm).sum()),
                "n_reference": int((d["arm"] == ref).sum()),
                "n_excluded": n_all - len(d),
                "adjusted_mean": adj_mean(arm),
                "adjusted_mean_reference": adj_mean(ref),
                "estimate": est,
                "se": se,
                "df": df_res,
                "t": t,
                "p": float(2 * stats.t.sf(abs(t), df_res)),
                "ci_lower": est - q * se,
                "ci_upper": est + q * se,
                "baseline_slope": float(fit.params["pre"]),
                "se_type": se_type,
            }
        )
    return pd.DataFrame(rows)


class _UN:
    """REML for a multivariate normal with unstructured covariance over waves (missing waves allowed)."""

    def __init__(self, X: np.ndarray, y: np.ndarray, subj: np.ndarray, wave_idx: np.ndarray, T: int):
        self.X, self.y, self.T = X, y, T
        self.n, self.p = X.shape
        order = np.argsort(subj, kind="stable")
        subj, wave_idx = subj[order], wave_idx[order]
        self.X, self.y = X[order], y[order]
        starts = np.flatnonzero(np.r_[True, subj[1:] != subj[:-1]])
        bounds = np.r_[starts, len(subj)]
        patterns: dict[tuple, list[np.ndarray]] = {}
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            patterns.setdefault(tuple(wave_idx[a:b]), []).append(np.arange(a, b))
        self.patterns = [(np.array(k), np.stack(v)) for k, v in patterns.items()]
        self.tri = np.tril_indices(T)

    def sigma(self, theta: np.ndarray) -> np.ndarray:
        S = np.zeros((self.T, self.T))
        S[self.tri] = theta
        return S + np.tril(S, -1).T

    def _parts(self, S: np.ndarray):
        XVX = np.zeros((self.p, self.p))
        XVy = np.zeros(self.p)
        yVy, logdet = 0.0, 0.0
        for w, rows in self.patterns:
            V = S[np.ix_(w, w)]
            c = np.linalg.cholesky(V)
            Vi = np.linalg.inv(V)
            Xs, ys = self.X[rows], self.y[rows]  # (m, k, p), (m, k)
            XVX += np.einsum("mkp,kl,mlq->pq", Xs, Vi, Xs)
            XVy += np.einsum("mkp,kl,ml->p", Xs, Vi, ys)
            yVy += float(np.einsum("mk,kl,ml->", ys, Vi, ys))
            logdet += len(rows) * 2 * float(np.log(np.diag(c)).sum())
        return XVX, XVy, yVy, logdet

    def loglik(self, theta: np.ndarray) -> float:
        try:
            XVX, XVy, yVy, logdet = self._parts(self.sigma(theta))
            beta = np.linalg.solve(XVX, XVy)
            sign, ldx = np.linalg.slogdet(XVX)
        except np.linalg.LinAlgError:
            return -np.inf
        if sign <= 0:
            return -np.inf
        return -0.5 * ((self.n - self.p) * np.log(2 * np.pi) + logdet + ldx + yVy - beta @ XVy)

    def cov_beta(self, theta: np.ndarray) -> np.ndarray:
        return np.linalg.inv(self._parts(self.sigma(theta))[0])

    def beta(self, theta: np.ndarray) -> np.ndarray:
        XVX, XVy, _, _ = self._parts(self.sigma(theta))
        return np.linalg.solve(XVX, XVy)

    def fit(self, start: np.ndarray) -> tuple[np.ndarray, bool]:
        T = self.T

        def chol_to_theta(c):
            Lm = np.zeros((T, T))
            Lm[self.tri] = c
            Lm[np.diag_indices(T)] = np.exp(Lm[np.diag_indices(T)])
            return (Lm @ Lm.T)[self.tri]

        c0 = np.linalg.cholesky(self.sigma(start))
        c0[np.diag_indices(T)] = np.log(np.diag(c0))
        best = None
        for method in ("L-BFGS-B", "Powell"):
            x0 = c0[self.tri] if best is None else best.x
            res = optimize.minimize(
                lambda c: -self.loglik(chol_to_theta(c)), x0, method=method, options={"maxiter": 20000}
            )
            if best is None or res.fun < best.fun - 1e-10:
                best = res
            if res.success:
                break
        return chol_to_theta(best.x), bool(best.success)

    def scales(self, theta: np.ndarray) -> np.ndarray:
        S = self.sigma(theta)
        d = np.sqrt(np.diag(S))
        return np.array([d[i] * d[j] for i, j in zip(*self.tri, strict=True)])


def clda(
    frame: pd.DataFrame,
    scale: str,
    waves: Sequence[str] | None = None,
    reference: str | None = None,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Constrained longitudinal data analysis: treatment effect at every follow-up wave.

    The mean model has one mean per wave (shared by all arms at baseline) and an arm difference at
    each post-baseline wave; the covariance is unstructured; REML; Satterthwaite df.

    Parameters
    ----------
    waves : sequence of str, optional
        Waves to model, baseline first (default: all waves of the scale).

    Returns
    -------
    DataFrame
        One row per follow-up wave and non-reference arm: ``scale, baseline_wave, followup_wave, arm,
        reference, n_participants, estimate, se, df, t, p, ci_lower, ci_upper, converged``.

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> long = long_from_synthetic(simulate_cohort(120, seed=2))
    >>> res = clda(long, "phq9", waves=["baseline", "m3", "m6"])
    >>> res[["followup_wave", "arm"]].values.tolist()
    [['m3', 'group'], ['m3', 'online'], ['m6', 'group'], ['m6', 'online']]
    """
    long = _ensure(frame)
    w = wide(long, scale)
    waves = list(waves) if waves is not None else [c for c in w.columns if w[c].notna().any()]
    missing = [x for x in waves if x not in w.columns]
    if missing:
        raise ValueError(f"wave(s) without {scale} scores: {missing}")
    if len(waves) < 2:
        raise ValueError("cLDA needs a baseline and at least one follow-up wave")
    per = participants(long).set_index("participant")
    ref = reference_arm(per.reset_index(), reference)
    arms = [ref] + sorted(a for a in per["arm"].dropna().unique() if a != ref)
    d = w[waves].stack().rename("y").reset_index()
    d.columns = ["participant", "wave", "y"]
    d["arm"] = d["participant"].map(per["arm"])
    d = d.dropna(subset=["y", "arm"])
    T = len(waves)
    widx = d["wave"].map({x: i for i, x in enumerate(waves)}).to_numpy()
    cols = [f"wave[{x}]" for x in waves]
    X = [np.eye(T)[widx]]
    for t in range(1, T):
        for a in arms[1:]:
            cols.append(f"{a}:{waves[t]}")
            X.append(((widx == t) & (d["arm"].to_numpy() == a)).astype(float)[:, None])
    X = np.column_stack(X)
    subj = pd.factorize(d["participant"])[0]
    model = _UN(X, d["y"].to_numpy(float), subj, widx, T)
    # Start from the pairwise-complete covariance of the waves (made positive definite).
    S0 = w[waves].cov().to_numpy()
    S0 = np.where(np.isnan(S0), 0, S0)
    vals, vecs = np.linalg.eigh(S0)
    S0 = (vecs * np.maximum(vals, 1e-3 * max(vals.max(), 1.0))) @ vecs.T
    theta, ok = model.fit(S0[np.tril_indices(T)])
    beta, C = model.beta(theta), model.cov_beta(theta)
    L = np.eye(len(cols))[T:]
    df = satterthwaite_df(
        model.loglik, model.cov_beta, theta, L, model.scales(theta), np.ones(len(theta), bool), model.n - model.p
    )
    rows = []
    for k, name in enumerate(cols[T:]):
        arm, wave = name.split(":")
        est, se = float(beta[T + k]), float(np.sqrt(C[T + k, T + k]))
        q = stats.t.ppf(1 - alpha / 2, df[k])
        rows.append(
            {
                "scale": scale,
                "baseline_wave": waves[0],
                "followup_wave": wave,
                "arm": arm,
                "reference": ref,
                "n_participants": int(d["participant"].nunique()),
                "estimate": est,
                "se": se,
                "df": float(df[k]),
                "t": est / se,
                "p": float(2 * stats.t.sf(abs(est / se), df[k])),
                "ci_lower": est - q * se,
                "ci_upper": est + q * se,
                "converged": ok,
            }
        )
    out = pd.DataFrame(rows)
    order = {x: i for i, x in enumerate(waves)}
    return out.sort_values(
        ["followup_wave", "arm"], key=lambda s: s.map(order) if s.name == "followup_wave" else s
    ).reset_index(drop=True)
