"""Peerlens analysis layer: a pure library over the tidy ``long`` export.

Cohort frame (:mod:`analysis.frame`), mixed-model trajectories and moderation
(:mod:`analysis.trajectories`), reliability, change and responders, retention and time to event,
attrition, power, plots and a one-call report (:func:`analysis.report.run_all`). It never touches
HTTP or a database.
"""
from .attrition import completion, dropout_by_baseline
from .change import effect_sizes, responders
from .frame import LONG_COLUMNS, baseline, cohort_frame, load_long, long_from_synthetic, wide
from .power import n_slope_difference, n_two_arm, power_curve
from .reliability import cronbach_alpha, item_total, mcdonald_omega, reliability
from .survival import cox_dropout, dropout_frame, fit_cox, km_dropout, km_table, logrank, time_to_threshold
from .synthetic import SimulationParams, SyntheticCohort, simulate_cohort
from .trajectories import ModerationModel, TrajectoryModel, compare_models, fit_moderation, fit_trajectory

__all__ = [
    "LONG_COLUMNS", "load_long", "cohort_frame", "baseline", "wide", "long_from_synthetic",
    "TrajectoryModel", "fit_trajectory", "compare_models", "ModerationModel", "fit_moderation",
    "cronbach_alpha", "mcdonald_omega", "item_total", "reliability", "effect_sizes", "responders",
    "dropout_frame", "km_table", "km_dropout", "logrank", "fit_cox", "cox_dropout", "time_to_threshold",
    "completion", "dropout_by_baseline", "n_two_arm", "n_slope_difference", "power_curve",
    "simulate_cohort", "SimulationParams", "SyntheticCohort",
]
