"""What works for whom: CMO moderation tables, partial pooling of subgroup effects, site heterogeneity.

A context–mechanism–outcome (CMO) configuration names a context condition (a predicate over
participant- or site-level context variables), a mechanism and an outcome. Its quantitative test is
the arm × context interaction on the outcome at a follow-up wave, adjusted for the outcome's
baseline value (ANCOVA with an interaction; t-based intervals on the residual degrees of freedom).

* :func:`context_mask` evaluates a context predicate (``{"variable": "lsns6", "op": "<", "value": 12}``,
  a list of them meaning *all*, or ``{"any": [...]}``) on a per-participant frame.
* :func:`partial_pool` shrinks a set of independent estimates towards their random-effects mean
  (DerSimonian–Laird τ², empirical-Bayes posterior means), so that a small subgroup's noisy
  estimate is not presented as a finding.
* :func:`what_works_for_whom` tabulates every CMO: subgroup effects in and out of the context,
  their shrunken values, the moderation estimate, Benjamini–Hochberg adjustment across the table and
  whether the configuration was pre-specified.
* :func:`site_heterogeneity` gives site-specific arm effects, their random-effects summary
  (τ², I², Cochran's Q), shrunken site effects and a forest plot (:func:`plot_site_forest`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .multiplicity import adjust_pvalues

__all__ = ["context_mask", "partial_pool", "what_works_for_whom", "site_heterogeneity", "plot_site_forest", "ols_t"]

_OPS = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}
OPERATORS = (*_OPS, "in", "not in")


def _one(frame: pd.DataFrame, cond: Mapping[str, Any]) -> pd.Series:
    var, op, value = cond.get("variable"), cond.get("op"), cond.get("value")
    if var not in frame.columns:
        raise ValueError(f"context variable {var!r} is not a column of the frame")
    if op not in OPERATORS:
        raise ValueError(f"op must be one of {', '.join(OPERATORS)}")
    col = frame[var]
    if op in ("in", "not in"):
        values = list(value) if isinstance(value, (list, tuple, set)) else [value]
        hit = col.astype(str).isin([str(v) for v in values])
        out = hit if op == "in" else ~hit
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        num = pd.to_numeric(col, errors="coerce")
        out = pd.Series(_OPS[op](num.to_numpy(float), float(value)), index=frame.index)
    else:
        out = pd.Series(_OPS[op](col.astype(str).to_numpy(), str(value)), index=frame.index)
    # a missing context value is neither in nor out of the context
    return out.astype("boolean").mask(col.isna())


def context_mask(frame: pd.DataFrame, predicate: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> pd.Series:
    """Which rows satisfy a context predicate (nullable boolean: missing where a variable is missing).

    Examples
    --------
    >>> import pandas as pd
    >>> f = pd.DataFrame({"lsns6": [8, 15, None], "rural": ["yes", "no", "yes"]})
    >>> context_mask(f, {"variable": "lsns6", "op": "<", "value": 12}).tolist()
    [True, False, <NA>]
    >>> context_mask(f, {"any": [{"variable": "lsns6", "op": "<", "value": 12},
    ...                          {"variable": "rural", "op": "==", "value": "yes"}]}).tolist()
    [True, False, True]
    """
    if isinstance(predicate, Mapping) and "any" in predicate:
        parts = pd.concat([context_mask(frame, p) for p in predicate["any"]], axis=1)
        hit = parts.eq(True).any(axis=1)
        known = parts.notna().all(axis=1)
        return hit.astype("boolean").mask(~hit & ~known)
    conds = [predicate] if isinstance(predicate, Mapping) else list(predicate)
    if not conds:
        raise ValueError("a context predicate needs at least one condition")
    out = _one(frame, conds[0])
    for c in conds[1:]:
        out = out & _one(frame, c)
    return out


def ols_t(y: np.ndarray, X: np.ndarray, alpha: float = 0.05) -> dict[str, Any]:
    """OLS with classical standard errors and t-based intervals on ``n - p`` df.

    Examples
    --------
    >>> import numpy as np
    >>> r = ols_t(np.array([1.0, 2.0, 2.0, 4.0]), np.column_stack([np.ones(4), [0, 1, 2, 3.0]]))
    >>> round(float(r["beta"][1]), 2), int(r["df"])
    (0.9, 2)
    """
    n, p = X.shape
    if n <= p:
        raise ValueError(f"too few participants ({n}) for {p} coefficients")
    XtX_inv = np.linalg.pinv(X.T @ X)
    beta = XtX_inv @ X.T @ y
    resid = y - X @ beta
    df = n - p
    s2 = float(resid @ resid) / df
    cov = s2 * XtX_inv
    return {"beta": beta, "cov": cov, "df": float(df), "q": float(stats.t.ppf(1 - alpha / 2, df))}


def partial_pool(estimate: Sequence[float], se: Sequence[float], alpha: float = 0.05) -> dict[str, Any]:
    """Random-effects pooling (DerSimonian–Laird) and empirical-Bayes shrinkage of independent estimates.

    Each estimate moves towards the pooled mean by ``1 - B_k`` with ``B_k = τ² / (τ² + se_k²)``: the
    noisier the estimate (a small subgroup or site), the more it is pulled in. The posterior
    variance ``B_k se_k² + (1 - B_k)² Var(μ̂)`` includes the uncertainty of the mean.

    Returns
    -------
    dict
        ``mu, mu_se, mu_ci (tuple), tau2, q, q_df, q_p, i2, shrunk (array), shrunk_se (array),
        weight (B_k), prediction_interval (tuple)``.

    Examples
    --------
    >>> r = partial_pool([2.0, 0.0, 1.0], [0.5, 0.5, 1.0])
    >>> round(r["tau2"], 3), [round(float(x), 2) for x in r["shrunk"]]
    (1.125, [1.82, 0.18, 1.0])
    """
    y = np.asarray(estimate, float)
    v = np.asarray(se, float) ** 2
    k = len(y)
    if k == 0 or np.any(~np.isfinite(y)) or np.any(~np.isfinite(v)) or np.any(v <= 0):
        raise ValueError("partial pooling needs finite estimates with positive standard errors")
    w = 1 / v
    mu_fe = float((w * y).sum() / w.sum())
    q = float((w * (y - mu_fe) ** 2).sum())
    c = float(w.sum() - (w**2).sum() / w.sum())
    tau2 = max(0.0, (q - (k - 1)) / c) if k > 1 and c > 0 else 0.0
    ws = 1 / (v + tau2)
    mu = float((ws * y).sum() / ws.sum())
    var_mu = float(1 / ws.sum())
    z = stats.norm.ppf(1 - alpha / 2)
    B = tau2 / (tau2 + v)
    shrunk = mu + B * (y - mu)
    shrunk_se = np.sqrt(B * v + (1 - B) ** 2 * var_mu)
    i2 = max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0
    # Higgins, Thompson & Spiegelhalter (2009): t with k - 2 df
    pi_half = stats.t.ppf(1 - alpha / 2, k - 2) * np.sqrt(tau2 + var_mu) if k > 2 else np.nan
    return {
        "mu": mu,
        "mu_se": float(np.sqrt(var_mu)),
        "mu_ci": (mu - z * np.sqrt(var_mu), mu + z * np.sqrt(var_mu)),
        "tau2": float(tau2),
        "q": q,
        "q_df": k - 1,
        "q_p": float(stats.chi2.sf(q, k - 1)) if k > 1 else np.nan,
        "i2": float(i2),
        "shrunk": shrunk,
        "shrunk_se": shrunk_se,
        "weight": B,
        "prediction_interval": (mu - pi_half, mu + pi_half),
    }


def _design(sub: pd.DataFrame, outcome: str, treatment: str, baseline: str | None, covariates: Sequence[str]):
    cols = [outcome, treatment] + ([baseline] if baseline else []) + list(covariates)
    missing = [c for c in cols if c not in sub.columns]
    if missing:
        raise ValueError(f"column(s) not in the frame: {', '.join(map(str, missing))}")
    keep = sub.dropna(subset=cols)
    extra = [keep[c].astype(float).to_numpy() for c in ([baseline] if baseline else []) + list(covariates)]
    return keep, extra


def what_works_for_whom(
    data: pd.DataFrame,
    cmos: Sequence[Mapping[str, Any]],
    treatment: str = "treated",
    covariates: Sequence[str] = (),
    alpha: float = 0.05,
    fdr: float = 0.05,
    min_per_cell: int = 5,
) -> pd.DataFrame:
    """The what-works-for-whom table: one row per CMO configuration.

    Parameters
    ----------
    data : DataFrame
        One row per participant: ``treatment`` (1 = intervention arm, 0 = comparison), the outcome
        and baseline columns each CMO names, and its context variables.
    cmos : sequence of dict
        ``code``, ``context`` (a predicate, see :func:`context_mask`), ``outcome`` (column at the
        follow-up wave), optional ``baseline`` (column), ``prespecified`` (bool, default True) and
        ``direction``: the hypothesised sign of the moderation (``"positive"``: the arm effect on the
        outcome is higher in the context than outside it; ``"negative"``: lower; ``"any"``).
    alpha, fdr : float
        1 − confidence of the intervals; the false-discovery rate of the Benjamini–Hochberg step.

    Returns
    -------
    DataFrame
        ``cmo, outcome, prespecified, direction, n_in, n_out, effect_in(+_ci_lower/_upper),
        effect_out(+…), shrunk_in(+…), shrunk_out(+…), tau2, moderation, se, df, ci_lower, ci_upper,
        p, p_bh, significant, verdict, note``. ``moderation`` is the arm effect in the context minus
        the arm effect outside it. ``verdict`` is ``supports`` / ``contradicts`` (significant after BH,
        in / against the hypothesised direction), ``inconclusive`` or ``not_estimable``.

    Examples
    --------
    >>> from analysis.realist_sim import simulate_realist
    >>> d = simulate_realist(400, seed=1).participants
    >>> t = what_works_for_whom(d, [{"code": "isolation", "outcome": "phq9_m12", "baseline": "phq9_baseline",
    ...     "context": {"variable": "lsns6", "op": "<", "value": 12}, "direction": "negative"}])
    >>> t.loc[0, "verdict"], bool(t.loc[0, "moderation"] < 0)
    ('supports', True)
    """
    rows: list[dict[str, Any]] = []
    for cmo in cmos:
        code = str(cmo.get("code", len(rows) + 1))
        base = {
            "cmo": code,
            "outcome": cmo.get("outcome"),
            "prespecified": bool(cmo.get("prespecified", True)),
            "direction": cmo.get("direction", "any"),
        }
        try:
            rows.append({**base, **_one_cmo(data, cmo, treatment, covariates, alpha, min_per_cell)})
        except ValueError as exc:
            rows.append({**base, "note": str(exc)})
    table = pd.DataFrame(rows)
    for col in _COLUMNS:
        if col not in table.columns:
            table[col] = np.nan
    adj = adjust_pvalues(table["p"].to_numpy(float), "bh", fdr)
    table["p_bh"] = adj["p_adjusted"].to_numpy()
    table["significant"] = adj["reject"].to_numpy()
    table["verdict"] = [_verdict(r) for r in table.itertuples()]
    table["note"] = table["note"].fillna("")
    return table[_COLUMNS]


_COLUMNS = [
    "cmo",
    "outcome",
    "prespecified",
    "direction",
    "n_in",
    "n_out",
    "effect_in",
    "effect_in_ci_lower",
    "effect_in_ci_upper",
    "effect_out",
    "effect_out_ci_lower",
    "effect_out_ci_upper",
    "shrunk_in",
    "shrunk_in_ci_lower",
    "shrunk_in_ci_upper",
    "shrunk_out",
    "shrunk_out_ci_lower",
    "shrunk_out_ci_upper",
    "tau2",
    "moderation",
    "se",
    "df",
    "ci_lower",
    "ci_upper",
    "p",
    "p_bh",
    "significant",
    "verdict",
    "note",
]


def _verdict(r) -> str:
    if not np.isfinite(r.p):
        return "not_estimable"
    if not r.significant:
        return "inconclusive"
    if r.direction == "any":
        return "supports"
    want = 1 if r.direction == "positive" else -1
    return "supports" if np.sign(r.moderation) == want else "contradicts"


def _one_cmo(data, cmo, treatment, covariates, alpha, min_per_cell) -> dict[str, Any]:
    outcome, baseline = cmo.get("outcome"), cmo.get("baseline")
    g = context_mask(data, cmo["context"])
    # Only the model's columns are carried along: a table of many CMOs over a wide participant
    # frame would otherwise copy every column once per row of the table.
    used = [c for c in dict.fromkeys([outcome, treatment, baseline, *covariates]) if c in data.columns]
    sub = data[used].assign(_ctx=g).dropna(subset=["_ctx"])
    keep, extra = _design(sub, outcome, treatment, baseline, covariates)
    a = keep[treatment].astype(float).to_numpy()
    c = keep["_ctx"].astype(float).to_numpy()
    # participants per (context out/in) x (arm 0/1) cell
    cells = np.array([[np.count_nonzero((c == ctx) & (a == arm)) for arm in (0.0, 1.0)] for ctx in (0.0, 1.0)])
    if (cells < min_per_cell).any():
        raise ValueError(
            f"fewer than {min_per_cell} participants with {outcome} in some arm in or out of the context "
            f"(in: {int(cells[1].sum())}, out: {int(cells[0].sum())})"
        )
    X = np.column_stack([np.ones_like(a), a, c, a * c, *extra])
    fit = ols_t(keep[outcome].astype(float).to_numpy(), X, alpha)
    beta, cov, q = fit["beta"], fit["cov"], fit["q"]

    def contrast(L):
        L = np.asarray(L, float)
        est, se = float(L @ beta[:4]), float(np.sqrt(L @ cov[:4, :4] @ L))
        return est, se

    e_out, se_out = contrast([0, 1, 0, 0])
    e_in, se_in = contrast([0, 1, 0, 1])
    mod, se = contrast([0, 0, 0, 1])
    pool = partial_pool([e_in, e_out], [se_in, se_out], alpha)
    s_in, s_out = pool["shrunk"]
    ss_in, ss_out = pool["shrunk_se"]
    z = stats.norm.ppf(1 - alpha / 2)
    t = mod / se
    return {
        "n_in": int((c == 1).sum()),
        "n_out": int((c == 0).sum()),
        "effect_in": e_in,
        "effect_in_ci_lower": e_in - q * se_in,
        "effect_in_ci_upper": e_in + q * se_in,
        "effect_out": e_out,
        "effect_out_ci_lower": e_out - q * se_out,
        "effect_out_ci_upper": e_out + q * se_out,
        "shrunk_in": s_in,
        "shrunk_in_ci_lower": s_in - z * ss_in,
        "shrunk_in_ci_upper": s_in + z * ss_in,
        "shrunk_out": s_out,
        "shrunk_out_ci_lower": s_out - z * ss_out,
        "shrunk_out_ci_upper": s_out + z * ss_out,
        "tau2": pool["tau2"],
        "moderation": mod,
        "se": se,
        "df": fit["df"],
        "ci_lower": mod - q * se,
        "ci_upper": mod + q * se,
        "p": float(2 * stats.t.sf(abs(t), fit["df"])),
    }


def site_heterogeneity(
    data: pd.DataFrame,
    outcome: str,
    treatment: str = "treated",
    site: str = "site",
    baseline: str | None = None,
    covariates: Sequence[str] = (),
    alpha: float = 0.05,
    min_per_arm: int = 3,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Site-specific arm effects, their random-effects summary and empirical-Bayes shrinkage.

    Returns
    -------
    (DataFrame, dict)
        Per site: ``site, n, effect, se, df, ci_lower, ci_upper, shrunk, shrunk_ci_lower,
        shrunk_ci_upper, weight`` (``weight`` is the share of the site's own estimate in its shrunken
        value). Summary: ``mu, mu_se, mu_ci_lower, mu_ci_upper, tau2, i2, q, q_df, q_p,
        pi_lower, pi_upper, n_sites, sites_left_out``.

    Examples
    --------
    >>> from analysis.realist_sim import simulate_realist
    >>> d = simulate_realist(400, seed=3).participants
    >>> per, summ = site_heterogeneity(d, "phq9_m12", baseline="phq9_baseline")
    >>> summ["n_sites"], bool(per["shrunk"].std() <= per["effect"].std())
    (6, True)
    """
    rows, left_out = [], []
    for code, sub in data.groupby(site, sort=True):
        keep, extra = _design(sub, outcome, treatment, baseline, covariates)
        a = keep[treatment].astype(float).to_numpy()
        if min((a == 1).sum(), (a == 0).sum()) < min_per_arm:
            left_out.append(str(code))
            continue
        X = np.column_stack([np.ones_like(a), a, *extra])
        try:
            fit = ols_t(keep[outcome].astype(float).to_numpy(), X, alpha)
        except ValueError:
            left_out.append(str(code))
            continue
        est, se = float(fit["beta"][1]), float(np.sqrt(fit["cov"][1, 1]))
        rows.append(
            {
                "site": str(code),
                "n": len(keep),
                "effect": est,
                "se": se,
                "df": fit["df"],
                "ci_lower": est - fit["q"] * se,
                "ci_upper": est + fit["q"] * se,
            }
        )
    if len(rows) < 2:
        raise ValueError(f"site heterogeneity needs at least two sites with {min_per_arm}+ participants per arm")
    per = pd.DataFrame(rows)
    pool = partial_pool(per["effect"], per["se"], alpha)
    z = stats.norm.ppf(1 - alpha / 2)
    per["shrunk"] = pool["shrunk"]
    per["shrunk_ci_lower"] = pool["shrunk"] - z * pool["shrunk_se"]
    per["shrunk_ci_upper"] = pool["shrunk"] + z * pool["shrunk_se"]
    per["weight"] = pool["weight"]
    summary = {
        "mu": pool["mu"],
        "mu_se": pool["mu_se"],
        "mu_ci_lower": pool["mu_ci"][0],
        "mu_ci_upper": pool["mu_ci"][1],
        "tau2": pool["tau2"],
        "i2": pool["i2"],
        "q": pool["q"],
        "q_df": pool["q_df"],
        "q_p": pool["q_p"],
        "pi_lower": pool["prediction_interval"][0],
        "pi_upper": pool["prediction_interval"][1],
        "n_sites": len(per),
        "sites_left_out": left_out,
    }
    return per, summary


