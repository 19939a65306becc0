"""The registry of analysis kinds: what each one reads, how its request is checked, which runner
answers it. The routes ``POST /studies/{id}/analyses/{kind}`` are generated from it
(:mod:`api.analyses.router`), so a new kind is a request schema, a runner and one entry here.

Examples
--------
>>> KINDS["effect-sizes"].request.__name__, KINDS["effect-sizes"].reads
('EffectSizesRequest', 'frame')
>>> [k for k, kind in KINDS.items() if kind.reads == "nothing"]
['power']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from api.analyses import runners, trial_runs
from api.analyses.checks import Design, check_instruments, check_scale, check_wave
from api.analyses.schemas import (
    AttritionRequest,
    EffectSizesRequest,
    GEERequest,
    MissingDataRequest,
    ModerationRequest,
    PowerRequest,
    ReliabilityRequest,
    RespondersRequest,
    RetentionRequest,
    TrajectoryRequest,
    TrialRequest,
    _Request,
)
from api.context import runners as realist_runs


def _outcome(design: Design, req: Any) -> None:
    check_scale(design, req.outcome, ["body", "outcome"])


def _instruments_and_waves(design: Design, req: Any) -> None:
    check_instruments(design, req.instruments)
    for i, code in enumerate(req.waves or []):
        check_wave(design, code, ["body", "waves", i])


@dataclass(frozen=True)
class Kind:
    """One analysis kind."""

    name: str  # the last segment of its route
    request: type[_Request]
    run: Callable[..., runners.Result]  # (data, request, design, study) -> Result
    description: str  # the route's documentation
    # the long frame, the scored items, no data, or the frame with context, goals, CMOs and adherence
    reads: Literal["frame", "items", "nothing", "realist"] = "frame"
    check: Callable[[Design, Any], None] | None = None  # checks against the study before any data is read
    data_field: list[str] = field(default_factory=lambda: ["body", "outcome"])  # named when there is no data


_KINDS = (
    Kind(
        "trajectory",
        TrajectoryRequest,
        runners.run_trajectory,
        "Mixed model of an outcome over time by arm: fixed effects, variance components, predicted "
        "means, yearly slopes and their difference from the control arm, with a trajectory plot.",
        check=_outcome,
    ),
    Kind(
        "moderation",
        ModerationRequest,
        runners.run_moderation,
        "What works for whom: subgroup slopes and effects by a context answer or a qualitative code.",
        check=_outcome,
    ),
    Kind(
        "reliability",
        ReliabilityRequest,
        runners.run_reliability,
        "Cronbach's alpha (CI) and McDonald's omega per instrument and wave, and item–rest correlations.",
        reads="items",
        check=_instruments_and_waves,
        data_field=["body", "instruments"],
    ),
    Kind(
        "effect-sizes",
        EffectSizesRequest,
        runners.run_effect_sizes,
        "Pre–post effect sizes within arms (Cohen's d_av) and between arms (Hedges' g on change).",
        check=_outcome,
    ),
    Kind(
        "responders",
        RespondersRequest,
        runners.run_responders,
        "Share improving by at least the MCID per arm, with the risk difference vs the control arm.",
        check=_outcome,
    ),
    Kind(
        "retention",
        RetentionRequest,
        runners.run_retention,
        "Time to dropout: Kaplan–Meier table and plot, log-rank test and a Cox model; optionally the "
        "time to first reaching a threshold (PHQ-9 < 10, PAM level 3+).",
        data_field=["body", "by"],
    ),
    Kind(
        "attrition",
        AttritionRequest,
        runners.run_attrition,
        "Completion per wave and group, and baseline differences between dropouts and the retained.",
        data_field=["body", "by"],
    ),
    Kind(
        "trial",
        TrialRequest,
        trial_runs.run_trial,
        "The primary analysis at a named follow-up wave: baseline-adjusted ANCOVA (optionally with "
        "cluster-robust SEs) and cLDA over all waves (common baseline, unstructured covariance, "
        "Satterthwaite df).",
        check=_outcome,
    ),
    Kind(
        "gee",
        GEERequest,
        trial_runs.run_gee,
        "GEE with robust SEs: continuous outcomes (sensitivity to the mixed model), binary (a threshold "
        "on the score, odds ratios) and counts (rate ratios) over waves by arm.",
        check=_outcome,
    ),
    Kind(
        "missing-data",
        MissingDataRequest,
        trial_runs.run_missing_data,
        "Multiple imputation by chained equations of the missing follow-up (Rubin's rules) and a "
        "delta-adjusted tipping-point analysis for missing-not-at-random dropout.",
        check=_outcome,
    ),
    Kind(
        "power",
        PowerRequest,
        runners.run_power,
        "Participants per arm and a power curve from the request's assumptions, compared with the "
        "study's planned sample size (no study data are read).",
        reads="nothing",
    ),
    Kind(
        "what-works-for-whom",
        realist_runs.WhatWorksRequest,
        realist_runs.run_what_works,
        "Every CMO configuration: the arm effect in and out of its context at the outcome's wave "
        "(baseline-adjusted, t intervals), their difference, shrunken subgroup effects, Benjamini–"
        "Hochberg across the table, pre-specified or exploratory, and the qualitative evidence.",
        reads="realist",
        data_field=["body", "cmos"],
    ),
    Kind(
        "site-heterogeneity",
        realist_runs.SiteHeterogeneityRequest,
        realist_runs.run_site_heterogeneity,
        "Arm effect by site at a wave with random-effects pooling (tau², I², Q), empirical-Bayes "
        "shrinkage of each site's effect and a forest plot.",
        reads="realist",
        check=realist_runs.check_followup,
    ),
    Kind(
        "mediation",
        realist_runs.MediationRequest,
        realist_runs.run_mediation,
        "Natural indirect and direct effects of the arm through a mechanism measured earlier, with "
        "bootstrap intervals and the sequential-ignorability assumption stated.",
        reads="realist",
        check=realist_runs.check_followup,
    ),
    Kind(
        "cace",
        realist_runs.CaceRequest,
        realist_runs.run_cace,
        "Complier average causal effect by two-stage least squares (randomisation as the instrument, "
        "HC1 robust SEs) with the Wald estimator as a check; adherence from delivery records, the "
        "request or a column.",
        reads="realist",
        check=realist_runs.check_followup,
    ),
    Kind(
        "dose-response",
        realist_runs.DoseResponseRequest,
        realist_runs.run_dose_response,
        "Outcome on dose within the intervention arm, with the confounding caveat.",
        reads="realist",
        check=realist_runs.check_followup,
    ),
    Kind(
        "gas",
        realist_runs.GasRequest,
        realist_runs.run_gas,
        "Goal Attainment Scaling: Kiresuk–Sherman T-scores by arm at baseline and follow-up, and "
        "the difference in change.",
        reads="realist",
        check=realist_runs.check_gas,
        data_field=["body", "wave"],
    ),
)

#: Every kind by name, in the order of the routes.
KINDS: dict[str, Kind] = {k.name: k for k in _KINDS}
