"""Figures of the trial report with human-readable labels: observed trajectories by arm, and
Kaplan–Meier retention with the numbers at risk.

Examples
--------
>>> import pandas as pd
>>> d = pd.DataFrame({"arm": ["A", "A", "B"], "duration": [10.0, 200.0, 90.0], "event": [1, 0, 0]})
>>> numbers_at_risk(d, [0, 30, 182]).values.tolist()
[['A', 2, 1, 1], ['B', 1, 1, 0]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["numbers_at_risk", "trajectory_figure", "km_figure"]


def numbers_at_risk(
    df: pd.DataFrame, times: Sequence[float], *, by: str = "arm", duration: str = "duration"
) -> pd.DataFrame:
    """Participants still followed (``duration >= t``) at each time, per group: ``<by>, <t>...``.

    >>> import pandas as pd
    >>> numbers_at_risk(pd.DataFrame({"arm": ["A"], "duration": [5.0]}), [0, 10]).columns.tolist()
    ['arm', 0, 10]
    """
    rows = []
    for g, grp in df.groupby(by, sort=True):
        rows.append([g, *[int((grp[duration] >= t).sum()) for t in times]])
    return pd.DataFrame(rows, columns=[by, *times])


def trajectory_figure(
    long: pd.DataFrame, scale: str, label: str, waves: Sequence[tuple[str, int]], *, better: str = "higher"
):
    """Observed mean ± 95% CI (t) of ``scale`` per arm at each wave, x at the wave's planned month.

    >>> import pandas as pd
    >>> long = pd.DataFrame({"participant": list("abab"), "arm": ["Peer", "Usual"] * 2, "scale": "phq9",
    ...                      "wave": ["baseline"] * 2 + ["m6"] * 2, "value": [10.0, 11, 6, 9]})
    >>> fig = trajectory_figure(long, "phq9", "PHQ-9 depression", [("baseline", 0), ("m6", 182)])
    >>> fig.axes[0].get_ylabel()
    'PHQ-9 depression'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    d = long[(long["scale"] == scale) & long["value"].notna()]
    offsets = dict(waves)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for i, (arm, g) in enumerate(d.groupby("arm", sort=True)):
        agg = g.groupby("wave")["value"].agg(["mean", "std", "count"])
        agg = agg.loc[[w for w, _ in waves if w in agg.index]]
        x = np.array([offsets[w] / 30.4375 for w in agg.index]) + (i - 0.5) * 0.15
        half = np.where(
            agg["count"] > 1,
            stats.t.ppf(0.975, np.maximum(agg["count"] - 1, 1)) * agg["std"] / np.sqrt(agg["count"]),
            0,
        )
        ax.errorbar(x, agg["mean"], yerr=np.nan_to_num(half), marker="o", capsize=3, label=f"{arm}")
    ax.set_xlabel("Months since enrolment")
    ax.set_ylabel(label)
    ax.set_xticks([o / 30.4375 for _, o in waves], [w for w, _ in waves], rotation=45, ha="right")
    ax.set_title(f"{label} by arm (mean, 95% CI; {'higher' if better == 'higher' else 'lower'} is better)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=9)
    fig.tight_layout()
    return fig


def km_figure(km: pd.DataFrame, at_risk: pd.DataFrame | None = None, *, colours: Mapping[str, str] | None = None):
    """Kaplan–Meier retention curves from :func:`analysis.survival.km_table` (``group`` = arm label).

    >>> import pandas as pd
    >>> from analysis.survival import km_table
    >>> km = km_table(pd.DataFrame({"arm": ["A", "A", "B"], "duration": [10.0, 20, 30], "event": [1, 0, 0]}),
    ...               by="arm")
    >>> km_figure(km).axes[0].get_ylabel()
    'Proportion still in the study'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for g, grp in km.groupby("group", sort=True):
        t = np.concatenate([[0.0], grp["time"].to_numpy(float)])
        s = np.concatenate([[1.0], grp["survival"].to_numpy(float)])
        ax.step(t, s, where="post", label=str(g), color=(colours or {}).get(str(g)))
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("Days since enrolment")
    ax.set_ylabel("Proportion still in the study")
    ax.set_title("Retention (Kaplan–Meier; withdrawal or loss to follow-up is the event)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=9)
    fig.tight_layout()
    return fig
