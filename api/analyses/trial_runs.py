"""Runners of the trial analyses: primary ANCOVA + cLDA, GEE, and the missing-data sensitivity analysis.

Each takes the study's ``long`` frame, a checked request and the study design, and returns a
:class:`api.analyses.runners.Result`; failures of the library become a 422 naming the field.
Registered in :data:`api.analyses.kinds.KINDS` with the other kinds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import analysis
from api.analyses.checks import (
    Design,
    check_columns,
    check_reference,
    check_scale,
    check_wave,
    no_data,
    statistical,
)
from api.analyses.runners import Result
from api.analyses.schemas import GEERequest, MissingDataRequest, TrialRequest
from api.artifacts import safe_name
from api.errors import Unprocessable
from api.studies.models import Study

if TYPE_CHECKING:
    import pandas as pd
else:
    from api.lazyimport import pandas as pd


def _followup(design: Design, req, baseline: str | None = None) -> tuple[str, str]:
    follow = check_wave(design, req.followup, ["body", "followup"], req.outcome)
    base = (
        check_wave(design, baseline, ["body", "baseline"], req.outcome) if baseline else design.scales[req.outcome][0]
    )
    order = design.wave_codes
    if order.index(base) >= order.index(follow):
        raise Unprocessable(
            ["body", "followup"], f"the follow-up wave must come after the baseline wave ({base})", "wave_order"
        )
    return base, follow


def _cluster_column(frame: pd.DataFrame, name: str, loc: list) -> str | None:
    if name in ("none", "participant"):
        return None if name == "none" else "participant"
    if name not in frame.columns or frame[name].isna().all():
        raise Unprocessable(loc, f"the study's cohort frame has no {name} column to cluster on", "unknown_column")
    return name


def run_trial(frame: pd.DataFrame, req: TrialRequest, design: Design, study: Study) -> Result:
    """The primary analysis at a named follow-up: ANCOVA and cLDA (:mod:`analysis.trial`)."""
    no_data(frame, ["body", "outcome"])
    check_reference(design, req.reference)
    base, follow = _followup(design, req, req.baseline)
    covs = check_columns(frame, req.covariates, ["body", "covariates"])
    cluster = _cluster_column(frame, req.cluster, ["body", "cluster"])
    with statistical(["body", "followup"], f"the ANCOVA of {req.outcome} at {follow}"):
        anc = analysis.ancova(
            frame,
            req.outcome,
            follow,
            baseline_wave=base,
            covariates=covs,
            reference=req.reference,
            cluster=cluster,
            alpha=req.alpha,
        )
    waves = [w for w in design.scales[req.outcome] if design.wave_codes.index(w) >= design.wave_codes.index(base)]
    warnings: list[str] = []
    with statistical(["body", "outcome"], f"the cLDA of {req.outcome}"):
        cl = analysis.clda(
            frame,
            req.outcome,
            waves=[w for w in waves if w in set(frame["wave"])],
            reference=req.reference,
            alpha=req.alpha,
        )
    if len(cl) and not bool(cl["converged"].all()):
        warnings.append("The cLDA optimiser did not report convergence; read its estimates with caution.")
    fig = analysis.plots.plot_forest(
        anc.assign(label=anc["arm"]),
        estimate="estimate",
        label_cols=("arm",),
        title=f"{req.outcome} at {follow}: difference from {anc['reference'].iloc[0]} (ANCOVA)",
    )
    return Result(
        {"ancova": anc, "clda": cl},
        {
            "baseline_wave": base,
            "followup_wave": follow,
            "reference_arm": str(anc["reference"].iloc[0]),
            "n_excluded": int(anc["n_excluded"].iloc[0]),
        },
        warnings,
        {f"ancova_{safe_name(req.outcome)}_{safe_name(follow)}": fig},
    )


def run_gee(frame: pd.DataFrame, req: GEERequest, design: Design, study: Study) -> Result:
    """GEE with robust SEs for continuous, binary or count outcomes (:class:`analysis.GEEModel`)."""
    no_data(frame, ["body", "outcome"])
    check_reference(design, req.reference)
    covs = check_columns(frame, req.covariates, ["body", "covariates"])
    if req.family == "binomial" and req.threshold is None:
        raise Unprocessable(["body", "threshold"], "a binary outcome needs the threshold that defines it", "missing")
    cluster = _cluster_column(frame, req.cluster, ["body", "cluster"]) or "participant"
    with statistical(["body", "outcome"], f"the GEE of {req.outcome}"):
        g = analysis.GEEModel(
            req.outcome,
            family=req.family,
            corr=req.corr,
            time=req.time,
            threshold=req.threshold,
            direction=req.direction,
            covariates=covs,
            cluster=cluster,
            reference=req.reference,
            alpha=req.alpha,
        ).fit(frame)
        coefs, effects = g.summary, g.arm_effects
    fig = analysis.plots.plot_forest(
        effects.assign(label=effects["arm"] + " " + effects["wave"].astype(str)),
        estimate="estimate",
        label_cols=("arm", "wave"),
        title=f"{req.outcome}: arm effects (GEE, robust SE)",
    )
    wc = g.working_correlation_
    return Result(
        {"coefficients": coefs, "arm_effects": effects},
        {
            "family": req.family,
            "corr": req.corr,
            "n_clusters": g.n_clusters_,
            "reference_arm": g.reference_,
            "working_correlation": float(wc) if pd.api.types.is_number(wc) else None,
            "scale": {"binomial": "log odds (exp_*: odds ratios)", "poisson": "log rate (exp_*: rate ratios)"}.get(
                req.family, "outcome units"
            ),
        },
        [],
        {f"gee_{safe_name(req.outcome)}": fig},
    )


def run_missing_data(frame: pd.DataFrame, req: MissingDataRequest, design: Design, study: Study) -> Result:
    """Multiple imputation (Rubin's rules) and a delta-adjusted tipping point (:mod:`analysis.missing`)."""
    no_data(frame, ["body", "outcome"])
    check_reference(design, req.reference)
    if req.arm is not None:
        check_reference(design, req.arm)
    base, follow = _followup(design, req)
    for i, a in enumerate(req.auxiliary):
        check_scale(design, a, ["body", "auxiliary", i])
    with statistical(["body", "outcome"], f"the imputation of {req.outcome}"):
        imps = analysis.impute(frame, req.outcome, m=req.m, auxiliary=req.auxiliary, seed=req.seed)
        mi = analysis.multiple_imputation(
            frame, req.outcome, followup=follow, m=req.m, reference=req.reference, alpha=req.alpha, imputations=imps
        )
        tp = analysis.tipping_point(
            frame,
            req.outcome,
            follow,
            deltas=req.deltas,
            arm=req.arm,
            m=req.m,
            auxiliary=req.auxiliary,
            reference=req.reference,
            seed=req.seed,
            alpha=req.alpha,
        )
    fig = analysis.plots.plot_forest(
        tp.assign(label=tp["delta"].map(lambda d: f"delta {d:+g}")),
        estimate="estimate",
        label_cols=("label",),
        title=f"{req.outcome} at {follow}: tipping point",
    )
    tip = tp["tipping_point"].iloc[0]
    return Result(
        {"multiple_imputation": mi, "tipping_point": tp},
        {
            "followup_wave": follow,
            "m": req.m,
            "tipping_point": None if pd.isna(tip) else float(tip),
            "shifted_arm": str(tp["arm"].iloc[0]),
        },
        [],
        {f"tipping_point_{safe_name(req.outcome)}": fig},
    )
