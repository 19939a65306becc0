"""Peerlens analysis layer: a pure library over the tidy ``long`` export.

Cohort frame (:mod:`analysis.frame`), mixed-model trajectories (:mod:`analysis.trajectories`,
engine in :mod:`analysis.lmm`) and moderation (:mod:`analysis.moderation`), the trial's primary
analyses (:mod:`analysis.trial`), GEE (:mod:`analysis.gee`), missing data (:mod:`analysis.missing`),
multiplicity, agreement, reliability, change and responders, retention and time to event,
attrition, power, plots and a one-call report (:func:`analysis.report.run_all`). It never touches
HTTP or a database.
"""

from importlib import import_module

# Names are loaded from their module on first use (PEP 562), so importing one light module such
# as ``analysis.frame`` does not pull in the model stack (statsmodels, pingouin, lifelines,
# matplotlib).
_SOURCES = {
    "ancova": "trial",
    "clda": "trial",
    "reference_arm": "trial",
    "GEEModel": "gee",
    "fit_gee": "gee",
    "rubin": "missing",
    "impute": "missing",
    "multiple_imputation": "missing",
    "tipping_point": "missing",
    "adjust_pvalues": "multiplicity",
    "adjust_table": "multiplicity",
    "format_p": "multiplicity",
    "weighted_kappa": "agreement",
    "fleiss_kappa": "agreement",
    "icc": "agreement",
    "krippendorff_alpha": "agreement",
    "reliable_change": "change",
    "change_scores": "change",
    "completion": "attrition",
    "dropout_by_baseline": "attrition",
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
    "n_ancova": "power",
    "n_time_averaged": "power",
    "power_two_arm": "power",
    "power_slope_difference": "power",
    "design_effect": "power",
    "power_curve": "power",
    "cronbach_alpha": "reliability",
    "item_total": "reliability",
    "mcdonald_omega": "reliability",
    "reliability": "reliability",
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
    "ModerationModel": "moderation",
    "TrajectoryModel": "trajectories",
    "compare_models": "trajectories",
    "fit_moderation": "moderation",
    "fit_trajectory": "trajectories",
}


def __getattr__(name: str):
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCES))


__all__ = [
    "ancova",
    "clda",
    "reference_arm",
    "GEEModel",
    "fit_gee",
    "rubin",
    "impute",
    "multiple_imputation",
    "tipping_point",
    "adjust_pvalues",
    "adjust_table",
    "format_p",
    "weighted_kappa",
    "fleiss_kappa",
    "icc",
    "krippendorff_alpha",
    "reliable_change",
    "change_scores",
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
    "n_ancova",
    "power_two_arm",
    "n_slope_difference",
    "power_slope_difference",
    "n_time_averaged",
    "design_effect",
    "power_curve",
    "simulate_cohort",
    "SimulationParams",
    "SyntheticCohort",
]
