"""Dose and compliance: the complier average causal effect (CACE) and dose–response within the arm.

:func:`cace` estimates the effect of taking up the programme among those who would take it up if
offered, with randomisation as the instrument (Angrist, Imbens & Rubin 1996): two-stage least
squares with heteroskedasticity-robust (HC1) standard errors, and the Wald estimator (ITT on the
outcome divided by ITT on uptake) as a check. Valid under the exclusion restriction (being offered
the programme affects the outcome only through uptake), monotonicity (no one takes it up *because*
they were not offered it) and a non-zero effect of the offer on uptake (the first-stage F is given).

:func:`dose_response` regresses the outcome on dose within the intervention arm. Dose is chosen by
participants, not randomised: the slope mixes the effect of dose with whatever makes people attend
(:data:`DOSE_CAVEAT`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .realist import ols_t

__all__ = ["cace", "wald_cace", "dose_response", "DOSE_CAVEAT", "CACE_ASSUMPTIONS"]

DOSE_CAVEAT = (
    "Dose was not randomised: participants who attend more differ from those who attend less "
    "(motivation, health, circumstances), so this slope is an association within the intervention "
    "arm, not the causal effect of more sessions."
)
CACE_ASSUMPTIONS = (
    "The complier average causal effect uses randomisation as the instrument and assumes the exclusion "
    "restriction (the offer acts only through uptake), monotonicity (no defiers) and a relevant first "
    "stage (see first_stage_F)."
)


def _numeric(data: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise ValueError(f"column(s) not in the frame: {', '.join(missing)}")
    return data[list(cols)].apply(pd.to_numeric, errors="coerce").dropna()


def wald_cace(data: pd.DataFrame, assigned: str, received: str, outcome: str) -> float:
    """The Wald estimator: difference in mean outcome by arm over difference in uptake by arm.

    Examples
    --------
    >>> import pandas as pd
    >>> d = pd.DataFrame({"z": [1, 1, 1, 1, 0, 0, 0, 0], "d": [1, 1, 1, 0, 0, 0, 0, 0],
    ...                   "y": [5.0, 6.0, 7.0, 2.0, 3.0, 2.0, 4.0, 3.0]})
    >>> round(wald_cace(d, "z", "d", "y"), 4)
    2.6667
    """
    d = _numeric(data, [assigned, received, outcome])
    g1, g0 = d[d[assigned] == 1], d[d[assigned] == 0]
    den = g1[received].mean() - g0[received].mean()
    if not np.isfinite(den) or abs(den) < 1e-12:
        raise ValueError("uptake does not differ between the arms: the complier effect is not identified")
    return float((g1[outcome].mean() - g0[outcome].mean()) / den)


def cace(
    data: pd.DataFrame,
    assigned: str,
    received: str,
    outcome: str,
    covariates: Sequence[str] = (),
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Complier average causal effect by two-stage least squares with HC1 robust SEs, and the Wald check.

    Parameters
    ----------
    assigned : str
        Randomised arm, 1 = offered the programme, 0 = comparison (the instrument).
    received : str
        Uptake as the adherence definition says (0/1), or a dose in [0, 1].
    covariates : sequence of str
        Baseline covariates (in both stages).

    Returns
    -------
    DataFrame
        Rows ``cace`` (2SLS), ``itt`` (offer on outcome, OLS with the covariates), ``wald`` (no
        covariates) and ``compliance`` (offer on uptake); columns ``estimate, se, df, ci_lower,
        ci_upper, p, n, first_stage_F, assumptions``.

    Examples
    --------
    >>> from analysis.realist_sim import simulate_realist
    >>> s = simulate_realist(400, seed=2)
    >>> r = cace(s.participants, "treated", "adherent", "phq9_m12").set_index("estimand")
    >>> bool(abs(r.loc["cace", "estimate"] - r.loc["wald", "estimate"]) < 1e-9)
    True
    """
    d = _numeric(data, [assigned, received, outcome, *covariates])
    n = len(d)
    k = 2 + len(covariates)
    if n < k + 10:
        raise ValueError(f"too few participants with {outcome}, {received} and the covariates ({n})")
    Z1 = d[assigned].to_numpy(float)
    if not set(np.unique(Z1)) <= {0.0, 1.0} or len(np.unique(Z1)) < 2:
        raise ValueError(f"{assigned} must be 0 (comparison) or 1 (offered), with both present")
    C = d[list(covariates)].to_numpy(float).reshape(n, len(covariates))
    D, Y = d[received].to_numpy(float), d[outcome].to_numpy(float)
    one = np.ones(n)
    Z = np.column_stack([one, Z1, C])
    X = np.column_stack([one, D, C])
    # first stage: uptake on the offer
    fs = ols_t(D, Z, alpha)
    resid_fs = D - Z @ fs["beta"]
    with np.errstate(divide="ignore", invalid="ignore"):
        f_stat = float(fs["beta"][1] ** 2 / fs["cov"][1, 1])
    if not np.isfinite(f_stat) or abs(fs["beta"][1]) < 1e-12:
        raise ValueError("uptake does not differ between the arms: the complier effect is not identified")
    Xhat = np.column_stack([one, D - resid_fs, C])
    bread = np.linalg.inv(Xhat.T @ Xhat)
    beta = bread @ Xhat.T @ Y
    u = Y - X @ beta  # structural residuals use the observed uptake
    meat = (Xhat * u[:, None] ** 2).T @ Xhat
    V = bread @ meat @ bread * n / (n - k)
    q = stats.t.ppf(1 - alpha / 2, n - k)
    rows: list[tuple[Any, ...]] = []

    def add(name, est, se, df):
        t = est / se if se > 0 else np.nan
        rows.append((name, est, se, df, est - q * se, est + q * se, 2 * stats.t.sf(abs(t), df)))

    add("cace", float(beta[1]), float(np.sqrt(V[1, 1])), n - k)
    itt = ols_t(Y, Z, alpha)
    add("itt", float(itt["beta"][1]), float(np.sqrt(itt["cov"][1, 1])), itt["df"])
    add("compliance", float(fs["beta"][1]), float(np.sqrt(fs["cov"][1, 1])), fs["df"])
    rows.append(("wald", wald_cace(d, assigned, received, outcome), *([np.nan] * 5)))
    out = pd.DataFrame(rows, columns=["estimand", "estimate", "se", "df", "ci_lower", "ci_upper", "p"])
    out["n"], out["first_stage_F"], out["assumptions"] = n, f_stat, CACE_ASSUMPTIONS
    return out


