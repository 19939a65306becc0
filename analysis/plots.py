"""Plots: trajectories, Kaplan–Meier curves, forest plots of subgroup effects, completion by wave
and power curves.

Figures are built with matplotlib's object API on the Agg canvas, so nothing depends on (or
changes) the global pyplot backend; pass ``path`` ending in ``.png`` or ``.svg`` to save.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_trajectory", "plot_km", "plot_forest", "plot_completion", "plot_power_curve", "save"]


def _axes(ax, size=(6.4, 4.2)):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def save(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Save a figure as PNG or SVG (by extension).

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> fig = plot_km(pd.DataFrame({"group": "all", "time": [0, 5], "survival": [1, 0.8], "ci_lower": [1, 0.6],
    ...                             "ci_upper": [1, 0.9]}))
    >>> save(fig, tempfile.mkdtemp() + "/km.svg").suffix
    '.svg'
    """
    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg"):
        raise ValueError("save as .png or .svg")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def plot_trajectory(model, ax=None, path: str | Path | None = None, title: str | None = None) -> Figure:
    """Observed means ± 95% CI per arm and wave (markers) with model-predicted means (lines).

    Parameters
    ----------
    model : TrajectoryModel
        A fitted model.

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> from analysis.trajectories import TrajectoryModel
    >>> m = TrajectoryModel("phq9").fit(long_from_synthetic(simulate_cohort(60, seed=2)))
    >>> plot_trajectory(m).axes[0].get_ylabel()
    'phq9'
    """
    fig, ax = _axes(ax)
    obs = model.observed_means()
    pred = model.predicted_means
    by = model.by
    for i, lvl in enumerate(model.levels_):
        color = f"C{i}"
        o = obs[obs[by] == str(lvl)]
        x_shift = (i - (len(model.levels_) - 1) / 2) * 0.006  # keep error bars of arms apart
        ax.errorbar(
            o["time"] + x_shift,
            o["mean"],
            yerr=[o["mean"] - o["ci_lower"], o["ci_upper"] - o["mean"]],
            fmt="o",
            color=color,
            capsize=3,
            ms=4,
            label=f"{lvl} (observed)",
        )
        p = pred[pred[by] == lvl]
        ax.plot(p["time"], p["mean"], "-", color=color, lw=1.5, label=f"{lvl} (model)")
    ax.set_xlabel("years since enrolment" if model.time_scale == 365.25 else "time")
    ax.set_ylabel(model.outcome)
    ax.set_title(title or f"{model.outcome}: observed means (95% CI) and model predictions")
    ax.legend(fontsize=7, ncol=2)
    if path:
        save(fig, path)
    return fig


def plot_km(
    km: pd.DataFrame,
    ax=None,
    path: str | Path | None = None,
    title: str = "Retention",
    ylabel: str = "still in follow-up",
) -> Figure:
    """Kaplan–Meier step curves with CI bands from :func:`analysis.survival.km_table`.

    Examples
    --------
    >>> import pandas as pd
    >>> from analysis.survival import km_table
    >>> km = km_table(pd.DataFrame({"duration": [5, 8, 9, 12], "event": [1, 1, 0, 1], "arm": list("aabb")}), by="arm")
    >>> len(plot_km(km).axes[0].get_legend_handles_labels()[1])
    2
    """
    fig, ax = _axes(ax)
    for i, (g, d) in enumerate(km.groupby("group", sort=True)):
        ax.step(d["time"], d["survival"], where="post", color=f"C{i}", label=str(g))
        ax.fill_between(d["time"], d["ci_lower"], d["ci_upper"], step="post", color=f"C{i}", alpha=0.15)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("days since enrolment")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    if path:
        save(fig, path)
    return fig


