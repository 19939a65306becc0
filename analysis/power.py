"""Power and sample size for a two-arm comparison at one wave and for a slope difference.

Slope difference (Diggle, Heagerty, Liang & Zeger 2002, *Analysis of Longitudinal Data*, 2nd ed.,
§2.4): with ``n`` measurement times ``t_j`` common to everyone, exchangeable correlation ``rho``
and residual variance ``sigma2``, the number of participants per arm to detect a slope
difference ``d`` is

    m = 2 (z_{1-α/2} + z_{power})² σ² (1 − ρ) / (n s_x² d²),    s_x² = Σ (t_j − t̄)² / n.

The time-averaged mean difference uses ``m = 2 (z + z)² σ² (1 + (n − 1) ρ) / (n d²)``.

Baseline-adjusted ANCOVA at one follow-up needs the t-test's n times ``1 − ρ²`` (ρ the baseline–follow-up
correlation; Borm, Fransen & Lemmens 2007, *J Clin Epidemiol* 60:1234). Group-delivered interventions
inflate n by the design effect ``1 + (m − 1)·ICC`` (m participants per group; Donner & Klar 2000), or
``1 + ((cv² + 1) m − 1)·ICC`` when group sizes vary with coefficient of variation ``cv`` (Eldridge, Ashby
& Kerry 2006). In a partially nested trial only the arm delivered in groups is inflated.

Every function takes ``alternative="two-sided"`` (default) or ``"one-sided"``; a one-sided test at
``alpha`` uses ``z_{1−α}`` (never pass ``2α`` to get it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "design_effect",
    "n_ancova",
    "n_two_arm",
    "power_two_arm",
    "n_slope_difference",
    "power_slope_difference",
    "n_time_averaged",
    "power_curve",
]


def _za(alpha: float, alternative: str) -> float:
    if alternative not in ("two-sided", "one-sided"):
        raise ValueError("alternative must be 'two-sided' or 'one-sided'")
    return stats.norm.ppf(1 - alpha / 2) if alternative == "two-sided" else stats.norm.ppf(1 - alpha)


def _z(alpha: float, power: float, alternative: str = "two-sided") -> float:
    return _za(alpha, alternative) + stats.norm.ppf(power)


def _sm_alt(alternative: str) -> str:
    _za(0.05, alternative)
    return "two-sided" if alternative == "two-sided" else "larger"


def design_effect(cluster_size: float, icc: float, cv: float = 0.0) -> float:
    """Design effect of delivering in groups: ``1 + ((cv² + 1) m − 1)·ICC`` (``cv = 0``: ``1 + (m − 1)·ICC``).

    Examples
    --------
    >>> design_effect(8, 0.05)             # peer groups of 8, ICC 0.05
    1.35
    >>> round(design_effect(8, 0.05, cv=0.5), 4)
    1.45
    """
    if cluster_size < 1:
        raise ValueError("cluster_size must be at least 1")
    if not 0 <= icc <= 1:
        raise ValueError("icc must be between 0 and 1")
    return float(1 + ((cv**2 + 1) * cluster_size - 1) * icc)


def n_two_arm(
    delta: float,
    sd: float = 1.0,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: str = "two-sided",
    cluster_size: float = 1.0,
    icc: float = 0.0,
    cv: float = 0.0,
    partially_nested: bool = False,
) -> pd.DataFrame:
    """Participants per arm for a difference in means at one wave (t-test), with an optional design effect.

    Parameters
    ----------
    ratio : float
        Size of the second arm relative to the first.
    alternative : {"two-sided", "one-sided"}
    cluster_size, icc, cv : float
        Peer-group size, intra-group correlation and size variation: n is multiplied by
        :func:`design_effect`. With ``partially_nested=True`` only the intervention (second) arm is.

    Returns
    -------
    DataFrame
        ``delta, sd, effect_size, alpha, power, alternative, n_normal`` (closed normal form, unrounded),
        ``n_unadjusted`` (smallest n for the noncentral t-test), ``design_effect``, ``n_per_arm`` (first
        arm), ``n_intervention`` (second arm, after ``ratio`` and the design effect).

    Examples
    --------
    >>> int(n_two_arm(0.5)["n_per_arm"].iloc[0])   # Cohen's d = 0.5, 80% power
    64
    >>> int(n_two_arm(0.5, alternative="one-sided")["n_per_arm"].iloc[0])
    51
    """
    from statsmodels.stats.power import TTestIndPower

    es = delta / sd
    n_norm = (1 + 1 / ratio) * _z(alpha, power, alternative) ** 2 / es**2
    n_t = TTestIndPower().solve_power(
        effect_size=abs(es), alpha=alpha, power=power, ratio=ratio, alternative=_sm_alt(alternative)
    )
    deff = design_effect(cluster_size, icc, cv)
    n0 = int(np.ceil(n_t - 1e-9))
    first = n0 if partially_nested else int(np.ceil(n_t * deff - 1e-9))
    second = int(np.ceil(n_t * ratio * deff - 1e-9))
    return pd.DataFrame(
        [
            {
                "delta": delta,
                "sd": sd,
                "effect_size": es,
                "alpha": alpha,
                "power": power,
                "alternative": alternative,
                "n_normal": n_norm,
                "n_unadjusted": n0,
                "design_effect": deff,
                "n_per_arm": first,
                "n_intervention": second,
            }
        ]
    )


def n_ancova(
    delta: float,
    sd: float = 1.0,
    rho: float = 0.5,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: str = "two-sided",
    cluster_size: float = 1.0,
    icc: float = 0.0,
    partially_nested: bool = False,
) -> pd.DataFrame:
    """Participants per arm for a baseline-adjusted ANCOVA at one follow-up (Borm et al. 2007).

    ``n = n_t-test × (1 − ρ²)``, times the design effect when delivered in groups.

    Returns
    -------
    DataFrame
        ``delta, sd, rho, alpha, power, alternative, n_ttest, variance_factor, design_effect, n_per_arm,
        n_intervention``.

    Examples
    --------
    >>> r = n_ancova(0.5, rho=0.5).iloc[0]
    >>> int(r["n_ttest"]), float(r["variance_factor"]), int(r["n_per_arm"])
    (64, 0.75, 48)
    """
    if not -1 < rho < 1:
        raise ValueError("rho must be between -1 and 1")
    base = n_two_arm(delta, sd, alpha, power, alternative=alternative).iloc[0]
    factor = 1 - rho**2
    deff = design_effect(cluster_size, icc)
    n = base["n_unadjusted"] * factor
    return pd.DataFrame(
        [
            {
                "delta": delta,
                "sd": sd,
                "rho": rho,
                "alpha": alpha,
                "power": power,
                "alternative": alternative,
                "n_ttest": int(base["n_unadjusted"]),
                "variance_factor": factor,
                "design_effect": deff,
                "n_per_arm": int(np.ceil(n * (1 if partially_nested else deff) - 1e-9)),
                "n_intervention": int(np.ceil(n * deff - 1e-9)),
            }
        ]
    )


def power_two_arm(
    n_per_arm: float,
    delta: float,
    sd: float = 1.0,
    alpha: float = 0.05,
    ratio: float = 1.0,
    alternative: str = "two-sided",
    design_effect: float = 1.0,
) -> float:
    """Power of the t-test with ``n_per_arm`` in the first arm (effective n = n / design effect).

    Examples
    --------
    >>> round(power_two_arm(64, 0.5), 3)
    0.801
    """
    from statsmodels.stats.power import TTestIndPower

    return float(
        TTestIndPower().power(
            effect_size=abs(delta / sd),
            nobs1=n_per_arm / design_effect,
            alpha=alpha,
            ratio=ratio,
            alternative=_sm_alt(alternative),
        )
    )


def _sx2(times: Sequence[float]) -> float:
    t = np.asarray(times, float)
    return float(((t - t.mean()) ** 2).mean())


def n_slope_difference(
    slope_diff: float,
    sigma2: float,
    rho: float,
    times: Sequence[float],
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: str = "two-sided",
) -> pd.DataFrame:
    """Participants per arm to detect a difference in slopes (Diggle et al. 2002, §2.4).

    Parameters
    ----------
    slope_diff : float
        Difference in rate of change between arms (outcome units per time unit of ``times``).
    sigma2 : float
        Variance of a single measurement.
    rho : float
        Correlation between repeated measurements of a participant (exchangeable; for a random
        intercept model ``rho`` is the ICC).
    times : sequence of float
        Measurement times (e.g. years: 0, 1/12, 0.25, 0.5, 1).

    Returns
    -------
    DataFrame
        ``slope_diff, sigma2, rho, n_times, sx2, alpha, power, m`` (unrounded) and ``n_per_arm`` (ceiling).

    Examples
    --------
    >>> round(float(n_slope_difference(0.1, 1.0, 0.5, [0, 1, 2, 3, 4])["m"].iloc[0]), 2)
    78.49
    """
    n = len(times)
    sx2 = _sx2(times)
    m = 2 * _z(alpha, power, alternative) ** 2 * sigma2 * (1 - rho) / (n * sx2 * slope_diff**2)
    return pd.DataFrame(
        [
            {
                "slope_diff": slope_diff,
                "sigma2": sigma2,
                "rho": rho,
                "n_times": n,
                "sx2": sx2,
                "alpha": alpha,
                "power": power,
                "m": m,
                "n_per_arm": int(np.ceil(m - 1e-9)),
            }
        ]
    )


def power_slope_difference(
    n_per_arm: float,
    slope_diff: float,
    sigma2: float,
    rho: float,
    times: Sequence[float],
    alpha: float = 0.05,
    alternative: str = "two-sided",
) -> float:
    """Power to detect a slope difference with ``n_per_arm`` participants per arm (inverse of the formula).

    Examples
    --------
    >>> round(power_slope_difference(79, 0.1, 1.0, 0.5, [0, 1, 2, 3, 4]), 3)
    0.803
    """
    n = len(times)
    z = np.sqrt(n_per_arm * n * _sx2(times) * slope_diff**2 / (2 * sigma2 * (1 - rho)))
    return float(stats.norm.cdf(z - _za(alpha, alternative)))


def n_time_averaged(
    delta: float,
    sigma2: float,
    rho: float,
    n_times: int,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: str = "two-sided",
) -> pd.DataFrame:
    """Participants per arm to detect a difference in time-averaged means (Diggle et al. 2002, §2.4).

    Examples
    --------
    >>> round(float(n_time_averaged(0.5, 1.0, 0.5, 4)["m"].iloc[0]), 2)
    39.24
    """
    m = 2 * _z(alpha, power, alternative) ** 2 * sigma2 * (1 + (n_times - 1) * rho) / (n_times * delta**2)
    return pd.DataFrame(
        [
            {
                "delta": delta,
                "sigma2": sigma2,
                "rho": rho,
                "n_times": n_times,
                "alpha": alpha,
                "power": power,
                "alternative": alternative,
                "m": m,
                "n_per_arm": int(np.ceil(m - 1e-9)),
            }
        ]
    )


def power_curve(n_per_arm: Sequence[int], design: str = "two_arm", **kwargs) -> pd.DataFrame:
    """Power over a range of sample sizes.

    Parameters
    ----------
    design : {"two_arm", "slope"}
        ``two_arm`` takes ``delta, sd, alpha``; ``slope`` takes ``slope_diff, sigma2, rho, times, alpha``.

    Returns
    -------
    DataFrame
        ``n_per_arm, power``.

    Examples
    --------
    >>> power_curve([20, 40, 80], design="two_arm", delta=0.5).round(2)["power"].tolist()
    [0.34, 0.6, 0.88]
    """
    f = power_two_arm if design == "two_arm" else power_slope_difference
    if design not in ("two_arm", "slope"):
        raise ValueError("design must be 'two_arm' or 'slope'")
    return pd.DataFrame({"n_per_arm": list(n_per_arm), "power": [f(n, **kwargs) for n in n_per_arm]})
