"""Realist analysis kinds: requests and runners (registered in :data:`api.analyses.kinds.KINDS`).

Each runner takes ``(data, request, design, study)`` with ``data`` a
:class:`api.context.realist.RealistData` (the cohort frame plus site context, goals, CMO
configurations and the delivery domain's adherence when the service has it).

Compliance and dose come from a pluggable provider (``adherence_source``): ``delivery`` (the
delivery domain's per-participant adherence and sessions attended), ``request`` (a map of
participant codes to 0/1 adherence or to a dose), ``column`` (a participant-level column of the
frame, e.g. a context answer, with ``adherence_threshold`` turning a number into 0/1), or
``auto`` (delivery when available, else 422 naming ``adherence_source``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from api.analyses.checks import Design, check_scale, check_wave, statistical
from api.analyses.runners import Result
from api.analyses.schemas import _Outcome, _Request
from api.context.realist import RealistData, participant_frame, pick_arms, realist_table
from api.errors import Unprocessable
from api.studies.models import Study

if TYPE_CHECKING:
    import pandas as pd

    from analysis import compliance, gas
    from analysis import mediation as mediation_lib
    from analysis import realist as realist_lib
else:
    # The model stack loads on the first realist run, not when the server starts.
    from api.lazyimport import LazyModule
    from api.lazyimport import pandas as pd

    compliance = LazyModule("analysis.compliance")
    gas = LazyModule("analysis.gas")
    mediation_lib = LazyModule("analysis.mediation")
    realist_lib = LazyModule("analysis.realist")


class _Arms(_Request):
    arm: str | None = Field(None, max_length=40, description="intervention arm (default: the first one)")
    reference: str | None = Field(None, max_length=40, description="comparison arm (default: the control arm)")


class WhatWorksRequest(_Arms):
    """The what-works-for-whom table over the study's CMO configurations."""

    cmos: list[str] | None = Field(None, max_length=200, description="CMO codes (default: all)")
    alpha: float = Field(0.05, gt=0, lt=0.5)
    fdr: float = Field(0.05, gt=0, lt=0.5, description="false-discovery rate of the Benjamini–Hochberg step")
    min_per_cell: int = Field(5, ge=2, le=1000)


class _Followup(_Outcome, _Arms):
    wave: str = Field(min_length=1, max_length=40, description="follow-up wave of the outcome")


class SiteHeterogeneityRequest(_Followup):
    """Site-specific arm effects at a wave, with shrinkage and a forest plot."""


class MediationRequest(_Followup):
    """Mediation of the arm effect on ``outcome`` at ``wave`` through ``mediator`` at ``mediator_wave``."""

    mediator: str = Field(min_length=1, max_length=80, description="scale code of the mechanism")
    mediator_wave: str = Field(min_length=1, max_length=40, description="an earlier wave than the outcome's")
    interaction: bool = Field(False, description="let the mechanism's effect differ by arm")
    n_boot: int = Field(1000, ge=200, le=5000)
    seed: int = Field(1, ge=0, le=2**31 - 1)


class _Provider(_Followup):
    adherence_source: Literal["auto", "delivery", "request", "column"] = "auto"
    adherence: dict[str, float] | None = Field(
        None, max_length=100_000, description="request source: participant code -> adherence (0/1) or dose"
    )
    adherence_column: str | None = Field(None, max_length=120, description="column source: a participant column")
    adherence_threshold: float | None = Field(None, description="column source: adherent when value >= threshold")


class CaceRequest(_Provider):
    """Complier average causal effect (2SLS, randomisation as the instrument) and the Wald check."""


class DoseResponseRequest(_Provider):
    """Outcome on dose within the intervention arm (an association; the caveat is printed)."""


class GasRequest(_Arms):
    """Goal Attainment Scaling T-scores by arm and their change."""

    wave: str = Field(min_length=1, max_length=40, description="follow-up wave of the goal ratings")
    rho: float = Field(0.3, ge=0, lt=1, description="assumed inter-goal correlation (Kiresuk–Sherman)")
    alpha: float = Field(0.05, gt=0, lt=0.5)


def _arms(data: RealistData, req: Any) -> tuple[str, str]:
    try:
        return pick_arms(data, req.arm, req.reference)
    except ValueError as exc:
        name = str(exc)
        raise Unprocessable(
            ["body", name],
            f"not an intervention/comparison arm pair of this study ({', '.join(c for c, _ in data.arms)})",
            "unknown_arm",
        ) from exc


def _frame(data: RealistData, req: Any, measures: list[tuple[str, str]], adherence=None) -> pd.DataFrame:
    arm, ref = _arms(data, req)
    frame = participant_frame(data, measures, arm, ref, adherence)
    if frame.empty:
        raise Unprocessable(["body", "outcome"], "no participant of these arms in scope", "no_data")
    return frame