def plot_forest(
    effects: pd.DataFrame,
    ax=None,
    path: str | Path | None = None,
    estimate: str = "effect",
    label_cols: tuple[str, ...] = ("level", "arm"),
    title: str | None = None,
) -> Figure:
    """Forest plot of subgroup effects (estimate with CI), e.g. ``ModerationModel.subgroup_effects``.

    Examples
    --------
    >>> import pandas as pd
    >>> eff = pd.DataFrame({"level": ["alone", "with others"], "arm": "group", "effect": [2.0, 0.5],
    ...                     "ci_lower": [0.1, -1.0], "ci_upper": [3.9, 2.0]})
    >>> plot_forest(eff).axes[0].get_xlabel()
    'difference in slope vs reference arm (per year)'
    """
    n = len(effects)
    fig, ax = _axes(ax, size=(6.4, max(2.0, 0.35 * n + 1.2)))
    y = np.arange(n)[::-1]
    labels = [" · ".join(str(r[c]) for c in label_cols if c in effects.columns) for _, r in effects.iterrows()]
    ax.errorbar(
        effects[estimate],
        y,
        xerr=[effects[estimate] - effects["ci_lower"], effects["ci_upper"] - effects[estimate]],
        fmt="s",
        color="C0",
        capsize=3,
        ms=5,
    )
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("difference in slope vs reference arm (per year)" if estimate == "effect" else estimate)
    mod = effects["moderator"].iloc[0] if "moderator" in effects.columns and n else ""
    ax.set_title(title or f"Subgroup effects by {mod}")
    if path:
        save(fig, path)
    return fig


def plot_completion(
    completion: pd.DataFrame, by: list[str] | tuple[str, ...] = (), ax=None, path: str | Path | None = None
) -> Figure:
    """Questionnaire completion (% of enrolled) by wave, one line per group of ``by``.

    Parameters
    ----------
    completion : DataFrame
        :func:`analysis.completion` output: ``wave, completed_pct`` and the ``by`` columns.

    Examples
    --------
    >>> import pandas as pd
    >>> comp = pd.DataFrame({"arm": ["a", "a", "b", "b"], "wave": ["m0", "m3"] * 2,
    ...                      "completed_pct": [100.0, 80.0, 100.0, 60.0]})
    >>> [line.get_label() for line in plot_completion(comp, ["arm"]).axes[0].get_lines()]
    ['a', 'b']
    """
    fig, ax = _axes(ax)
    waves = list(dict.fromkeys(completion["wave"]))
    groups = completion.groupby(list(by), sort=True) if by else [("all", completion)]
    for i, (g, d) in enumerate(groups):
        label = " · ".join(map(str, g)) if isinstance(g, tuple) else str(g)
        d = d.set_index("wave").reindex(waves)
        ax.plot(range(len(waves)), d["completed_pct"], "o-", color=f"C{i % 10}", label=label)
    ax.set_xticks(range(len(waves)), waves)
    ax.set_ylim(0, 102)
    ax.set_ylabel("completed (% of enrolled)")
    ax.set_title("Questionnaire completion by wave")
    ax.legend(fontsize=8)
    if path:
        save(fig, path)
    return fig


def plot_power_curve(
    curve: pd.DataFrame,
    target: float,
    n_needed: int,
    planned_analysed: float | None = None,
    ax=None,
    path: str | Path | None = None,
) -> Figure:
    """Power against participants per arm, with the target power, the size needed and the planned
    size still analysed after attrition (when there is one).

    Parameters
    ----------
    curve : DataFrame
        :func:`analysis.power_curve` output: ``n_per_arm, power``.

    Examples
    --------
    >>> import pandas as pd
    >>> curve = pd.DataFrame({"n_per_arm": [20, 40, 60], "power": [0.4, 0.7, 0.86]})
    >>> plot_power_curve(curve, 0.8, 52, planned_analysed=45).axes[0].get_legend_handles_labels()[1]
    ['power', 'target 80%', 'needed: 52 per arm', 'planned (after attrition)']
    """
    fig, ax = _axes(ax)
    ax.plot(curve["n_per_arm"], curve["power"], "-", color="C0", label="power")
    ax.axhline(target, color="grey", lw=0.8, ls="--", label=f"target {target:.0%}")
    ax.axvline(n_needed, color="C1", lw=1, label=f"needed: {n_needed} per arm")
    if planned_analysed:
        ax.axvline(planned_analysed, color="C2", lw=1, ls=":", label="planned (after attrition)")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("participants per arm (analysed)")
    ax.set_ylabel("power")
    ax.set_title("Power curve")
    ax.legend(fontsize=8)
    if path:
        save(fig, path)
    return fig
