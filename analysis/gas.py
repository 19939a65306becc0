"""Goal Attainment Scaling (GAS): Kiresuk–Sherman T-scores of participants' own goals.

Each goal has five levels defined at baseline (−2 much less than expected, −1 somewhat less,
0 the expected outcome, +1 somewhat more, +2 much more than expected), a weight (default 1) and a
level at follow-up. Kiresuk & Sherman (1968) combine a person's goals into

``T = 50 + 10 Σ wᵢxᵢ / √((1 − ρ) Σ wᵢ² + ρ (Σ wᵢ)²)``

where ``ρ`` is the assumed correlation between goal scores (0.3 by convention). T has mean 50 and
SD 10 when levels are distributed as expected.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["gas_tscore", "gas_scores", "gas_by_arm"]


def gas_tscore(levels: Sequence[float], weights: Sequence[float] | None = None, rho: float = 0.3) -> float:
    """The Kiresuk–Sherman T-score of one person's goals.

    Examples
    --------
    Three goals rated +1, 0 and −1 with weights 1, 2, 3 (``ρ = 0.3``):
    ``50 + 10 (1 − 3) / √(0.7 · 14 + 0.3 · 36) = 50 − 20 / √20.6``.

    >>> round(gas_tscore([1, 0, -1], [1, 2, 3]), 3)
    45.593
    >>> gas_tscore([0, 0])
    50.0
    """
    x = np.asarray(levels, float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, float)
    if len(x) == 0 or len(w) != len(x):
        raise ValueError("GAS needs at least one goal and one weight per goal")
    if np.any((x < -2) | (x > 2)) or np.any(~np.isfinite(x)):
        raise ValueError("GAS levels lie in -2..+2")
    if np.any(w <= 0):
        raise ValueError("GAS weights must be positive")
    if not 0 <= rho < 1:
        raise ValueError("rho must lie in [0, 1)")
    return float(50 + 10 * (w @ x) / np.sqrt((1 - rho) * (w**2).sum() + rho * w.sum() ** 2))


def gas_scores(
    goals: pd.DataFrame,
    participant: str = "participant",
    weight: str | None = "weight",
    baseline: str = "baseline_level",
    followup: str = "followup_level",
    rho: float = 0.3,
) -> pd.DataFrame:
    """T-scores per participant at baseline and follow-up, and their change.

    Goals without a follow-up rating are left out of the follow-up score (``n_goals_rated``).

    Examples
    --------
    >>> import pandas as pd
    >>> g = pd.DataFrame({"participant": ["a", "a", "b"], "weight": [1, 1, 2],
    ...                   "baseline_level": [-1, -1, -1], "followup_level": [1, 0, 2]})
    >>> gas_scores(g)[["participant", "t_followup"]].round(2).values.tolist()
    [['a', 56.2], ['b', 70.0]]
    """
    rows = []
    for pid, g in goals.groupby(participant, sort=True):
        w = g[weight].to_numpy(float) if weight else np.ones(len(g))
        bl = g[baseline].to_numpy(float)
        fu = g[followup].to_numpy(float)
        ok_b, ok_f = np.isfinite(bl), np.isfinite(fu)
        tb = gas_tscore(bl[ok_b], w[ok_b], rho) if ok_b.any() else np.nan
        tf = gas_tscore(fu[ok_f], w[ok_f], rho) if ok_f.any() else np.nan
        rows.append((pid, len(g), int(ok_f.sum()), tb, tf, tf - tb))
    return pd.DataFrame(rows, columns=[participant, "n_goals", "n_goals_rated", "t_baseline", "t_followup", "t_change"])


def gas_by_arm(scores: pd.DataFrame, arm: pd.Series | str, alpha: float = 0.05, reference: str | None = None):
    """Mean T-scores (baseline, follow-up, change) by arm with t intervals, and each arm's difference
    in mean change from the reference arm (Welch).

    Examples
    --------
    >>> import pandas as pd
    >>> s = pd.DataFrame({"arm": ["p"] * 3 + ["u"] * 3, "t_baseline": [38.0] * 6,
    ...                   "t_followup": [60.0, 55, 65, 50, 45, 40], "t_change": [22.0, 17, 27, 12, 7, 2]})
    >>> gas_by_arm(s, "arm", reference="u").query("measure == 't_change'")["mean"].tolist()
    [22.0, 7.0, 15.0]
    """
    arms = scores[arm] if isinstance(arm, str) else arm
    levels = sorted(arms.dropna().unique().tolist())
    ref = reference if reference is not None else levels[0]
    rows = []
    for measure in ("t_baseline", "t_followup", "t_change"):
        for a in levels:
            v = scores.loc[arms == a, measure].dropna().to_numpy(float)
            n = len(v)
            m = float(v.mean()) if n else np.nan
            se = float(v.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan
            h = stats.t.ppf(1 - alpha / 2, n - 1) * se if n > 1 else np.nan
            rows.append((measure, str(a), "", n, m, se, m - h, m + h, np.nan))
        if measure != "t_change":
            continue
        r = scores.loc[arms == ref, measure].dropna().to_numpy(float)
        for a in levels:
            if a == ref:
                continue
            v = scores.loc[arms == a, measure].dropna().to_numpy(float)
            if len(v) < 2 or len(r) < 2:
                continue
            va, vr = v.var(ddof=1) / len(v), r.var(ddof=1) / len(r)
            se = float(np.sqrt(va + vr))
            df = (va + vr) ** 2 / (va**2 / (len(v) - 1) + vr**2 / (len(r) - 1)) if se > 0 else np.inf
            d = float(v.mean() - r.mean())
            h = stats.t.ppf(1 - alpha / 2, df) * se
            p = float(2 * stats.t.sf(abs(d / se), df)) if se > 0 else np.nan
            rows.append((measure, str(a), str(ref), len(v) + len(r), d, se, d - h, d + h, p))
    return pd.DataFrame(rows, columns=["measure", "arm", "versus", "n", "mean", "se", "ci_lower", "ci_upper", "p"])