def dose_response(
    data: pd.DataFrame,
    dose: str,
    outcome: str,
    treatment: str | None = "treated",
    covariates: Sequence[str] = (),
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Slope of the outcome on dose within the intervention arm (an association; see :data:`DOSE_CAVEAT`).

    Returns
    -------
    DataFrame
        One row: ``dose, outcome, n, slope, se, df, ci_lower, ci_upper, p, caveat``.

    Examples
    --------
    >>> import pandas as pd
    >>> d = pd.DataFrame({"treated": 1, "sessions": [0, 2, 4, 6, 8, 10], "y": [10.0, 9, 9, 7, 6, 6]})
    >>> round(float(dose_response(d, "sessions", "y").loc[0, "slope"]), 3)
    -0.443
    """
    d = data if treatment is None else data[pd.to_numeric(data[treatment], errors="coerce") == 1]
    d = _numeric(d, [dose, outcome, *covariates])
    n = len(d)
    if n < 3 + len(covariates) or d[dose].nunique() < 2:
        raise ValueError(f"too few intervention-arm participants with varying {dose} and {outcome} ({n})")
    X = np.column_stack([np.ones(n), d[dose].to_numpy(float), d[list(covariates)].to_numpy(float).reshape(n, -1)])
    fit = ols_t(d[outcome].to_numpy(float), X, alpha)
    est, se = float(fit["beta"][1]), float(np.sqrt(fit["cov"][1, 1]))
    h = fit["q"] * se
    p = float(2 * stats.t.sf(abs(est / se), fit["df"])) if se > 0 else np.nan
    return pd.DataFrame(
        [(dose, outcome, n, est, se, fit["df"], est - h, est + h, p, DOSE_CAVEAT)],
        columns=["dose", "outcome", "n", "slope", "se", "df", "ci_lower", "ci_upper", "p", "caveat"],
    )
