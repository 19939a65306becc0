"""Running the analysis library on a study's current export: checks, runs, plots, audit.

Every run reads the study's cohort through the exports service (so de-identification and site
scope are decided there: a coordinator's frame holds their own sites' participants only), calls
the pure functions of :mod:`analysis`, writes its plots under
``<PEERLENS_ARTIFACT_DIR>/analyses/<study id>/<run id>/`` and records one ``analysis.run`` audit event
with the parameters and the number of rows read. Nothing in the study changes.

Requests are checked against the study (scales of its waves' instruments, wave, site and arm
codes) and against the frame (covariate and moderator columns); statistical failures (too few
participants, no convergence, no estimable subgroup) become 422 errors naming the field, in plain
words.

Examples
--------
>>> from api.analyses.schemas import TrajectoryRequest
>>> run = execute(session, study, actor, "trajectory", TrajectoryRequest(outcome="phq9"),
...               settings)  # doctest: +SKIP
>>> run.tables["slopes"][0]["slope"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlmodel import Session

import instruments
from api.analyses.schemas import (
    TABLES,
    AnalysisRun,
    AttritionRequest,
    EffectSizesRequest,
    ModerationRequest,
    PlotLink,
    PowerRequest,
    ReliabilityRequest,
    RespondersRequest,
    RetentionRequest,
    TrajectoryRequest,
    _Request,
)
from api.audit.service import record
from api.auth.service import Actor
from api.db import utcnow
from api.errors import Forbidden, NotFound, Unprocessable
from api.exports import service as exports
from api.participants.models import Participant
from api.studies.models import Arm, Site, Study, Wave

log = logging.getLogger("peerlens.analyses")

YEAR = 365.25
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
FILENAME = re.compile(r"^[A-Za-z0-9_\-]{1,150}\.(png|svg)$")
MANIFEST = "run.json"
CONTEXT = "context"

# What the analysis library raises when the data cannot support a model.
_STAT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    ArithmeticError,
    np.linalg.LinAlgError,
    KeyError,
    IndexError,
)


@lru_cache(maxsize=1)
def _stat_errors() -> tuple[type[BaseException], ...]:
    """:data:`_STAT_ERRORS` plus lifelines' and patsy's, resolved on first failure: importing
    lifelines at start-up would load its whole model stack into every API process."""
    errors = _STAT_ERRORS
    try:  # lifelines' convergence failure derives from ArithmeticError in current releases; be explicit
        from lifelines.exceptions import ConvergenceError as _LifelinesConvergence

        errors += (_LifelinesConvergence,)
    except ImportError:  # pragma: no cover
        pass
    try:
        from patsy import PatsyError

        errors += (PatsyError,)
    except ImportError:  # pragma: no cover
        pass
    return errors


# ---- the study's design --------------------------------------------------------------------------


@dataclass
class Design:
    """What a request can refer to: the study's waves, scales, instruments, sites and arms."""

    waves: list[Wave]
    scales: dict[str, list[str]]  # scale code -> wave codes where it is collected
    instruments: list[str]
    sites: dict[str, int]
    arms: list[Arm]

    @property
    def wave_codes(self) -> list[str]:
        return [w.code for w in self.waves]


def _instrument(code: str):
    try:
        return instruments.get(code)
    except instruments.InstrumentError:
        return None


def study_design(session: Session, study: Study) -> Design:
    """The study's waves (by offset), the scales its instruments score, its sites and arms."""
    waves = list(
        session.exec(select(Wave).where(Wave.study_id == study.id).order_by(Wave.offset_days, Wave.code)).scalars()
    )
    scales: dict[str, list[str]] = {}
    used: list[str] = []
    for w in waves:
        for code in w.instruments:
            if code == CONTEXT:
                continue
            if code not in used:
                used.append(code)
            inst = _instrument(code)
            for sc in inst.scales if inst is not None else ():
                scales.setdefault(sc.code, []).append(w.code)
    sites = {
        s.code: s.id for s in session.exec(select(Site).where(Site.study_id == study.id).order_by(Site.id)).scalars()
    }
    arms = list(session.exec(select(Arm).where(Arm.study_id == study.id).order_by(Arm.id)).scalars())
    return Design(waves, scales, used, sites, arms)


def _listing(values) -> str:
    values = sorted(values)
    return ", ".join(values[:30]) + (" …" if len(values) > 30 else "") if values else "none"