def check_followup(design: Design, req: Any) -> None:
    check_scale(design, req.outcome, ["body", "outcome"])
    check_wave(design, req.wave, ["body", "wave"], req.outcome)
    if isinstance(req, MediationRequest):
        check_scale(design, req.mediator, ["body", "mediator"])
        check_wave(design, req.mediator_wave, ["body", "mediator_wave"], req.mediator)
        order = design.wave_codes
        if order.index(req.mediator_wave) >= order.index(req.wave):
            raise Unprocessable(
                ["body", "mediator_wave"], "the mechanism is measured before the outcome's wave", "wave_order"
            )


def check_gas(design: Design, req: Any) -> None:
    check_wave(design, req.wave, ["body", "wave"])


def run_what_works(data: RealistData, req: WhatWorksRequest, design: Design, study: Study) -> Result:
    known = {c["code"] for c in data.cmos}
    if not known:
        raise Unprocessable(["body", "cmos"], "the study has no CMO configurations yet", "no_cmos")
    for i, code in enumerate(req.cmos or []):
        if code not in known:
            raise Unprocessable(["body", "cmos", i], f"no CMO configuration {code!r}", "unknown_cmo")
    _arms(data, req)
    with statistical(["body", "cmos"], "the what-works-for-whom table"):
        table = realist_table(data, req.arm, req.reference, req.alpha, req.fdr, req.min_per_cell, req.cmos)
    warnings = [f"{r.cmo}: {r.note}" for r in table.itertuples() if r.note]
    return Result(
        {"realist": table},
        {"fdr": req.fdr, "family": "all rows of the table (Benjamini–Hochberg)", "n_cmos": len(table)},
        warnings,
    )


def run_site_heterogeneity(data: RealistData, req: SiteHeterogeneityRequest, design: Design, study: Study) -> Result:
    col = f"{req.outcome}@{req.wave}"
    frame = _frame(data, req, [(req.outcome, req.wave)])
    base = req.outcome if req.outcome in frame.columns and req.wave != design.wave_codes[0] else None
    with statistical(["body", "outcome"], "site heterogeneity"):
        per, summary = realist_lib.site_heterogeneity(frame, col, baseline=base, alpha=req.alpha)
        fig = realist_lib.plot_site_forest(per, summary, title=f"{req.outcome} at {req.wave}: arm effect by site")
    left = summary.pop("sites_left_out")
    warnings = [f"sites left out (fewer than 3 participants in an arm): {', '.join(left)}"] if left else []
    return Result(
        {"sites": per, "summary": pd.DataFrame([summary])},
        {"sites_left_out": left},
        warnings,
        {f"site_forest_{req.outcome}": fig},
    )


def run_mediation(data: RealistData, req: MediationRequest, design: Design, study: Study) -> Result:
    frame = _frame(data, req, [(req.outcome, req.wave), (req.mediator, req.mediator_wave)])
    covs = [c for c in dict.fromkeys([req.mediator, req.outcome]) if c in frame.columns]
    with statistical(["body", "mediator"], "the mediation analysis"):
        out = mediation_lib.mediation(
            frame,
            "treated",
            f"{req.mediator}@{req.mediator_wave}",
            f"{req.outcome}@{req.wave}",
            covs,
            req.interaction,
            req.n_boot,
            req.alpha,
            req.seed,
        )
    return Result({"mediation": out}, {"assumption": mediation_lib.ASSUMPTION, "covariates": covs})


def _adherence(data: RealistData, req: _Provider, frame_cols: list[str]) -> tuple[dict[str, float] | None, str]:
    src: str = req.adherence_source
    if src == "auto":
        src = "delivery" if data.adherence is not None else "none"
    if src == "none":
        raise Unprocessable(
            ["body", "adherence_source"],
            "no delivery records give adherence here: send "
            "adherence (source 'request') or name a column (source 'column')",
            "no_adherence",
        )
    if src == "delivery":
        if data.adherence is None:
            raise Unprocessable(["body", "adherence_source"], "this service holds no delivery records", "no_delivery")
        return None, "delivery records (adherence definition of the arm)"
    if src == "request":
        if not req.adherence:
            raise Unprocessable(["body", "adherence"], "source 'request' needs participant codes -> values", "missing")
        return dict(req.adherence), "sent with the request"
    if not req.adherence_column:
        raise Unprocessable(["body", "adherence_column"], "source 'column' needs the column's name", "missing")
    return {}, f"column {req.adherence_column}"


