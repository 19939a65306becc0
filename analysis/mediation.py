"""Longitudinal mediation of the arm effect: natural indirect and direct effects with bootstrap intervals.

The mechanism is measured before the outcome (self-efficacy at month 3, depression at month 12).
Two linear models are fitted (VanderWeele 2015, ch. 2; Imai, Keele & Tingley 2010):

* mediator model ``M = β0 + β1 A + β'C + e``;
* outcome model ``Y = θ0 + θ1 A + θ2 M + θ3 A·M + θ'C + e`` (``θ3`` only with ``interaction=True``).

With ``c̄`` the covariate means, the natural direct effect is ``NDE = θ1 + θ3 (β0 + β'c̄)`` and the
natural indirect effect ``NIE = (θ2 + θ3) β1`` (effects of the treated arm vs the comparison arm;
without interaction ``NIE = β1 θ2``, the product of coefficients). The total effect is their sum.
Intervals are percentile intervals over nonparametric bootstrap resamples of participants.

These are causal effects only under **sequential ignorability**: (1) randomisation makes the arm
independent of the potential mechanism and outcome values, and (2) given the arm and the
covariates, nothing that affects both the mechanism and the outcome is left out — in particular,
no such confounder is itself affected by the arm. (2) cannot be guaranteed by randomisation; the
result states it (:data:`ASSUMPTION`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["mediation", "ASSUMPTION"]

ASSUMPTION = (
    "Natural direct and indirect effects are causal only under sequential ignorability: the arm is "
    "randomised, and given the arm and the covariates there is no unmeasured confounding of the "
    "mechanism–outcome relation (and no such confounder is affected by the arm). Randomisation "
    "guarantees the first part only."
)


def _effects(A, M, Y, C, interaction: bool) -> np.ndarray:
    n = len(A)
    Xm = np.column_stack([np.ones(n), A, C])
    beta = np.linalg.lstsq(Xm, M, rcond=None)[0]
    cols = [np.ones(n), A, M] + ([A * M] if interaction else [])
    Xy = np.column_stack([*cols, C])
    theta = np.linalg.lstsq(Xy, Y, rcond=None)[0]
    t3 = theta[3] if interaction else 0.0
    cbar = C.mean(axis=0) if C.shape[1] else np.zeros(0)
    m0 = beta[0] + (beta[2:] @ cbar if C.shape[1] else 0.0)  # mediator mean in the comparison arm
    nde = theta[1] + t3 * m0
    nie = (theta[2] + t3) * beta[1]
    return np.array([nie, nde, nie + nde, beta[1], theta[2]])


def mediation(
    data: pd.DataFrame,
    treatment: str,
    mediator: str,
    outcome: str,
    covariates: Sequence[str] = (),
    interaction: bool = False,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int | None = None,
) -> pd.DataFrame:
    """Natural indirect (NIE) and direct (NDE) effects of a randomised arm through a mechanism.

    Parameters
    ----------
    data : DataFrame
        One row per participant; ``treatment`` is 1 for the intervention arm, 0 for the comparison.
    mediator, outcome : str
        The mechanism (measured earlier) and the outcome (measured later).
    covariates : sequence of str
        Baseline covariates of both models (e.g. the baseline mechanism and outcome).
    interaction : bool
        Let the mechanism's effect on the outcome differ by arm (``A·M`` term).

    Returns
    -------
    DataFrame
        ``effect, estimate, ci_lower, ci_upper, boot_se, n, n_boot, assumption`` with effects
        ``indirect``, ``direct``, ``total``, ``proportion_mediated``, ``a_path`` (arm → mechanism) and
        ``b_path`` (mechanism → outcome, in the comparison arm when ``interaction``).

    Examples
    --------
    >>> from analysis.realist_sim import simulate_realist
    >>> d = simulate_realist(300, seed=4).participants
    >>> r = mediation(d, "treated", "semcd6_m3", "phq9_m12", ["semcd6_baseline", "phq9_baseline"],
    ...               n_boot=200, seed=1).set_index("effect")
    >>> bool(r.loc["indirect", "ci_upper"] < 0), r.loc["indirect", "assumption"].startswith("Natural")
    (True, True)
    """
    cols = [treatment, mediator, outcome, *covariates]
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise ValueError(f"column(s) not in the frame: {', '.join(missing)}")
    d = data[cols].apply(pd.to_numeric, errors="coerce").dropna()
    A = d[treatment].to_numpy(float)
    if not set(np.unique(A)) <= {0.0, 1.0} or len(np.unique(A)) < 2:
        raise ValueError(f"{treatment} must be 0 (comparison) or 1 (intervention), with both present")
    n = len(d)
    if n < 10 + len(covariates) * 2:
        raise ValueError(f"too few participants with {mediator}, {outcome} and the covariates ({n})")
    M, Y = d[mediator].to_numpy(float), d[outcome].to_numpy(float)
    C = d[list(covariates)].to_numpy(float).reshape(n, len(covariates))
    est = _effects(A, M, Y, C, interaction)
    rng = np.random.default_rng(seed)
    boots = np.empty((n_boot, len(est)))
    idx1, idx0 = np.flatnonzero(A == 1), np.flatnonzero(A == 0)
    for i in range(n_boot):
        # resample within arms: the arm sizes are fixed by design
        s = np.concatenate([rng.choice(idx1, len(idx1)), rng.choice(idx0, len(idx0))])
        boots[i] = _effects(A[s], M[s], Y[s], C[s], interaction)
    with np.errstate(divide="ignore", invalid="ignore"):
        prop = est[0] / est[2]
        prop_b = boots[:, 0] / boots[:, 2]
    names = ["indirect", "direct", "total", "a_path", "b_path"]
    rows = []
    lo, hi = 100 * alpha / 2, 100 * (1 - alpha / 2)
    for j, name in enumerate(names):
        rows.append((name, est[j], *np.percentile(boots[:, j], [lo, hi]), boots[:, j].std(ddof=1)))
    ok = np.isfinite(prop_b)
    rows.insert(3, ("proportion_mediated", prop, *np.percentile(prop_b[ok], [lo, hi]), prop_b[ok].std(ddof=1)))
    out = pd.DataFrame(rows, columns=["effect", "estimate", "ci_lower", "ci_upper", "boot_se"])
    out["n"], out["n_boot"], out["assumption"] = n, n_boot, ASSUMPTION
    return out