def check_scale(design: Design, scale: str, loc: list) -> str:
    """422 unless ``scale`` is scored by an instrument of one of the study's waves."""
    if scale not in design.scales:
        raise Unprocessable(
            loc, f"not a scale of this study's instruments; expected one of: {_listing(design.scales)}", "unknown_scale"
        )
    return scale


def check_wave(design: Design, code: str, loc: list, scale: str | None = None) -> str:
    """422 unless ``code`` is a wave of the study (collecting ``scale`` when given)."""
    if code not in design.wave_codes:
        raise Unprocessable(
            loc, f"not a wave of this study; expected one of: {_listing(design.wave_codes)}", "unknown_wave"
        )
    if scale is not None and code not in design.scales.get(scale, []):
        raise Unprocessable(
            loc,
            f"{scale} is not collected at this wave; it is collected at: {_listing(design.scales.get(scale, []))}",
            "scale_not_collected",
        )
    return code


def check_sites(design: Design, actor: Actor, codes: list[str] | None) -> list[str] | None:
    """The site codes analysed: the request's (checked), else None for every site the actor sees."""
    if codes is None:
        return None
    for i, code in enumerate(codes):
        if code not in design.sites:
            raise Unprocessable(
                ["body", "sites", i],
                f"not a site of this study; expected one of: {_listing(design.sites)}",
                "unknown_site",
            )
        if not actor.sees_site(design.sites[code]):
            raise Forbidden(["body", "sites", i], "coordinators analyse their own sites only", "site_not_allowed")
    return list(dict.fromkeys(codes))


def scope_sites(design: Design, actor: Actor, requested: list[str] | None) -> list[str] | None:
    """Site codes a run covers, for the manifest and the audit trail (None = every site)."""
    if requested is not None:
        return requested
    if actor.role == "coordinator":
        return [c for c, i in design.sites.items() if actor.sees_site(i)]
    return None


PARTICIPANT_COLUMNS = ("site",)


def participant_columns(frame: pd.DataFrame) -> list[str]:
    """Columns usable as covariates or moderators: ``site``, ``context_*`` and ``code:*``."""
    return [c for c in frame.columns if c in PARTICIPANT_COLUMNS or c.startswith("context_") or c.startswith("code:")]


def check_columns(frame: pd.DataFrame, names: list[str], loc: list, *, extra: tuple[str, ...] = ()) -> list[str]:
    """422 naming the first of ``names`` that is not a participant-level column of the frame."""
    allowed = participant_columns(frame) + list(extra)
    for i, name in enumerate(names):
        if name not in allowed:
            raise Unprocessable(
                loc + [i],
                f"not a column of the study's cohort frame; expected one of: {_listing(allowed)}",
                "unknown_column",
            )
    return list(dict.fromkeys(names))


@contextmanager
def statistical(loc: list, what: str) -> Iterator[None]:
    """Turn a failure of the analysis library into a 422 in plain words naming ``loc``."""
    try:
        yield
    except _stat_errors() as exc:
        msg = str(exc).strip().strip("'\"") or type(exc).__name__
        log.info("analysis not estimable (%s): %s", what, type(exc).__name__)
        raise Unprocessable(loc, f"{what} could not be estimated from these data: {msg}", "not_estimable") from None


# ---- reading the cohort ------------------------------------------------------------------------


def count_participants(session: Session, study: Study, design: Design, actor: Actor, sites: list[str] | None) -> int:
    """Participants in scope (checked against the size bound before anything is read)."""
    ids = [i for c, i in design.sites.items() if (sites is None or c in sites) and actor.sees_site(i)]
    if not ids:
        return 0
    return int(
        session.execute(
            select(func.count(Participant.id)).where(Participant.study_id == study.id, Participant.site_id.in_(ids))
        ).scalar_one()
    )


def has_responses(session: Session, study: Study, design: Design, actor: Actor, sites: list[str] | None) -> bool:
    """Whether any participant in scope has answered a questionnaire (context answers aside)."""
    from api.responses.models import Response

    ids = [i for c, i in design.sites.items() if (sites is None or c in sites) and actor.sees_site(i)]
    if not ids:
        return False
    found = session.execute(
        select(Response.id)
        .join(Participant, Participant.id == Response.participant_id)
        .where(Participant.study_id == study.id, Participant.site_id.in_(ids), Response.instrument != CONTEXT)
        .limit(1)
    ).first()
    return found is not None


