"""Request and response bodies of ``/studies/{id}/analyses/{kind}``.

Requests hold what the analysis library needs; everything that can be checked without the study
is checked here (ranges, choices, the fields a design requires). Checks against the study (its
scales, waves, sites) and against the cohort frame (covariate and moderator columns) are done by
:mod:`api.analyses.checks`, with the same error shape.

Examples
--------
>>> TrajectoryRequest(outcome="phq9").random
'slope'
>>> PowerRequest(design="two_arm", delta=5, sd=12).alpha
0.05
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

PlotFormat = Literal["png", "svg"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sites: list[str] | None = Field(
        None, max_length=200, description="site codes to analyse (default: every site you may see)"
    )
    formats: list[PlotFormat] = Field(["png", "svg"], min_length=0, max_length=2, description="plot files to render")

    @field_validator("sites")
    @classmethod
    def _codes(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and any(not s or len(s) > 40 for s in v):
            raise PydanticCustomError("site_code", "site codes are 1-40 characters")
        return v


class _Outcome(_Request):
    outcome: str = Field(
        description="scale code collected by the study (phq9, pam13_activation, ...)", min_length=1, max_length=80
    )
    alpha: float = Field(0.05, gt=0, lt=0.5, description="1 - confidence level of the intervals")


class TrajectoryRequest(_Outcome):
    """Linear mixed model of ``outcome`` over time by arm (:class:`analysis.TrajectoryModel`)."""

    time: Literal["days", "wave"] = "days"
    random: Literal["intercept", "slope"] = "slope"
    cluster: Literal["fixed", "group", "site", "variance", "none"] = Field(
        "fixed",
        description="site as a fixed effect; 'group': participants in peer groups (peer_group column; "
        "partially nested when only one arm has groups); 'site': a random site level (needs 5+ sites; "
        "'variance' is the old name); 'none'",
    )
    covariates: list[str] = Field(
        [], max_length=20, description="participant-level columns: context_* answers or code:* codes"
    )
    reference: str | None = Field(None, max_length=40, description="reference arm (default: the control arm)")


class ModerationRequest(_Outcome):
    """What works for whom: ``outcome`` trajectory with a moderator × arm × time interaction."""

    moderator: str = Field(
        min_length=1, max_length=120, description="a context_* answer or a code:* column of the long frame"
    )
    random: Literal["intercept", "slope"] = "intercept"
    covariates: list[str] = Field([], max_length=20)
    min_per_cell: int = Field(5, ge=1, le=1000, description="levels with fewer participants in some arm are left out")


class ReliabilityRequest(_Request):
    """Cronbach's alpha (with CI) and McDonald's omega per instrument and wave, from the items export."""

    instruments: list[str] | None = Field(None, max_length=50, description="instrument codes (default: all)")
    waves: list[str] | None = Field(None, max_length=50, description="wave codes (default: all)")
    alpha: float = Field(0.05, gt=0, lt=0.5)


class _Change(_Outcome):
    post: str | None = Field(None, max_length=40, description="follow-up wave (default: the last wave)")
    pre: str | None = Field(None, max_length=40, description="baseline wave (default: the first wave)")


class EffectSizesRequest(_Change):
    """Within-arm Cohen's d_av and between-arm Hedges' g on change scores."""


class RespondersRequest(_Change):
    """Share improving by at least the MCID, per arm, with the risk difference vs the control arm."""

    mcid: float | None = Field(None, gt=0, description="overrides the instrument's MCID; required when it has none")


class Threshold(BaseModel):
    """A clinical threshold whose first crossing is the event, e.g. PAM level 3+ or PHQ-9 < 10."""

    model_config = ConfigDict(extra="forbid")

    scale: str = Field(..., min_length=1, max_length=80, examples=["pam13_activation", "phq9"])
    value: float = Field(..., examples=[3, 10])
    direction: Literal["above", "below"] = Field(
        "above", description="above: reached when the score is >= value; below: when it is < value"
    )
    column: Literal["value", "level"] = Field("value", description="compare the score or its band level")


class RetentionRequest(_Request):
    """Time to dropout: Kaplan–Meier by ``by``, log-rank test and a Cox model; optionally the time
    to first reaching a threshold (participants already there at their first observation are left out)."""

    by: Literal["arm", "site"] = "arm"
    covariates: list[str] = Field(
        ["arm"], max_length=20, description="Cox covariates: arm, site, context_* or code:* columns"
    )
    baseline_scales: list[str] = Field(
        [], max_length=20, description="scales whose baseline value enters the Cox model"
    )
    threshold: Threshold | None = Field(None, description="also: time to first reaching this threshold")
    alpha: float = Field(0.05, gt=0, lt=0.5)


class AttritionRequest(_Request):
    """Completion per wave and group, and baseline differences between dropouts and retained."""

    by: list[Literal["arm", "site"]] = Field(["arm"], max_length=2)
    scales: list[str] | None = Field(None, max_length=50, description="baseline scales compared (default: all)")
    context: list[str] | None = Field(None, max_length=50, description="context_* columns compared (default: none)")


class TrialRequest(_Outcome):
    """The primary analysis at a named follow-up: baseline-adjusted ANCOVA, and cLDA over all waves."""

    followup: str = Field(min_length=1, max_length=40, description="the follow-up wave of the primary analysis")
    baseline: str | None = Field(None, max_length=40, description="baseline wave (default: the first wave)")
    covariates: list[str] = Field([], max_length=20, description="stratification factors: site, context_* columns")
    cluster: Literal["none", "site", "peer_group"] = Field(
        "none", description="cluster-robust SEs for the ANCOVA (t on clusters - 1 df)"
    )
    reference: str | None = Field(None, max_length=40, description="reference arm (default: the control arm)")


class GEERequest(_Outcome):
    """Population-averaged model (GEE, robust SEs) of a continuous, binary or count outcome over waves."""

    family: Literal["gaussian", "binomial", "poisson"] = "gaussian"
    corr: Literal["exchangeable", "independence", "ar1", "unstructured"] = "exchangeable"
    time: Literal["wave", "days"] = "wave"
    threshold: float | None = Field(None, description="dichotomise the score at this value (binary outcome)")
    direction: Literal["below", "above", "at_least"] = Field(
        "below", description="1 when the score is below / above / at least the threshold"
    )
    covariates: list[str] = Field([], max_length=20)
    cluster: Literal["participant", "site", "peer_group"] = "participant"
    reference: str | None = Field(None, max_length=40)


class MissingDataRequest(_Outcome):
    """Multiple imputation (chained equations, Rubin's rules) and a delta-adjusted tipping point."""

    followup: str = Field(min_length=1, max_length=40, description="the follow-up wave of the ANCOVA")
    m: int = Field(20, ge=2, le=100, description="number of imputations")
    auxiliary: list[str] = Field(
        [], max_length=10, description="baseline scales predicting dropout (e.g. lsns6), used in the imputation"
    )
    deltas: list[float] | None = Field(
        None, max_length=25, description="shifts of the imputed follow-up values (default: ±1 SD in 9 steps)"
    )
    arm: str | None = Field(None, max_length=40, description="arm whose imputed values are shifted")
    reference: str | None = Field(None, max_length=40)
    seed: int = Field(0, ge=0, le=2**31 - 1)


class PowerRequest(_Request):
    """Sample size and power from assumptions (no study data are read).

    ``two_arm`` needs ``delta`` and ``sd`` (difference in means at one wave); ``slope`` needs
    ``slope_diff``, ``sigma2`` and ``rho`` (Diggle et al. 2002, §2.4), with measurement ``times`` in
    years defaulting to the study's wave offsets. Which fields a design needs is checked by the
    service (so that the 422 names the missing field).
    """

    design: Literal["two_arm", "slope"]
    delta: float | None = Field(None, description="two_arm: difference in means to detect")
    sd: float | None = Field(None, gt=0, description="two_arm: SD of the outcome")
    slope_diff: float | None = Field(None, description="slope: difference in slopes per year")
    sigma2: float | None = Field(None, gt=0, description="slope: variance of one measurement")
    rho: float | None = Field(None, ge=0, lt=1, description="slope: correlation of repeated measurements")
    times: list[float] | None = Field(
        None, min_length=2, max_length=50, description="slope: measurement times in years (default: the waves)"
    )
    alpha: float = Field(0.05, gt=0, lt=0.5)
    power: float = Field(0.8, gt=0.5, lt=1)
    alternative: Literal["two-sided", "one-sided"] = Field("two-sided", description="one-sided uses z(1 - alpha)")
    baseline_correlation: float | None = Field(
        None, gt=-1, lt=1, description="two_arm: baseline-follow-up correlation; n for a baseline-adjusted ANCOVA"
    )
    cluster_size: float = Field(1.0, ge=1, le=1000, description="peer-group size (design effect 1 + (m - 1) ICC)")
    icc: float = Field(0.0, ge=0, le=1, description="intra-group correlation of the outcome")
    partially_nested: bool = Field(False, description="only the intervention arms are delivered in groups")
    attrition: float = Field(0.0, ge=0, lt=0.9, description="share expected to drop out (inflates n)")
    n_per_arm: list[int] | None = Field(
        None, min_length=2, max_length=200, description="sizes of the power curve (default: around the required n)"
    )

    @field_validator("n_per_arm")
    @classmethod
    def _sizes(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and any(n < 2 or n > 10**6 for n in v):
            raise PydanticCustomError("value_error", "n_per_arm values must be between 2 and 1,000,000")
        return v


#: The tables each kind returns and their columns (the contract the tests check).
TABLES: dict[str, dict[str, list[str]]] = {
    "trajectory": {
        "fixed_effects": ["term", "estimate", "se", "df", "t", "p", "ci_lower", "ci_upper"],
        "variance_components": ["group", "term", "variance", "sd", "corr"],
        "fit_statistics": [
            "nobs",
            "n_participants",
            "method",
            "logLik",
            "REML_criterion",
            "logLik_ML",
            "AIC",
            "BIC",
            "converged",
            "optimizer",
        ],
        "predicted_means": ["arm", "wave", "time", "mean", "se", "df", "ci_lower", "ci_upper"],
        "observed_means": ["arm", "wave", "time", "n", "mean", "sd", "ci_lower", "ci_upper"],
        "slopes": [
            "arm",
            "slope",
            "se",
            "df",
            "ci_lower",
            "ci_upper",
            "diff",
            "diff_se",
            "diff_df",
            "diff_ci_lower",
            "diff_ci_upper",
            "diff_p",
        ],
    },
    "moderation": {
        "subgroup_slopes": [
            "moderator",
            "level",
            "arm",
            "n_participants",
            "slope",
            "se",
            "df",
            "ci_lower",
            "ci_upper",
            "p",
        ],
        "subgroup_effects": [
            "moderator",
            "level",
            "arm",
            "n_participants",
            "effect",
            "se",
            "df",
            "ci_lower",
            "ci_upper",
            "p",
        ],
        "interaction_test": ["chisq", "df", "p"],
        "fixed_effects": ["term", "estimate", "se", "df", "t", "p", "ci_lower", "ci_upper"],
    },
    "reliability": {
        "reliability": ["instrument", "wave", "n", "k", "alpha", "ci_lower", "ci_upper", "omega"],
        "item_total": ["instrument", "wave", "item", "n", "mean", "sd", "r_item_rest", "alpha_if_deleted"],
    },
    "effect-sizes": {
        "effect_sizes": [
            "scale",
            "baseline_wave",
            "followup_wave",
            "comparison",
            "arm",
            "reference",
            "n",
            "n_reference",
            "mean_change",
            "mean_change_reference",
            "effect",
            "estimate",
            "ci_lower",
            "ci_upper",
        ],
    },
    "responders": {
        "responders": [
            "scale",
            "baseline_wave",
            "followup_wave",
            "arm",
            "mcid",
            "better",
            "n",
            "improved",
            "improved_prop",
            "improved_ci_lower",
            "improved_ci_upper",
            "deteriorated",
            "deteriorated_prop",
            "risk_difference",
            "rd_ci_lower",
            "rd_ci_upper",
        ],
    },
    "retention": {
        "km": ["group", "time", "at_risk", "events", "survival", "ci_lower", "ci_upper"],
        "logrank": ["by", "groups", "chisq", "df", "p"],
        "cox": [
            "term",
            "coef",
            "hr",
            "se",
            "z",
            "p",
            "ci_lower",
            "ci_upper",
            "hr_ci_lower",
            "hr_ci_upper",
            "n",
            "events",
            "n_excluded",
        ],
        "threshold_km": ["group", "time", "at_risk", "events", "survival", "ci_lower", "ci_upper"],
        "threshold_logrank": ["by", "groups", "chisq", "df", "p"],
    },
    "attrition": {
        "completion": [
            "wave",
            "wave_offset",
            "enrolled",
            "due",
            "completed",
            "completed_pct",
            "attrition_pct",
            "denominator",
        ],
        "dropout_by_baseline": ["variable", "n_dropout", "n_retained", "mean_dropout", "mean_retained", "smd", "p"],
    },
    "power": {
        "sample_size": [
            "design",
            "alpha",
            "power",
            "alternative",
            "design_effect",
            "n_per_arm",
            "n_control_per_arm",
            "n_per_arm_with_attrition",
            "arms",
            "n_total",
        ],
        "power_curve": ["n_per_arm", "power"],
    },
    "trial": {
        "ancova": [
            "scale",
            "baseline_wave",
            "followup_wave",
            "arm",
            "reference",
            "n",
            "n_reference",
            "n_excluded",
            "adjusted_mean",
            "adjusted_mean_reference",
            "estimate",
            "se",
            "df",
            "t",
            "p",
            "ci_lower",
            "ci_upper",
            "baseline_slope",
            "se_type",
        ],
        "clda": [
            "scale",
            "baseline_wave",
            "followup_wave",
            "arm",
            "reference",
            "n_participants",
            "estimate",
            "se",
            "df",
            "t",
            "p",
            "ci_lower",
            "ci_upper",
            "converged",
        ],
    },
    "gee": {
        "coefficients": ["term", "estimate", "se", "z", "p", "ci_lower", "ci_upper"],
        "arm_effects": ["arm", "reference", "wave", "estimate", "se", "z", "p", "ci_lower", "ci_upper"],
    },
    "missing-data": {
        "multiple_imputation": [
            "scale",
            "analysis",
            "followup_wave",
            "arm",
            "reference",
            "m",
            "delta",
            "n_imputed",
            "estimate",
            "se",
            "df",
            "p",
            "ci_lower",
            "ci_upper",
            "fmi",
        ],
        "tipping_point": [
            "delta",
            "arm",
            "reference",
            "estimate",
            "se",
            "ci_lower",
            "ci_upper",
            "p",
            "significant",
            "same_conclusion",
            "tipping_point",
        ],
    },
}


class PlotLink(BaseModel):
    name: str
    format: PlotFormat
    url: str = Field(description="GET it with the same token")


class AnalysisRun(BaseModel):
    """One analysis run: tidy tables as records, scalar results, warnings and plot links."""

    run_id: str
    kind: str
    study_id: int
    created_at: datetime
    parameters: dict[str, Any]
    sites: list[str] | None = Field(description="sites analysed (None: every site)")
    n_participants: int
    n_rows: int = Field(description="rows of the cohort frame read (0 for power)")
    tables: dict[str, list[dict[str, Any]]]
    columns: dict[str, list[str]] = Field(description="each table's columns (also when it has no rows)")
    values: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    plots: list[PlotLink] = Field(default_factory=list)
    plan: dict[str, Any] | None = Field(
        None,
        description="against the locked analysis plan: status (pre-specified, deviates, post hoc, descriptive, "
        "no plan), plan_version, plan_hash, role (primary, secondary, subgroup) and deviations",
    )
