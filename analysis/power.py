"""Power and sample size for a two-arm comparison at one wave and for a slope difference.

Slope difference (Diggle, Heagerty, Liang & Zeger 2002, *Analysis of Longitudinal Data*, 2nd ed.,
§2.4): with ``n`` measurement times ``t_j`` common to everyone, exchangeable correlation ``rho``
and residual variance ``sigma2``, the number of participants per arm to detect a slope
difference ``d`` is

    m = 2 (z_{1-α/2} + z_{power})² σ² (1 − ρ) / (n s_x² d²),    s_x² = Σ (t_j − t̄)² / n.

The time-averaged mean difference uses ``m = 2 (z + z)² σ² (1 + (n − 1) ρ) / (n d²)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "n_two_arm",
    "power_two_arm",
    "n_slope_difference",
    "power_slope_difference",
    "n_time_averaged",
    "power_curve",
]


def _z(alpha: float, power: float) -> float:
    return stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)


def n_two_arm(
    delta: float, sd: float = 1.0, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> pd.DataFrame:
    """Participants per arm for a difference in means at one wave (two-sided t-test).

    Returns
    -------
    DataFrame
        ``delta, sd, effect_size, alpha, power, n_normal`` (closed normal form, unrounded),
        ``n_per_arm`` (smallest n for the noncentral t-test, control arm; the other arm ``ratio × n``).

    Examples
    --------
    >>> int(n_two_arm(0.5)["n_per_arm"].iloc[0])   # Cohen's d = 0.5, 80% power
    64
    """
    from statsmodels.stats.power import TTestIndPower

    es = delta / sd
    n_norm = (1 + 1 / ratio) * _z(alpha, power) ** 2 / es**2
    n_t = TTestIndPower().solve_power(effect_size=es, alpha=alpha, power=power, ratio=ratio)
    return pd.DataFrame(
        [
            {
                "delta": delta,
                "sd": sd,
                "effect_size": es,
                "alpha": alpha,
                "power": power,
                "n_normal": n_norm,
                "n_per_arm": int(np.ceil(n_t - 1e-9)),
            }
        ]
    )


def power_two_arm(n_per_arm: float, delta: float, sd: float = 1.0, alpha: float = 0.05, ratio: float = 1.0) -> float:
    """Power of the two-sided t-test with ``n_per_arm`` in the first arm."""
    from statsmodels.stats.power import TTestIndPower

    return float(TTestIndPower().power(effect_size=delta / sd, nobs1=n_per_arm, alpha=alpha, ratio=ratio))


def _sx2(times: Sequence[float]) -> float:
    t = np.asarray(times, float)
    return float(((t - t.mean()) ** 2).mean())


def n_slope_difference(
    slope_diff: float, sigma2: float, rho: float, times: Sequence[float], alpha: float = 0.05, power: float = 0.8
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
    m = 2 * _z(alpha, power) ** 2 * sigma2 * (1 - rho) / (n * sx2 * slope_diff**2)
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
    n_per_arm: float, slope_diff: float, sigma2: float, rho: float, times: Sequence[float], alpha: float = 0.05
) -> float:
    """Power to detect a slope difference with ``n_per_arm`` participants per arm (inverse of the formula)."""
    n = len(times)
    z = np.sqrt(n_per_arm * n * _sx2(times) * slope_diff**2 / (2 * sigma2 * (1 - rho)))
    return float(stats.norm.cdf(z - stats.norm.ppf(1 - alpha / 2)))


def n_time_averaged(
    delta: float, sigma2: float, rho: float, n_times: int, alpha: float = 0.05, power: float = 0.8
) -> pd.DataFrame:
    """Participants per arm to detect a difference in time-averaged means (Diggle et al. 2002, §2.4)."""
    m = 2 * _z(alpha, power) ** 2 * sigma2 * (1 + (n_times - 1) * rho) / (n_times * delta**2)
    return pd.DataFrame(
        [
            {
                "delta": delta,
                "sigma2": sigma2,
                "rho": rho,
                "n_times": n_times,
                "alpha": alpha,
                "power": power,
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
