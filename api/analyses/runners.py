"""The analysis kinds: one function each, from the checked request and the data in scope to a
:class:`Result` (tidy tables, scalar values, warnings and figures).

Each runner takes ``(data, request, design, study)``: ``data`` is the cohort's ``long`` frame, the
scored ``items`` frame (reliability) or None (power), as :data:`api.analyses.kinds.KINDS` says.
Everything it names is checked first (:mod:`api.analyses.checks`); library failures become 422s
through :func:`~api.analyses.checks.statistical`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

import analysis
from api.analyses.checks import (
    Design,
    change_waves,
    check_columns,
    check_reference,
    check_scale,
    converged,
    listing,
    no_data,
    participant_columns,
    statistical,
)
from api.analyses.schemas import (
    TABLES,
    AttritionRequest,
    EffectSizesRequest,
    ModerationRequest,
    PowerRequest,
    ReliabilityRequest,
    RespondersRequest,
    RetentionRequest,
    TrajectoryRequest,
)
from api.artifacts import safe_name
from api.errors import Unprocessable
from api.studies.models import Study

if TYPE_CHECKING:
    import pandas as pd
else:
    from api.lazyimport import pandas as pd

YEAR = 365.25


@dataclass
class Result:
    """What a runner returns: tables by name, scalar values, warnings and figures by name."""

    tables: dict[str, pd.DataFrame]
    values: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)


def run_trajectory(frame: pd.DataFrame, req: TrajectoryRequest, design: Design, study: Study) -> Result:
    """Mixed model of an outcome over time by arm (:class:`analysis.TrajectoryModel`)."""
    no_data(frame, ["body", "outcome"])
    check_reference(design, req.reference)
    covs = check_columns(frame, req.covariates, ["body", "covariates"])
    if req.cluster in ("site", "variance"):
        n_sites = frame["site"].nunique()
        if n_sites < 5:
            raise Unprocessable(
                ["body", "cluster"],
                f"a site variance needs at least 5 sites; these data have {n_sites}: use cluster='fixed'",
                "too_few_sites",
            )
    if req.cluster == "group" and ("peer_group" not in frame.columns or frame["peer_group"].isna().all()):
        raise Unprocessable(
            ["body", "cluster"], "no participant in scope belongs to a peer group (peer_group column)", "no_groups"
        )
    with statistical(["body", "outcome"], f"the {req.outcome} trajectory model"):
        m = analysis.TrajectoryModel(
            req.outcome,
            time=req.time,
            random=req.random,
            cluster=None if req.cluster == "none" else req.cluster,
            covariates=covs,
            reference=req.reference,
            alpha=req.alpha,
        ).fit(frame)
    converged(m, ["body", "random"])
    with statistical(["body", "outcome"], f"the {req.outcome} trajectory model"):
        tables = {
            "fixed_effects": m.summary,
            "variance_components": m.variance_components,
            "fit_statistics": m.fit_statistics,
            "predicted_means": m.predicted_means,
            "observed_means": m.observed_means(),
        }
        if req.time == "days":
            tables["slopes"] = m.slopes()
        figures = {f"trajectory_{safe_name(req.outcome)}": analysis.plots.plot_trajectory(m)}
    return Result(
        tables,
        {
            "icc": m.icc,
            "random": m.random,
            "reference_arm": str(m.reference_),
            "n_participants_modelled": int(m.n_participants_),
            "optimizer": m.fit_report_.method,
            "df_method": m.df_method,
            "slope_unit": "per year" if req.time == "days" else None,
        },
        list(m.warnings),
        figures,
    )


def run_moderation(frame: pd.DataFrame, req: ModerationRequest, design: Design, study: Study) -> Result:
    """What works for whom: the outcome's trajectory with a moderator x arm x time interaction."""
    no_data(frame, ["body", "outcome"])
    if req.moderator not in participant_columns(frame):
        raise Unprocessable(
            ["body", "moderator"],
            "not a participant-level column of the study's cohort frame; "
            f"expected one of: {listing(participant_columns(frame))}",
            "unknown_column",
        )
    covs = check_columns(frame, req.covariates, ["body", "covariates"])
    loc = ["body", "moderator"]
    try:
        mm = analysis.ModerationModel(
            req.outcome,
            req.moderator,
            min_per_cell=req.min_per_cell,
            random=req.random,
            covariates=covs,
            alpha=req.alpha,
        )
        with statistical(loc, f"the moderation of {req.outcome} by {req.moderator}"):
            mm.fit(frame)
    except Unprocessable as exc:
        # "too few participants" is about the outcome, not the moderator
        if "too few participants" in exc.errors[0]["msg"]:
            exc.errors[0]["loc"] = ["body", "outcome"]
        raise
    converged(mm, ["body", "random"])
    with statistical(loc, f"the moderation of {req.outcome} by {req.moderator}"):
        effects = mm.subgroup_effects
        tables = {
            "subgroup_slopes": mm.subgroup_slopes,
            "subgroup_effects": effects,
            "interaction_test": mm.interaction_test,
            "fixed_effects": mm.summary,
        }
        figures = {f"forest_{safe_name(req.outcome)}_{safe_name(req.moderator)}": analysis.plots.plot_forest(effects)}
    levels = [str(x) for x in effects["level"].unique()] if len(effects) else []
    return Result(
        tables,
        {
            "moderator": req.moderator,
            "levels": levels,
            "continuous": bool(mm.continuous_),
            "reference_arm": str(mm.reference_),
        },
        list(mm.warnings),
        figures,
    )


