"""Peerlens analysis layer: a pure library over the tidy ``long`` export.

Cohort frame (:mod:`analysis.frame`), mixed-model trajectories and moderation
(:mod:`analysis.trajectories`), reliability, change and responders, retention and time to event,
attrition, power, plots and a one-call report (:func:`analysis.report.run_all`). It never touches
HTTP or a database.
"""

import lazy_loader

# Names and submodules are loaded on first use (PEP 562, through lazy_loader), so ``import
# analysis`` or one light module such as ``analysis.frame`` does not pull in the model stack
# (statsmodels, pingouin, lifelines, matplotlib): ``analysis.plots.plot_km`` imports matplotlib
# when it is first reached.
_SUBMODULES = (  # not ``reliability``: that name is the flat function
    "attrition",
    "change",
    "errors",
    "frame",
    "plots",
    "power",
    "report",
    "survival",
    "synthetic",
    "trajectories",
)
_NAMES = {  # submodule -> the names the package takes from it
    "attrition": ["completion", "dropout_by_baseline"],
    "errors": ["ESTIMATION_ERRORS"],
    "change": ["effect_sizes", "responders"],
    "frame": ["LONG_COLUMNS", "baseline", "cohort_frame", "load_long", "long_from_synthetic", "wide"],
    "power": ["n_slope_difference", "n_two_arm", "power_curve"],
    "reliability": ["cronbach_alpha", "item_total", "mcdonald_omega", "reliability"],
    "report": ["run_all"],
    "survival": ["cox_dropout", "dropout_frame", "fit_cox", "km_dropout", "km_table", "logrank", "time_to_threshold"],
    "synthetic": ["SimulationParams", "SyntheticCohort", "simulate_cohort"],
    "trajectories": ["ModerationModel", "TrajectoryModel", "compare_models", "fit_moderation", "fit_trajectory"],
}


# A function named like its module (``reliability``) keeps the package's name for it, even once the
# module is loaded; lazy_loader guards the name.
__getattr__, __dir__, _ = lazy_loader.attach(__name__, submodules=_SUBMODULES, submod_attrs=_NAMES)
# ``from analysis import *`` takes the functions, not the submodules.
__all__ = sorted(n for names in _NAMES.values() for n in names)