def load_frame(
    session: Session, study: Study, actor: Actor, sites: list[str] | None = None, *, secret: str = ""
) -> pd.DataFrame:
    """The study's ``long`` frame as the exports service gives it to ``actor`` (site-scoped)."""
    from analysis import load_long

    frame = exports.long_frame(session, study, actor, exports.ExportFilters(sites=sites), secret=secret)
    if frame.empty:
        return frame
    return load_long(frame)


def load_items(
    session: Session,
    study: Study,
    actor: Actor,
    *,
    sites: list[str] | None = None,
    waves: list[str] | None = None,
    instrument_codes: list[str] | None = None,
    secret: str = "",
) -> pd.DataFrame:
    """The ``items`` frame from the exports service, ready for reliability.

    Only items that enter a scale are kept, answers coded as missing ("not applicable", "don't
    know") are dropped and reverse-scored items are mirrored, so that alpha and omega describe the
    scale as it is scored.
    """
    filters = exports.ExportFilters(sites=sites, waves=waves, instruments=instrument_codes)
    frames = list(exports.iter_items(session, study, actor, filters, secret=secret))
    items = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["participant", "wave", "instrument", "item", "value"])
    )
    if items.empty:
        return items[["participant", "wave", "instrument", "item", "value"]]
    keep = []
    for code, g in items.groupby("instrument", sort=False):
        inst = _instrument(str(code))
        if inst is None:
            continue
        scored = {i for sc in inst.scales if not sc.external for i in sc.items}
        lookup = {it.code: it for it in inst.items if it.code in scored and it.scored}
        g = g[g["item"].isin(lookup)].copy()
        values = pd.to_numeric(g["value"], errors="coerce")
        out = []
        for item_code, v in zip(g["item"], values, strict=False):
            it = lookup[item_code]
            missing = {o.code for o in it.options if getattr(o, "missing", False)}
            if pd.isna(v) or v in missing:
                out.append(np.nan)
            elif it.reverse and it.options:
                try:
                    out.append(float(instruments.reverse_value(it, int(v) if float(v).is_integer() else v)))
                except ValueError:
                    out.append(np.nan)
            else:
                out.append(float(v))
        g["value"] = out
        keep.append(g)
    items = pd.concat(keep, ignore_index=True) if keep else items.iloc[0:0]
    return items[["participant", "wave", "instrument", "item", "value"]].dropna(subset=["value"])


# ---- results -----------------------------------------------------------------------------------


@dataclass
class Result:
    tables: dict[str, pd.DataFrame]
    values: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """A DataFrame as JSON-safe records (NaN -> null, numpy scalars -> numbers, categories -> strings)."""
    if df is None or df.empty:
        return []
    d = df.copy()
    for c in d.columns:
        if isinstance(d[c].dtype, pd.CategoricalDtype):
            d[c] = d[c].astype(object)
    return json.loads(d.to_json(orient="records", date_format="iso", default_handler=str))


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _ensure_columns(kind: str, name: str, df: pd.DataFrame) -> pd.DataFrame:
    cols = TABLES.get(kind, {}).get(name)
    if cols is None:
        return df
    for c in cols:
        if c not in df.columns:
            df[c] = np.nan
    return df


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-]", "_", name)[:140]


# ---- the analyses ------------------------------------------------------------------------------


def _no_data(frame: pd.DataFrame, loc: list) -> None:
    if frame.empty:
        raise Unprocessable(loc, "no participant in scope has questionnaire data yet", "no_data")


def _cluster(value: str) -> str | None:
    return None if value == "none" else value


def _check_reference(design: Design, ref: str | None) -> None:
    if ref is not None and ref not in {a.code for a in design.arms}:
        raise Unprocessable(
            ["body", "reference"],
            f"not an arm of this study; expected one of: {_listing(a.code for a in design.arms)}",
            "unknown_arm",
        )


def _converged(model, loc: list) -> None:
    if not bool(model.converged_):
        raise Unprocessable(
            loc,
            "the model did not converge, so its estimates cannot be trusted; use "
            "random='intercept', fewer covariates, or wait for more follow-up data",
            "not_converged",
        )


def run_trajectory(frame: pd.DataFrame, req: TrajectoryRequest, design: Design) -> Result:
    from analysis import TrajectoryModel
    from analysis.plots import plot_trajectory

    _no_data(frame, ["body", "outcome"])
    _check_reference(design, req.reference)
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
        m = TrajectoryModel(
            req.outcome,
            time=req.time,
            random=req.random,
            cluster=_cluster(req.cluster),
            covariates=covs,
            reference=req.reference,
            alpha=req.alpha,
        ).fit(frame)
    _converged(m, ["body", "random"])
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
        figures = {f"trajectory_{_safe_name(req.outcome)}": plot_trajectory(m)}
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