def run_reliability(items: pd.DataFrame, req: ReliabilityRequest, design: Design, study: Study) -> Result:
    """Alpha (with CI) and omega per instrument and wave, and item-rest correlations."""
    if items.empty:
        raise Unprocessable(["body", "instruments"], "no scored item answers in scope", "no_data")
    with statistical(["body", "instruments"], "reliability"):
        rel = analysis.reliability(items, by=("instrument", "wave"), ci=1 - req.alpha)
        parts = []
        for (inst, wave), g in items.groupby(["instrument", "wave"], sort=True):
            w = g.pivot_table(index="participant", columns="item", values="value", aggfunc="first")
            if w.shape[1] < 2 or len(w.dropna()) < 3:
                continue
            t = analysis.item_total(w)
            t.insert(0, "wave", wave)
            t.insert(0, "instrument", inst)
            parts.append(t)
    total = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=TABLES["reliability"]["item_total"])
    warnings = [
        f"{r.instrument} at {r.wave}: too few complete answers for alpha (n={int(r.n)})"
        for r in rel.itertuples()
        if pd.isna(r.alpha)
    ]
    return Result({"reliability": rel, "item_total": total}, {"confidence": 1 - req.alpha}, warnings)


def run_effect_sizes(frame: pd.DataFrame, req: EffectSizesRequest, design: Design, study: Study) -> Result:
    """Within-arm Cohen's d_av and between-arm Hedges' g on change."""
    no_data(frame, ["body", "outcome"])
    pre, post = change_waves(design, req.outcome, req.pre, req.post)
    with statistical(["body", "post"], f"change in {req.outcome} from {pre} to {post}"):
        es = analysis.effect_sizes(frame, req.outcome, post=post, pre=pre, ci=1 - req.alpha)
    if es.empty:
        raise Unprocessable(
            ["body", "post"],
            f"too few participants have {req.outcome} at both {pre} and {post} (at least 3 per arm are needed)",
            "too_few_participants",
        )
    fig = analysis.plots.plot_forest(
        es,
        estimate="estimate",
        label_cols=("comparison", "arm"),
        title=f"{req.outcome}: effect sizes of change {pre} to {post}",
    )
    return Result(
        {"effect_sizes": es}, {"pre": pre, "post": post}, figures={f"effect_sizes_{safe_name(req.outcome)}": fig}
    )


