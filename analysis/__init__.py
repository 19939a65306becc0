"""Peerlens analysis layer: a pure library over the tidy ``long`` export.

Cohort frame (:mod:`analysis.frame`), mixed-model trajectories (:mod:`analysis.trajectories`,
engine in :mod:`analysis.lmm`) and moderation (:mod:`analysis.moderation`), the trial's primary
analyses (:mod:`analysis.trial`), GEE (:mod:`analysis.gee`), missing data (:mod:`analysis.missing`),
multiplicity, agreement, reliability, change and responders, retention and time to event,
attrition, power, harms by arm (:mod:`analysis.safety`), participant flow (:mod:`analysis.flow`), process
evaluation (:mod:`analysis.process`), fidelity (:mod:`analysis.fidelity`), what works for whom
(:mod:`analysis.realist`, :mod:`analysis.mediation`, :mod:`analysis.compliance`, :mod:`analysis.gas`), plots and a
one-call report (:func:`analysis.report.run_all`). It never touches HTTP or a database.
"""

import lazy_loader

# Names and submodules are loaded on first use (PEP 562, through lazy_loader), so ``import
# analysis`` or one light module such as ``analysis.frame`` does not pull in the model stack
# (statsmodels, pingouin, lifelines, matplotlib): ``analysis.plots.plot_km`` imports matplotlib
# when it is first reached.
_SUBMODULES = (  # not ``reliability`` nor ``mediation``: those names are the flat functions
    "attrition",
    "change",
    "compliance",
    "errors",
    "fidelity",
    "flow",
    "frame",
    "gas",
    "gee",
    "missing",
    "moderation",
    "multiplicity",
    "plots",
    "power",
    "process",
    "realist",
    "realist_sim",
    "report",
    "safety",
    "survival",
    "synthetic",
    "trajectories",
    "trial",
    "trialreport",
)
_NAMES = {  # submodule -> the names the package takes from it
    "trial": ["ancova", "clda", "reference_arm"],
    "flow": ["participant_flow"],
    "gee": ["GEEModel", "fit_gee"],
    "missing": ["rubin", "impute", "multiple_imputation", "tipping_point"],
    "multiplicity": ["adjust_pvalues", "adjust_table", "format_p"],
    "agreement": ["weighted_kappa", "fleiss_kappa", "icc", "krippendorff_alpha"],
    "fidelity": ["fidelity_over_time", "item_agreement", "score_agreement", "plot_fidelity"],
    "change": ["reliable_change", "change_scores", "effect_sizes", "responders"],
    "attrition": ["completion", "dropout_by_baseline"],
    "frame": ["LONG_COLUMNS", "baseline", "cohort_frame", "load_long", "long_from_synthetic", "wide"],
    "power": [
        "n_slope_difference",
        "n_two_arm",
        "n_ancova",
        "n_time_averaged",
        "power_two_arm",
        "power_slope_difference",
        "design_effect",
        "power_curve",
    ],
    "reliability": ["cronbach_alpha", "item_total", "mcdonald_omega", "reliability"],
    "survival": ["cox_dropout", "dropout_frame", "fit_cox", "km_dropout", "km_table", "logrank", "time_to_threshold"],
    "synthetic": ["SimulationParams", "SyntheticCohort", "simulate_cohort"],
    "moderation": ["ModerationModel", "fit_moderation"],
    "trajectories": ["TrajectoryModel", "compare_models", "fit_trajectory"],
    "errors": ["ESTIMATION_ERRORS"],
    "report": ["run_all"],
    "safety": ["clopper_pearson", "harms_table"],
    "realist": ["context_mask", "partial_pool", "what_works_for_whom", "site_heterogeneity", "plot_site_forest"],
    "mediation": ["mediation"],
    "compliance": ["cace", "wald_cace", "dose_response"],
    "gas": ["gas_tscore", "gas_scores", "gas_by_arm"],
    "realist_sim": ["simulate_realist"],
    "process": ["dose_summary", "training_hours", "reach", "dose_by_tertile", "plot_dose"],
}

# A function named like its module (``reliability``) keeps the package's name for it, even once the
# module is loaded; lazy_loader guards the name.
__getattr__, __dir__, _ = lazy_loader.attach(__name__, submodules=_SUBMODULES, submod_attrs=_NAMES)
# ``from analysis import *`` takes the functions, not the submodules.
__all__ = sorted(n for names in _NAMES.values() for n in names)