def _provided(data: RealistData, req: _Provider, measures) -> tuple[pd.DataFrame, str]:
    amap, how = _adherence(data, req, [])
    if req.adherence_source == "column" and amap == {}:
        frame = _frame(data, req, measures)
        if req.adherence_column not in frame.columns:
            raise Unprocessable(
                ["body", "adherence_column"], "not a participant-level column of the cohort frame", "unknown_column"
            )
        raw = frame[req.adherence_column]
        words = {"yes": 1.0, "no": 0.0, "true": 1.0, "false": 0.0}
        num = pd.to_numeric(raw.map(lambda v: words.get(str(v).lower(), v)), errors="coerce")
        if req.adherence_threshold is not None:
            num = (num >= req.adherence_threshold).astype(float).where(num.notna())
        if num[frame["treated"] == 1].notna().sum() == 0:
            raise Unprocessable(
                ["body", "adherence_column"],
                "the column holds no numbers or yes/no answers in the intervention arm",
                "not_numeric",
            )
        frame["adherent"] = num
        frame.loc[frame["treated"] == 0, "adherent"] = 0.0  # the comparison arm is not offered the programme
        return frame, how
    frame = _frame(data, req, measures, amap)
    if amap is not None:
        frame.loc[frame["treated"] == 0, "adherent"] = frame.loc[frame["treated"] == 0, "adherent"].fillna(0.0)
    return frame, how


def run_cace(data: RealistData, req: CaceRequest, design: Design, study: Study) -> Result:
    frame, how = _provided(data, req, [(req.outcome, req.wave)])
    col = f"{req.outcome}@{req.wave}"
    covs = [req.outcome] if req.outcome in frame.columns and req.wave != design.wave_codes[0] else []
    vals = frame["adherent"].dropna()
    if vals.empty or ((vals < 0) | (vals > 1)).any():
        raise Unprocessable(
            ["body", "adherence_source"],
            "adherence must be 0/1 (or a share in [0, 1]) for the "
            "complier effect; set adherence_threshold for a dose column",
            "adherence_range",
        )
    with statistical(["body", "adherence_source"], "the complier average causal effect"):
        out = compliance.cace(frame, "treated", "adherent", col, covs, req.alpha)
    return Result({"cace": out}, {"adherence": how, "assumptions": compliance.CACE_ASSUMPTIONS, "covariates": covs})


def run_dose_response(data: RealistData, req: DoseResponseRequest, design: Design, study: Study) -> Result:
    frame, how = _provided(data, req, [(req.outcome, req.wave)])
    dose = (
        "sessions_attended"
        if "sessions_attended" in frame.columns and req.adherence_source in ("auto", "delivery")
        else "adherent"
    )
    covs = [req.outcome] if req.outcome in frame.columns and req.wave != design.wave_codes[0] else []
    with statistical(["body", "adherence_source"], "the dose-response slope"):
        out = compliance.dose_response(frame, dose, f"{req.outcome}@{req.wave}", "treated", covs, req.alpha)
    return Result({"dose_response": out}, {"dose": how, "caveat": compliance.DOSE_CAVEAT}, [compliance.DOSE_CAVEAT])


def run_gas(data: RealistData, req: GasRequest, design: Design, study: Study) -> Result:
    g = data.goals
    if g.empty:
        raise Unprocessable(["body", "wave"], "no personal goals are recorded for participants in scope", "no_goals")
    arm, ref = _arms(data, req)
    base = g.drop_duplicates(["participant", "goal"])[["participant", "goal", "weight", "baseline_level"]]
    fu = g[g["wave"] == req.wave][["participant", "goal", "level"]].rename(columns={"level": "followup_level"})
    goals = base.merge(fu, on=["participant", "goal"], how="left")
    with statistical(["body", "rho"], "GAS T-scores"):
        scores = gas.gas_scores(goals, rho=req.rho)
    arms = data.long.drop_duplicates("participant").set_index("participant")["arm"]
    scores["arm"] = scores["participant"].map(arms)
    scores = scores[scores["arm"].isin([arm, ref])]
    if scores["t_followup"].notna().sum() == 0:
        raise Unprocessable(["body", "wave"], f"no goal is rated at {req.wave}", "no_ratings")
    summary = gas.gas_by_arm(scores, "arm", req.alpha, reference=ref)
    return Result(
        {"gas_by_arm": summary},
        {"rho": req.rho, "n_participants": int(len(scores)), "n_rated": int(scores["t_followup"].notna().sum())},
    )


__all__ = [
    "WhatWorksRequest",
    "SiteHeterogeneityRequest",
    "MediationRequest",
    "CaceRequest",
    "DoseResponseRequest",
    "GasRequest",
]