def run_responders(frame: pd.DataFrame, req: RespondersRequest, design: Design, study: Study) -> Result:
    """Share improving by at least the MCID per arm, and the risk difference vs the control arm."""
    no_data(frame, ["body", "outcome"])
    pre, post = change_waves(design, req.outcome, req.pre, req.post)
    meta = analysis.change.scale_meta(req.outcome)
    if req.mcid is None and meta["mcid"] is None:
        raise Unprocessable(
            ["body", "mcid"],
            f"{req.outcome} has no published minimal clinically important difference; give mcid (a study setting)",
            "mcid_required",
        )
    with statistical(["body", "post"], f"responders on {req.outcome} from {pre} to {post}"):
        rp = analysis.responders(frame, req.outcome, post=post, pre=pre, mcid=req.mcid, ci=1 - req.alpha)
    if rp.empty:
        raise Unprocessable(
            ["body", "post"], f"no participant has {req.outcome} at both {pre} and {post}", "too_few_participants"
        )
    shown = rp.rename(columns={"improved_ci_lower": "ci_lower", "improved_ci_upper": "ci_upper"})
    fig = analysis.plots.plot_forest(
        shown,
        estimate="improved_prop",
        label_cols=("arm",),
        title=f"{req.outcome}: share improved by at least {float(rp['mcid'].iloc[0]):g}",
    )
    return Result(
        {"responders": rp},
        {"pre": pre, "post": post, "mcid": float(rp["mcid"].iloc[0]), "better": meta["better"]},
        figures={f"responders_{safe_name(req.outcome)}": fig},
    )


def run_retention(frame: pd.DataFrame, req: RetentionRequest, design: Design, study: Study) -> Result:
    """Time to dropout (Kaplan-Meier, log-rank, Cox), and optionally time to a threshold."""
    no_data(frame, ["body", "by"])
    covs = check_columns(frame, req.covariates, ["body", "covariates"], extra=("arm",))
    for i, s in enumerate(req.baseline_scales):
        check_scale(design, s, ["body", "baseline_scales", i])
    if req.threshold is not None:
        check_scale(design, req.threshold.scale, ["body", "threshold", "scale"])
    warnings: list[str] = []
    with statistical(["body", "by"], "retention"):
        d = analysis.dropout_frame(frame)
        km = analysis.km_table(d, by=req.by, ci=1 - req.alpha)
        events = int(d["event"].sum())
        if d[req.by].nunique() >= 2 and events > 0:
            lr = analysis.logrank(d, req.by)
        else:
            lr = pd.DataFrame(columns=TABLES["retention"]["logrank"])
            warnings.append(
                f"log-rank test not computed: {'no dropout recorded' if not events else 'one ' + req.by + ' only'}"
            )
    cox = pd.DataFrame(columns=TABLES["retention"]["cox"])
    if events == 0:
        warnings.append("Cox model not estimable: no dropout recorded")
    else:
        with statistical(["body", "covariates"], "the Cox model of dropout"):
            cox = analysis.cox_dropout(frame, covariates=covs, baseline_scales=list(req.baseline_scales))
    figures = {f"km_dropout_by_{req.by}": analysis.plots.plot_km(km, title=f"Retention by {req.by}")}
    tables = {"km": km, "logrank": lr, "cox": cox}
    values = {
        "participants": int(len(d)),
        "dropouts": events,
        "time_unit": "days since enrolment",
        "cox_confidence": 0.95,
    }
    if req.threshold is not None:
        t = req.threshold
        what = f"time to {t.scale} {t.direction} {t.value:g}"
        with statistical(["body", "threshold"], what):
            tt = analysis.time_to_threshold(frame, t.scale, t.value, t.direction, column=t.column)
        if tt.empty:
            raise Unprocessable(
                ["body", "threshold"],
                f"{what}: no participant is short of the threshold at their first observation",
                "too_few_participants",
            )
        with statistical(["body", "threshold"], what):
            tables["threshold_km"] = analysis.km_table(tt, by=req.by, ci=1 - req.alpha)
            reached = int(tt["event"].sum())
            tables["threshold_logrank"] = (
                analysis.logrank(tt, req.by)
                if tt[req.by].nunique() >= 2 and reached
                else pd.DataFrame(columns=TABLES["retention"]["threshold_logrank"])
            )
        values.update(threshold_participants=int(len(tt)), threshold_reached=reached)
        figures[f"km_{safe_name(t.scale)}_{t.direction}_by_{req.by}"] = analysis.plots.plot_km(
            tables["threshold_km"], title=f"Time to {t.scale} {'≥' if t.direction == 'above' else '<'} {t.value:g}"
        )
    return Result(tables, values, warnings, figures)


