"""Request and response bodies of the statistical analysis plan and of blinding.

A plan names what is analysed and how before anyone sees results by arm: the primary outcome, its
time point and model, secondary outcomes, covariates, minimal clinically important differences,
pre-specified subgroups (context answers, CMO configurations or qualitative codes), the
missing-data strategy and the families of outcomes whose p-values are adjusted together.

Examples
--------
>>> plan = PlanContent(primary=Outcome(scale="pam13_activation", wave="m6"))
>>> plan.primary.model, plan.missing_data, plan.multiplicity
('trial', 'mixed_model', 'holm')
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.inputguard import SingleLine

#: Analysis kinds (``POST /studies/{id}/analyses/{kind}``) a plan can name as an outcome's model.
Model = Literal["trial", "trajectory", "gee", "missing-data", "effect-sizes", "responders"]
Name = Annotated[str, Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9_:.\-]+$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Outcome(_In):
    """One outcome: scale, time point (a wave code) and the analysis kind that estimates it."""

    scale: Name = Field(description="scale code collected by the study (pam13_activation, phq9, ...)")
    wave: Name = Field(description="the time point of the estimate: a wave code")
    model: Model = Field("trial", description="the analysis kind that estimates it (ANCOVA + cLDA: trial)")


class PlanContent(_In):
    """The content of one version of the plan (what the hash covers)."""

    primary: Outcome
    secondary: list[Outcome] = Field([], max_length=50)
    covariates: list[Name] = Field([], max_length=20, description="adjusted for in every model: site, context_*")
    mcids: dict[Name, Annotated[float, Field(gt=0, allow_inf_nan=False)]] = Field(
        {}, description="scale -> minimal clinically important difference (> 0)"
    )
    subgroups: list[Name] = Field(
        [], max_length=50, description="pre-specified moderators: context_* answers, CMO configurations, code:*"
    )
    missing_data: Literal["complete_case", "mixed_model", "multiple_imputation"] = Field(
        "mixed_model", description="primary missing-data strategy"
    )
    sensitivity: list[Literal["complete_case", "multiple_imputation", "tipping_point"]] = Field(
        [], max_length=3, description="missing-data sensitivity analyses"
    )
    families: dict[Name, list[Name]] = Field(
        {}, description="family name -> scales whose p-values are adjusted together"
    )
    multiplicity: Literal["holm", "hochberg", "bonferroni", "fdr_bh", "none"] = "holm"
    alpha: float = Field(0.05, gt=0, lt=0.5)
    notes: str = Field("", max_length=10_000, description="rationale, estimands, anything else pre-specified")


class PlanRead(BaseModel):
    """One version of the plan."""

    study_id: int
    version: int
    status: Literal["draft", "locked"]
    content: dict[str, Any]
    content_hash: str | None = Field(description="SHA-256 of the canonical serialisation (locked versions)")
    locked_at: datetime | None
    locked_by: int | None
    created_at: datetime
    updated_at: datetime


class Deviation(BaseModel):
    """A field where a version (or an analysis) differs from the locked plan."""

    field: str
    planned: Any
    actual: Any


class DeviationList(BaseModel):
    study_id: int
    locked_version: int | None
    locked_hash: str | None
    version: int
    deviations: list[Deviation]


class LockRequest(_In):
    confirm_hash: str | None = Field(
        None, min_length=64, max_length=64, description="optional: the hash the admin reviewed (409 if it differs)"
    )


class UnblindRequest(_In):
    reason: SingleLine = Field(min_length=3, max_length=2000, description="why the study is unblinded now")
    confirm: Literal["UNBLIND"] = Field(description='"UNBLIND": unblinding cannot be undone')


class BlindingRead(BaseModel):
    study_id: int
    unblinded: bool
    unblinded_at: datetime | None
    blind: bool = Field(description="whether you read arms as neutral labels")
    arms: list[str] = Field(description="the arm labels you read")


class UnblindingRead(BaseModel):
    study_id: int
    unblinded_at: datetime
    unblinded_by: int | None
    reason: str