def run_moderation(frame: pd.DataFrame, req: ModerationRequest, design: Design) -> Result:
    from analysis import ModerationModel
    from analysis.plots import plot_forest

    _no_data(frame, ["body", "outcome"])
    if req.moderator not in participant_columns(frame):
        raise Unprocessable(
            ["body", "moderator"],
            "not a participant-level column of the study's cohort frame; "
            f"expected one of: {_listing(participant_columns(frame))}",
            "unknown_column",
        )
    covs = check_columns(frame, req.covariates, ["body", "covariates"])
    loc = ["body", "moderator"]
    try:
        mm = ModerationModel(
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
    _converged(mm, ["body", "random"])
    with statistical(loc, f"the moderation of {req.outcome} by {req.moderator}"):
        effects = mm.subgroup_effects
        tables = {
            "subgroup_slopes": mm.subgroup_slopes,
            "subgroup_effects": effects,
            "interaction_test": mm.interaction_test,
            "fixed_effects": mm.summary,
        }
        figures = {f"forest_{_safe_name(req.outcome)}_{_safe_name(req.moderator)}": plot_forest(effects)}
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


def run_reliability(items: pd.DataFrame, req: ReliabilityRequest) -> Result:
    from analysis.reliability import item_total, reliability

    if items.empty:
        raise Unprocessable(["body", "instruments"], "no scored item answers in scope", "no_data")
    with statistical(["body", "instruments"], "reliability"):
        rel = reliability(items, by=("instrument", "wave"), ci=1 - req.alpha)
        parts = []
        for (inst, wave), g in items.groupby(["instrument", "wave"], sort=True):
            w = g.pivot_table(index="participant", columns="item", values="value", aggfunc="first")
            if w.shape[1] < 2 or len(w.dropna()) < 3:
                continue
            t = item_total(w)
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


def _change_waves(design: Design, req) -> tuple[str, str]:
    collected = design.scales[req.outcome]
    post = check_wave(design, req.post, ["body", "post"], req.outcome) if req.post else collected[-1]
    pre = check_wave(design, req.pre, ["body", "pre"], req.outcome) if req.pre else collected[0]
    order = design.wave_codes
    if order.index(pre) >= order.index(post):
        raise Unprocessable(
            ["body", "post"], f"the follow-up wave must come after the baseline wave ({pre})", "wave_order"
        )
    return pre, post


def run_effect_sizes(frame: pd.DataFrame, req: EffectSizesRequest, design: Design) -> Result:
    from analysis import effect_sizes
    from analysis.plots import plot_forest

    _no_data(frame, ["body", "outcome"])
    pre, post = _change_waves(design, req)
    with statistical(["body", "post"], f"change in {req.outcome} from {pre} to {post}"):
        es = effect_sizes(frame, req.outcome, post=post, pre=pre, ci=1 - req.alpha)
    if es.empty:
        raise Unprocessable(
            ["body", "post"],
            f"too few participants have {req.outcome} at both {pre} and {post} (at least 3 per arm are needed)",
            "too_few_participants",
        )
    fig = plot_forest(
        es,
        estimate="estimate",
        label_cols=("comparison", "arm"),
        title=f"{req.outcome}: effect sizes of change {pre} to {post}",
    )
    return Result(
        {"effect_sizes": es}, {"pre": pre, "post": post}, figures={f"effect_sizes_{_safe_name(req.outcome)}": fig}
    )


def run_responders(frame: pd.DataFrame, req: RespondersRequest, design: Design) -> Result:
    from analysis import responders
    from analysis.change import scale_meta
    from analysis.plots import plot_forest

    _no_data(frame, ["body", "outcome"])
    pre, post = _change_waves(design, req)
    meta = scale_meta(req.outcome)
    if req.mcid is None and meta["mcid"] is None:
        raise Unprocessable(
            ["body", "mcid"],
            f"{req.outcome} has no published minimal clinically important difference; give mcid (a study setting)",
            "mcid_required",
        )
    with statistical(["body", "post"], f"responders on {req.outcome} from {pre} to {post}"):
        rp = responders(frame, req.outcome, post=post, pre=pre, mcid=req.mcid, ci=1 - req.alpha)
    if rp.empty:
        raise Unprocessable(
            ["body", "post"], f"no participant has {req.outcome} at both {pre} and {post}", "too_few_participants"
        )
    shown = rp.rename(columns={"improved_ci_lower": "ci_lower", "improved_ci_upper": "ci_upper"})
    fig = plot_forest(
        shown,
        estimate="improved_prop",
        label_cols=("arm",),
        title=f"{req.outcome}: share improved by at least {float(rp['mcid'].iloc[0]):g}",
    )
    return Result(
        {"responders": rp},
        {"pre": pre, "post": post, "mcid": float(rp["mcid"].iloc[0]), "better": meta["better"]},
        figures={f"responders_{_safe_name(req.outcome)}": fig},
    )


def run_retention(frame: pd.DataFrame, req: RetentionRequest, design: Design) -> Result:
    from analysis.plots import plot_km
    from analysis.survival import cox_dropout, dropout_frame, km_table, logrank, time_to_threshold

    _no_data(frame, ["body", "by"])
    covs = check_columns(frame, req.covariates, ["body", "covariates"], extra=("arm",))
    for i, s in enumerate(req.baseline_scales):
        check_scale(design, s, ["body", "baseline_scales", i])
    if req.threshold is not None:
        check_scale(design, req.threshold.scale, ["body", "threshold", "scale"])
    warnings: list[str] = []
    with statistical(["body", "by"], "retention"):
        d = dropout_frame(frame)
        km = km_table(d, by=req.by, ci=1 - req.alpha)
        events = int(d["event"].sum())
        if d[req.by].nunique() >= 2 and events > 0:
            lr = logrank(d, req.by)
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
            cox = cox_dropout(frame, covariates=covs, baseline_scales=list(req.baseline_scales))
    figures = {f"km_dropout_by_{req.by}": plot_km(km, title=f"Retention by {req.by}")}
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
            tt = time_to_threshold(frame, t.scale, t.value, t.direction, column=t.column)
        if tt.empty:
            raise Unprocessable(
                ["body", "threshold"],
                f"{what}: no participant is short of the threshold at their first observation",
                "too_few_participants",
            )
        with statistical(["body", "threshold"], what):
            tables["threshold_km"] = km_table(tt, by=req.by, ci=1 - req.alpha)
            reached = int(tt["event"].sum())
            tables["threshold_logrank"] = (
                logrank(tt, req.by)
                if tt[req.by].nunique() >= 2 and reached
                else pd.DataFrame(columns=TABLES["retention"]["threshold_logrank"])
            )
        values.update(threshold_participants=int(len(tt)), threshold_reached=reached)
        figures[f"km_{_safe_name(t.scale)}_{t.direction}_by_{req.by}"] = plot_km(
            tables["threshold_km"], title=f"Time to {t.scale} {'≥' if t.direction == 'above' else '<'} {t.value:g}"
        )
    return Result(tables, values, warnings, figures)


def _completion_figure(comp: pd.DataFrame, by: list[str]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    waves = list(dict.fromkeys(comp["wave"]))
    groups = comp.groupby(by, sort=True) if by else [("all", comp)]
    for i, (g, d) in enumerate(groups):
        label = " · ".join(map(str, g)) if isinstance(g, tuple) else str(g)
        d = d.set_index("wave").reindex(waves)
        ax.plot(range(len(waves)), d["completed_pct"], "o-", color=f"C{i % 10}", label=label)
    ax.set_xticks(range(len(waves)), waves)
    ax.set_ylim(0, 102)
    ax.set_ylabel("completed (% of enrolled)")
    ax.set_title("Questionnaire completion by wave")
    ax.legend(fontsize=8)
    return fig


def run_attrition(frame: pd.DataFrame, req: AttritionRequest, design: Design) -> Result:
    from analysis import completion, dropout_by_baseline

    _no_data(frame, ["body", "by"])
    for i, s in enumerate(req.scales or []):
        check_scale(design, s, ["body", "scales", i])
    context = req.context or []
    for i, c in enumerate(context):
        if not c.startswith("context_") or c not in frame.columns:
            raise Unprocessable(
                ["body", "context", i],
                "not a context column of the study's cohort frame; expected "
                f"one of: {_listing(c for c in frame.columns if c.startswith('context_'))}",
                "unknown_column",
            )
    by = list(dict.fromkeys(req.by))
    present = sorted(frame["scale"].unique())
    scales = [s for s in (req.scales or present) if s in present]
    with statistical(["body", "scales"], "attrition"):
        comp = completion(frame, by=by)
        dbb = dropout_by_baseline(frame, scales=scales, context=context or None)
    return Result(
        {"completion": comp, "dropout_by_baseline": dbb},
        {"by": by},
        figures={"completion_by_" + "_".join(by or ["all"]): _completion_figure(comp, by)},
    )


def run_power(req: PowerRequest, study: Study, design: Design) -> Result:
    from analysis.power import (
        design_effect,
        n_ancova,
        n_slope_difference,
        n_two_arm,
        power_slope_difference,
        power_two_arm,
    )

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
    deff = design_effect(req.cluster_size, req.icc)
    # Effective sample size per arm: ANCOVA's variance factor and the design effect (conservatively
    # applied to every arm in the power curve, also when only the intervention arms meet in groups).
    factor = (1 - req.baseline_correlation**2 if req.baseline_correlation is not None else 1.0) * deff
    if req.design == "two_arm":
        kw = {"delta": req.delta, "sd": req.sd, "alpha": req.alpha, "alternative": req.alternative}
        with statistical(["body", "delta"], "the sample size"):
            if req.baseline_correlation is not None:
                table = n_ancova(
                    req.delta,
                    req.sd,
                    req.baseline_correlation,
                    alpha=req.alpha,
                    power=req.power,
                    alternative=req.alternative,
                )
            else:
                table = n_two_arm(req.delta, req.sd, alpha=req.alpha, power=req.power, alternative=req.alternative)
            table = table.drop(columns=[c for c in ("design_effect", "n_intervention") if c in table.columns])

        def power_at(n: float) -> float:
            return power_two_arm(n / factor, **kw)
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
            table = n_slope_difference(
                req.slope_diff,
                req.sigma2,
                req.rho,
                list(times),
                alpha=req.alpha,
                power=req.power,
                alternative=req.alternative,
            )

        def power_at(n: float) -> float:
            return power_slope_difference(n / factor, **kw)

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
    fig = _power_figure(curve, req.power, n, values["planned_per_arm"], (1 - req.attrition))
    return Result({"sample_size": sample, "power_curve": curve}, values, figures={f"power_{req.design}": fig})


def _power_figure(curve: pd.DataFrame, target: float, n: int, planned_per_arm: float | None, kept: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(curve["n_per_arm"], curve["power"], "-", color="C0", label="power")
    ax.axhline(target, color="grey", lw=0.8, ls="--", label=f"target {target:.0%}")
    ax.axvline(n, color="C1", lw=1, label=f"needed: {n} per arm")
    if planned_per_arm:
        ax.axvline(planned_per_arm * kept, color="C2", lw=1, ls=":", label="planned (after attrition)")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("participants per arm (analysed)")
    ax.set_ylabel("power")
    ax.set_title("Power curve")
    ax.legend(fontsize=8)
    return fig


# ---- runs: orchestration, artefacts, audit ------------------------------------------------------


def run_dir(artifact_dir: str | Path, study_id: int, run_id: str) -> Path:
    return Path(artifact_dir) / str(int(study_id)) / run_id


def _parameters(req: _Request) -> dict[str, Any]:
    return req.model_dump(mode="json", exclude={"formats"})


def execute(
    session: Session,
    study: Study,
    actor: Actor,
    kind: str,
    req: _Request,
    settings,
    *,
    max_participants: int | None = None,
) -> AnalysisRun:
    """Check ``req``, run analysis ``kind`` on the study's current export, render plots, audit the run.

    Parameters
    ----------
    kind : str
        One of :data:`api.analyses.schemas.REQUESTS`.
    settings : api.config.Settings
        For the artefact directory, the participant bound and the date-shift secret.

    Raises
    ------
    api.errors.ApiError
        422 naming the field for an unknown scale, wave, site, arm, column, or a statistical
        failure; 403 when a coordinator names another site's code.
    """
    design = study_design(session, study)
    sites = check_sites(design, actor, req.sites)
    scope = scope_sites(design, actor, sites)
    run_id = uuid.uuid4().hex
    bound = max_participants if max_participants is not None else settings.analysis_max_participants
    n_rows = 0
    n_participants = 0
    if kind == "power":
        result = run_power(req, study, design)
    else:
        if kind in ("trajectory", "moderation", "effect-sizes", "responders", "trial", "gee", "missing-data"):
            check_scale(design, req.outcome, ["body", "outcome"])
        if kind == "reliability":
            for i, code in enumerate(req.instruments or []):
                if code not in design.instruments:
                    raise Unprocessable(
                        ["body", "instruments", i],
                        f"not an instrument of this study's waves; expected one of: {_listing(design.instruments)}",
                        "unknown_instrument",
                    )
            for i, code in enumerate(req.waves or []):
                check_wave(design, code, ["body", "waves", i])
        n_participants = count_participants(session, study, design, actor, sites)
        if n_participants > bound:
            raise Unprocessable(
                ["body", "sites"],
                f"{n_participants} participants exceed this service's bound of "
                f"{bound} for synchronous analyses; analyse fewer sites or run "
                "`peerlens analyze`",
                "too_large",
            )
        if not has_responses(session, study, design, actor, sites):
            loc = {
                "reliability": ["body", "instruments"],
                "retention": ["body", "by"],
                "attrition": ["body", "by"],
            }.get(kind, ["body", "outcome"])
            raise Unprocessable(loc, "no participant in scope has questionnaire data yet", "no_data")
        secret = settings.secret_key
        if kind == "reliability":
            items = load_items(
                session, study, actor, sites=sites, waves=req.waves, instrument_codes=req.instruments, secret=secret
            )
            n_rows = len(items)
            n_participants = int(items["participant"].nunique()) if n_rows else 0
            result = run_reliability(items, req)
        else:
            frame = load_frame(session, study, actor, sites, secret=secret)
            n_rows = len(frame)
            n_participants = int(frame["participant"].nunique()) if n_rows else 0
            from api.analyses.trial_runs import run_gee, run_missing_data, run_trial

            runner = {
                "trial": run_trial,
                "gee": run_gee,
                "missing-data": run_missing_data,
                "trajectory": run_trajectory,
                "moderation": run_moderation,
                "effect-sizes": run_effect_sizes,
                "responders": run_responders,
                "retention": run_retention,
                "attrition": run_attrition,
            }[kind]
            result = runner(frame, req, design)
    created = utcnow()
    plots = _render(
        settings.analysis_artifact_dir,
        study,
        run_id,
        result,
        req.formats,
        {
            "run_id": run_id,
            "kind": kind,
            "study_id": study.id,
            "created_at": created.isoformat(),
            "sites": scope,
            "actor_role": actor.role,
        },
    )
    tables = {name: _ensure_columns(kind, name, df) for name, df in result.tables.items()}
    record(
        session,
        actor,
        "analysis.run",
        "analysis_run",
        run_id,
        study_id=study.id,
        after={
            "kind": kind,
            "parameters": _parameters(req),
            "sites": scope,
            "rows": n_rows,
            "participants": n_participants,
            "plots": [p.url.rsplit("/", 1)[-1] for p in plots],
        },
    )
    session.commit()
    return AnalysisRun(
        run_id=run_id,
        kind=kind,
        study_id=study.id,
        created_at=created,
        parameters=_parameters(req),
        sites=scope,
        n_participants=n_participants,
        n_rows=n_rows,
        tables={k: records(v) for k, v in tables.items()},
        columns={k: [str(c) for c in v.columns] for k, v in tables.items()},
        values=_jsonable(result.values),
        warnings=result.warnings,
        plots=plots,
    )


def _render(
    artifact_dir: str | Path, study: Study, run_id: str, result: Result, formats, manifest: dict
) -> list[PlotLink]:
    out = run_dir(artifact_dir, study.id, run_id)
    out.mkdir(parents=True, exist_ok=True)
    links = []
    for name, fig in result.figures.items():
        for fmt in formats:
            filename = f"{_safe_name(name)}.{fmt}"
            fig.savefig(out / filename, dpi=150, format=fmt)
            links.append(PlotLink(name=name, format=fmt, url=f"/studies/{study.id}/analyses/runs/{run_id}/{filename}"))
    (out / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return links


MEDIA_TYPES = {"png": "image/png", "svg": "image/svg+xml"}


def artefact(
    session: Session, artifact_dir: str | Path, study: Study, actor: Actor, run_id: str, filename: str
) -> Path:
    """The file of a run's plot, if ``actor`` may see that run (404 otherwise).

    Run ids and file names are matched against strict patterns and the resolved path must stay
    inside the run's folder, so ``..`` or an absolute path never leaves it. A coordinator sees a
    run only when it covered their own sites and nothing else.
    """
    if not RUN_ID.fullmatch(run_id):
        raise NotFound(["path", "run_id"], "analysis run not found", "not_found")
    if not FILENAME.fullmatch(filename):
        raise NotFound(["path", "filename"], "file not found", "not_found")
    base = run_dir(artifact_dir, study.id, run_id).resolve()
    path = (base / filename).resolve()
    try:
        manifest = json.loads((base / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise NotFound(["path", "run_id"], "analysis run not found", "not_found") from None
    if base not in path.parents or not path.is_file():
        raise NotFound(["path", "filename"], "file not found", "not_found")
    if actor.role == "coordinator":
        covered = manifest.get("sites")
        own = {code for code, sid in study_design_sites(session, study).items() if actor.sees_site(sid)}
        if not covered or not set(covered) <= own:
            raise NotFound(["path", "run_id"], "analysis run not found", "not_found")
    return path


def study_design_sites(session: Session, study: Study) -> dict[str, int]:
    """Site code -> id of a study."""
    return {s.code: s.id for s in session.exec(select(Site).where(Site.study_id == study.id)).scalars()}


# ---- the whole report, for the command line ----------------------------------------------------


def parse_mcids(design: Design, pairs: list[str] | None) -> dict[str, float]:
    """``["pam13_activation=4"]`` -> ``{"pam13_activation": 4.0}``, each scale checked against the study."""
    out: dict[str, float] = {}
    for i, pair in enumerate(pairs or []):
        scale, sep, value = pair.partition("=")
        scale = scale.strip()
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not sep or not math.isfinite(number) or number <= 0:
            raise Unprocessable(["mcid", i], "expected SCALE=VALUE with a positive number", "value_error")
        out[check_scale(design, scale, ["mcid", i])] = number
    return out


def write_report(
    session: Session,
    study: Study,
    actor: Actor,
    outdir: str | Path,
    *,
    outcomes: list[str] | None = None,
    mcids: list[str] | None = None,
    fmt: str = "png",
    secret: str = "",
    followup: str | None = None,
    imputations: int = 20,
) -> dict[str, Path]:
    """Run :func:`analysis.report.run_all` on the study's current export and write it to ``outdir``.

    ``followup`` names the wave of the primary analysis, change and responders (default: the last
    wave; every table names it); ``imputations`` the number of the missing-data analysis.

    The cohort and item frames come from the exports service with ``actor``'s scope, exactly as
    the routes read them; the run is audited (``analysis.run``, kind ``report``).

    Returns
    -------
    dict
        Name -> written path, as :func:`analysis.report.run_all` returns it.

    Examples
    --------
    >>> paths = write_report(session, study, Actor.system(), "out/", outcomes=["phq9"])  # doctest: +SKIP
    >>> paths["report"]  # doctest: +SKIP
    PosixPath('out/report.md')
    """
    from analysis.report import run_all

    design = study_design(session, study)
    outcomes = [check_scale(design, s, ["outcome", i]) for i, s in enumerate(outcomes or [])]
    mcid_map = parse_mcids(design, mcids)
    if followup is not None:
        check_wave(design, followup, ["followup"])
        if followup == design.wave_codes[0]:
            raise Unprocessable(["followup"], "the follow-up wave must come after the baseline wave", "wave_order")
    if not 2 <= imputations <= 100:
        raise Unprocessable(["imputations"], "between 2 and 100 imputations", "out_of_range")
    if not has_responses(session, study, design, actor, None):
        raise Unprocessable(["study"], "no participant has questionnaire data yet", "no_data")
    frame = load_frame(session, study, actor, None, secret=secret)
    if frame.empty:
        raise Unprocessable(["study"], "no participant has questionnaire data yet", "no_data")
    items = load_items(session, study, actor, secret=secret)
    written = run_all(
        frame,
        outdir,
        scales=outcomes or None,
        mcids=mcid_map,
        items=items if len(items) else None,
        fmt=fmt,
        post_wave=followup,
        mi_imputations=imputations,
    )
    # Reproducibility appendix: the release, the schema revision and the analysis stack.
    from api.release import provenance, provenance_markdown

    report = Path(written["report"])
    report.write_text(report.read_text() + "\n" + provenance_markdown(provenance(session.connection())))
    record(
        session,
        actor,
        "analysis.run",
        "analysis_run",
        uuid.uuid4().hex,
        study_id=study.id,
        after={
            "kind": "report",
            "parameters": {
                "outcomes": outcomes,
                "mcids": mcid_map,
                "format": fmt,
                "followup": followup,
                "imputations": imputations,
            },
            "sites": scope_sites(design, actor, None),
            "rows": len(frame),
            "participants": int(frame["participant"].nunique()),
            "outdir": str(Path(outdir)),
        },
    )
    session.commit()
    return written