def run_attrition(frame: pd.DataFrame, req: AttritionRequest, design: Design, study: Study) -> Result:
    """Completion per wave and group, and baseline differences between dropouts and the retained."""
    no_data(frame, ["body", "by"])
    for i, s in enumerate(req.scales or []):
        check_scale(design, s, ["body", "scales", i])
    context = req.context or []
    for i, c in enumerate(context):
        if not c.startswith("context_") or c not in frame.columns:
            raise Unprocessable(
                ["body", "context", i],
                "not a context column of the study's cohort frame; expected "
                f"one of: {listing(c for c in frame.columns if c.startswith('context_'))}",
                "unknown_column",
            )
    by = list(dict.fromkeys(req.by))
    present = sorted(frame["scale"].unique())
    scales = [s for s in (req.scales or present) if s in present]
    with statistical(["body", "scales"], "attrition"):
        comp = analysis.completion(frame, by=by)
        dbb = analysis.dropout_by_baseline(frame, scales=scales, context=context or None)
    return Result(
        {"completion": comp, "dropout_by_baseline": dbb},
        {"by": by},
        figures={"completion_by_" + "_".join(by or ["all"]): analysis.plots.plot_completion(comp, by)},
    )


def run_power(frame: None, req: PowerRequest, design: Design, study: Study) -> Result:
    """Participants per arm and a power curve from the request's assumptions (no data are read)."""
    need = ("delta", "sd") if req.design == "two_arm" else ("slope_diff", "sigma2", "rho")
    for name in need:
        if getattr(req, name) is None:
            raise Unprocessable(["body", name], f"{name} is required for design={req.design}", "missing")
    if req.design == "two_arm" and req.delta == 0:
        raise Unprocessable(["body", "delta"], "the difference to detect must not be 0", "value_error")
    if req.design == "slope" and req.slope_diff == 0:
        raise Unprocessable(["body", "slope_diff"], "the slope difference to detect must not be 0", "value_error")
    if req.baseline_correlation is not None and req.design != "two_arm":
        raise Unprocessable(["body", "baseline_correlation"], "applies to design=two_arm (ANCOVA)", "value_error")
    deff = analysis.power.design_effect(req.cluster_size, req.icc)
    # Effective sample size per arm: ANCOVA's variance factor and the design effect (conservatively
    # applied to every arm in the power curve, also when only the intervention arms meet in groups).
    factor = (1 - req.baseline_correlation**2 if req.baseline_correlation is not None else 1.0) * deff
    if req.design == "two_arm":
        kw: dict[str, Any] = {"delta": req.delta, "sd": req.sd, "alpha": req.alpha, "alternative": req.alternative}
        with statistical(["body", "delta"], "the sample size"):
            if req.baseline_correlation is not None:
                table = analysis.power.n_ancova(
                    req.delta,
                    req.sd,
                    req.baseline_correlation,
                    alpha=req.alpha,
                    power=req.power,
                    alternative=req.alternative,
                )
            else:
                table = analysis.power.n_two_arm(
                    req.delta, req.sd, alpha=req.alpha, power=req.power, alternative=req.alternative
                )
            table = table.drop(columns=[c for c in ("design_effect", "n_intervention") if c in table.columns])

        def power_at(n: float) -> float:
            return analysis.power.power_two_arm(n / factor, **kw)
    else:
        times = req.times
        if times is None:
            times = [w.offset_days / YEAR for w in design.waves]
            if len(times) < 2:
                raise Unprocessable(
                    ["body", "times"], "the study has fewer than two waves; give times (years)", "missing"
                )
        if len(set(times)) < 2:
            raise Unprocessable(["body", "times"], "measurement times must differ", "value_error")
        kw = {
            "slope_diff": req.slope_diff,
            "sigma2": req.sigma2,
            "rho": req.rho,
            "times": list(times),
            "alpha": req.alpha,
            "alternative": req.alternative,
        }
        with statistical(["body", "slope_diff"], "the sample size"):
            table = analysis.power.n_slope_difference(
                req.slope_diff,
                req.sigma2,
                req.rho,
                list(times),
                alpha=req.alpha,
                power=req.power,
                alternative=req.alternative,
            )

        def power_at(n: float) -> float:
            return analysis.power.power_slope_difference(n / factor, **kw)

    arms = max(len(design.arms), 2)
    raw_n = float(table["n_per_arm"].iloc[0])
    if not math.isfinite(raw_n) or raw_n > 10**7:
        field_ = "delta" if req.design == "two_arm" else "slope_diff"
        raise Unprocessable(
            ["body", field_],
            "the effect to detect is too small for any feasible sample size (more than 10 million per arm)",
            "not_estimable",
        )
    # The library's n is before the design effect; groups inflate every arm, or only the intervention
    # arms in a partially nested trial (controls keep the unadjusted n).
    n_plain = int(raw_n)
    n = int(math.ceil(n_plain * deff - 1e-9))
    n_control = n_plain if req.partially_nested else n
    n_att = int(math.ceil(n / (1 - req.attrition) - 1e-9))
    n_att_control = int(math.ceil(n_control / (1 - req.attrition) - 1e-9))
    controls = sum(1 for a in design.arms if getattr(a, "kind", None) == "control") or 1
    n_total = n_att_control * controls + n_att * (arms - controls) if req.partially_nested else n_att * arms
    sample = table.assign(
        design=req.design,
        alpha=req.alpha,
        power=req.power,
        alternative=req.alternative,
        design_effect=deff,
        n_per_arm=n,
        n_control_per_arm=n_control,
        n_per_arm_with_attrition=n_att,
        arms=arms,
        n_total=n_total,
        attrition=req.attrition,
    )
    planned = study.planned_sample_size
    values: dict[str, Any] = {
        "n_per_arm": n,
        "n_control_per_arm": n_control,
        "design_effect": deff,
        "n_per_arm_with_attrition": n_att,
        "n_total": n_total,
        "arms": arms,
        "planned_sample_size": planned,
        "planned_per_arm": None,
        "power_at_planned": None,
        "adequately_powered": None,
    }
    if planned:
        per_arm = planned / arms
        effective = per_arm * (1 - req.attrition)
        with statistical(["body", "attrition"], "the power at the planned sample size"):
            achieved = power_at(effective) if effective >= 2 else 0.0
        values.update(planned_per_arm=per_arm, power_at_planned=achieved, adequately_powered=bool(planned >= n_total))
        verdict = "adequately powered" if values["adequately_powered"] else "under-powered"
        values["summary"] = (
            f"The planned {planned} participants ({per_arm:g} per arm"
            + (f", {effective:.0f} after {req.attrition:.0%} attrition" if req.attrition else "")
            + f") give {achieved:.0%} power; {n} per arm are needed"
            + (f" ({n_att} allowing for attrition)" if req.attrition else "")
            + f", {n_total} in total: the study is {verdict}."
        )
    else:
        values["summary"] = (
            f"{n} participants per arm are needed ({n_att} allowing for attrition), "
            f"{n_total} in total; the study has no planned sample size to compare."
        )
    grid = req.n_per_arm or sorted({max(2, int(round(x))) for x in np.linspace(max(2, n / 4), max(n * 2, 4), 20)})
    with statistical(["body", "n_per_arm"], "the power curve"):
        curve = pd.DataFrame({"n_per_arm": grid, "power": [power_at(g) for g in grid]})
    planned_analysed = values["planned_per_arm"] * (1 - req.attrition) if values["planned_per_arm"] else None
    fig = analysis.plots.plot_power_curve(curve, req.power, n, planned_analysed)
    return Result({"sample_size": sample, "power_curve": curve}, values, figures={f"power_{req.design}": fig})