def plot_site_forest(per: pd.DataFrame, summary: Mapping[str, Any], ax=None, path=None, title: str | None = None):
    """Forest plot: each site's own estimate (open) and its shrunken value (filled), with the pooled mean.

    Examples
    --------
    >>> import pandas as pd
    >>> per = pd.DataFrame({"site": ["A", "B"], "effect": [-3.0, -1.0], "ci_lower": [-5.0, -3.0],
    ...     "ci_upper": [-1.0, 1.0], "shrunk": [-2.5, -1.5], "shrunk_ci_lower": [-4.0, -3.0],
    ...     "shrunk_ci_upper": [-1.0, 0.0]})
    >>> plot_site_forest(per, {"mu": -2.0, "mu_ci_lower": -3.0, "mu_ci_upper": -1.0}).axes[0].get_title()
    'Arm effect by site'
    """
    from .plots import _axes, save

    n = len(per)
    fig, ax = _axes(ax, size=(6.4, max(2.2, 0.45 * n + 1.4)))
    y = np.arange(n)[::-1] + 1.0
    ax.errorbar(
        per["effect"],
        y + 0.12,
        xerr=[per["effect"] - per["ci_lower"], per["ci_upper"] - per["effect"]],
        fmt="o",
        mfc="white",
        color="C0",
        capsize=3,
        ms=5,
        label="site estimate",
    )
    ax.errorbar(
        per["shrunk"],
        y - 0.12,
        xerr=[per["shrunk"] - per["shrunk_ci_lower"], per["shrunk_ci_upper"] - per["shrunk"]],
        fmt="s",
        color="C1",
        capsize=3,
        ms=5,
        label="shrunken (partial pooling)",
    )
    mu = summary["mu"]
    ax.errorbar(
        [mu],
        [0],
        xerr=[[mu - summary["mu_ci_lower"]], [summary["mu_ci_upper"] - mu]],
        fmt="D",
        color="black",
        capsize=3,
        ms=6,
        label="pooled (random effects)",
    )
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    ax.set_yticks([*y, 0], [*per["site"].astype(str), "pooled"], fontsize=8)
    ax.set_xlabel("arm effect on the outcome (intervention − comparison)")
    ax.set_title(title or "Arm effect by site")
    ax.legend(fontsize=7, loc="best")
    if path:
        save(fig, path)
    return fig
