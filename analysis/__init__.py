"""Peerlens analysis layer: a pure library over the tidy ``long`` export.

Cohort frame (:mod:`analysis.frame`), mixed-model trajectories and moderation
(:mod:`analysis.trajectories`), reliability, change and responders, retention and time to event,
attrition, power, plots and a one-call report (:func:`analysis.report.run_all`). It never touches
HTTP or a database.
"""

import sys
from importlib import import_module
from types import ModuleType

# Names and submodules are loaded on first use (PEP 562), so ``import analysis`` or one light
# module such as ``analysis.frame`` does not pull in the model stack (statsmodels, pingouin,
# lifelines, matplotlib): ``analysis.plots.plot_km`` imports matplotlib when it is first reached.
_SUBMODULES = (  # not ``reliability``: that name is the flat function (see _Package)
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
_SOURCES = {
    "completion": "attrition",
    "dropout_by_baseline": "attrition",
    "ESTIMATION_ERRORS": "errors",
    "effect_sizes": "change",
    "responders": "change",
    "LONG_COLUMNS": "frame",
    "baseline": "frame",
    "cohort_frame": "frame",
    "load_long": "frame",
    "long_from_synthetic": "frame",
    "wide": "frame",
    "n_slope_difference": "power",
    "n_two_arm": "power",
    "power_curve": "power",
    "cronbach_alpha": "reliability",
    "item_total": "reliability",
    "mcdonald_omega": "reliability",
    "reliability": "reliability",
    "run_all": "report",
    "cox_dropout": "survival",
    "dropout_frame": "survival",
    "fit_cox": "survival",
    "km_dropout": "survival",
    "km_table": "survival",
    "logrank": "survival",
    "time_to_threshold": "survival",
    "SimulationParams": "synthetic",
    "SyntheticCohort": "synthetic",
    "simulate_cohort": "synthetic",
    "ModerationModel": "trajectories",
    "TrajectoryModel": "trajectories",
    "compare_models": "trajectories",
    "fit_moderation": "trajectories",
    "fit_trajectory": "trajectories",
}


def __getattr__(name: str):
    if name in _SUBMODULES:
        return import_module(f".{name}", __name__)
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


class _Package(ModuleType):
    """Loading a submodule binds it to the package's name for it; a public function named like its
    module (``reliability``) keeps that name instead, as an eager ``from .x import x`` would."""

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, ModuleType) and _SOURCES.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCES) | set(_SUBMODULES))


__all__ = [
    "LONG_COLUMNS",
    "load_long",
    "cohort_frame",
    "baseline",
    "wide",
    "long_from_synthetic",
    "TrajectoryModel",
    "fit_trajectory",
    "compare_models",
    "ModerationModel",
    "fit_moderation",
    "cronbach_alpha",
    "mcdonald_omega",
    "item_total",
    "reliability",
    "effect_sizes",
    "responders",
    "dropout_frame",
    "km_table",
    "km_dropout",
    "logrank",
    "fit_cox",
    "cox_dropout",
    "time_to_threshold",
    "completion",
    "dropout_by_baseline",
    "n_two_arm",
    "n_slope_difference",
    "power_curve",
    "simulate_cohort",
    "SimulationParams",
    "SyntheticCohort",
    "ESTIMATION_ERRORS",
    "run_all",
]
