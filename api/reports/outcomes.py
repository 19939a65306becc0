"""Sections of the report computed from the outcome data: Table 1, outcomes, harms, attrition."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

import numpy as np
import pandas as pd

import analysis
from analysis.change import scale_meta
from analysis.report import DEFAULT_SCALES
from analysis.trialreport import Variable, absent, figure_svg, p_text, table1, table1_html, table_html
from analysis.trialreport.figures import km_figure, numbers_at_risk, trajectory_figure
from api.reports.gather import ReportData


def scale_label(scale: str) -> str:
    """A scale's human-readable name (``PAM-13 activation``), from the instrument definitions."""
    label = scale_meta(scale).get("label") or scale
    return str(label)


def context_label(column: str) -> str:
    """``context_living_situation`` -> ``Living situation``."""
    text = column.removeprefix("context_").replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _baseline_people(data: ReportData) -> tuple[pd.DataFrame, list[Variable]]:
    people = data.people[["participant", "arm", "site_name"]].copy()
    variables: list[Variable] = []
    if data.sites is None and len(data.design.sites) > 1 or data.sites is not None and len(data.sites) > 1:
        variables.append(Variable("site_name", "Site", "categorical"))
    long = data.long
    if len(long):
        ctx = [c for c in long.columns if c.startswith("context_")]
        if ctx:
            first = long.groupby("participant")[ctx].first()
            people = people.join(first, on="participant")
            variables += [Variable(c, context_label(c), "categorical") for c in ctx]
        base = data.design.waves[0].code if data.design.waves else None
        b = long[(long["wave"] == base)]
        for scale in [s for s, waves in data.design.scales.items() if base in waves]:
            vals = b[b["scale"] == scale].groupby("participant")["value"].first()
            people[f"scale:{scale}"] = people["participant"].map(vals)
            variables.append(Variable(f"scale:{scale}", scale_label(scale)))
    return people, variables


def table1_section(data: ReportData) -> tuple[str, bool]:
    if data.people.empty:
        return absent("no participant allocated yet"), False
    people, variables = _baseline_people(data)
    t1 = table1(people, variables, arms=data.arms)
    sizes = people.groupby("arm").size().to_dict()
    data.extra["table1"] = t1
    base = data.design.waves[0].code if data.design.waves else "baseline"
    note = (
        f'<p class="note">Scores at {escape(base)}. Mean (SD), or median [IQR] where the pooled distribution is '
        "skewed (|skewness| &gt; 1); n (%) of participants with a value; missing: participants without one. "
        "No significance tests of baseline differences (CONSORT 2010, item 15).</p>"
    )
    return table1_html(t1, data.arms, sizes, caption="Table 1. Baseline characteristics by arm") + note, True


METHOD_NAMES = {
    "holm": "Holm-adjusted",
    "bh": "BH-adjusted",
    "bonferroni": "Bonferroni-adjusted",
    "hochberg": "Hochberg-adjusted",
}


@dataclass(frozen=True)
class Planned:
    """The outcome analyses the report runs: (scale, wave or None, family) in order, primary first."""

    outcomes: list[tuple[str, str | None, str]]
    mcids: dict[str, float]
    covariates: list[str]
    method: str
    status: str
    missing: tuple[str, ...] = ()  # planned outcomes without any data


def _outcome_plan(data: ReportData) -> Planned:
    """The locked plan's outcomes, families, MCIDs, covariates and adjustment; else the standard
    outcomes at the default time point, post hoc, with Holm across the secondary outcomes."""
    present = list(dict.fromkeys(data.long["scale"])) if len(data.long) else []
    plan = data.plan
    if plan is not None and plan.primary is not None:
        family_of = {s: f for f, scales in plan.families.items() for s in scales}
        outs = [(plan.primary[0], plan.primary[1], "primary")] + [
            (s, w, family_of.get(s, "secondary")) for s, w in plan.secondary
        ]
        method = {"fdr_bh": "bh"}.get(plan.multiplicity, plan.multiplicity)
        return Planned(
            [o for o in outs if o[0] in present],
            plan.mcids,
            plan.covariates,
            method,
            f"pre-specified in the locked analysis plan (version {plan.version})",
            tuple(o[0] for o in outs if o[0] not in present),
        )
    # Without a plan: the standard outcomes (primary first), else every scale collected.
    ordered = [s for s in DEFAULT_SCALES if s in present] or present
    outs = [(s, data.primary_wave, "primary" if i == 0 else "secondary") for i, s in enumerate(ordered)]
    return Planned(outs, {}, [], "holm", "post hoc: no analysis plan recorded")


def outcomes_section(data: ReportData) -> tuple[str, bool]:
    long = data.long
    if long.empty or long["value"].notna().sum() == 0:
        return absent("no outcome data recorded yet"), False
    if len(data.arms) < 2:
        return absent("fewer than two arms with participants: no comparison"), False
    planned = _outcome_plan(data)
    mcids, status = planned.mcids, planned.status
    if not planned.outcomes:
        return absent("none of the outcomes of the analysis plan has data yet"), False
    scales = [s for s, _, _ in planned.outcomes]
    problems = [f"{scale_label(s)}: in the analysis plan, but no data recorded" for s in planned.missing]
    covariates = [c for c in planned.covariates if c in long.columns]
    waves = [w for w, _ in data.waves]
    rows, es_rows, resp_rows, figs = [], [], [], []
    for s, wave, family in planned.outcomes:
        have = [w for w in waves if ((long["scale"] == s) & (long["wave"] == w) & long["value"].notna()).any()]
        post = wave if wave in have else (have[-1] if len(have) > 1 else None)
        if post is None or post == have[0]:
            problems.append(f"{scale_label(s)}: no follow-up data yet")
            continue
        try:
            anc = analysis.ancova(long, s, post, baseline_wave=have[0], covariates=covariates, reference=data.reference)
        except Exception as exc:  # noqa: BLE001 - one outcome must not hide the others
            problems.append(f"{scale_label(s)}: ANCOVA not estimable ({exc})")
            continue
        anc["family"] = family
        rows.append(anc)
        try:
            es = analysis.effect_sizes(long, s, post=post, pre=have[0], reference=data.reference)
            es_rows.append(es[es["comparison"] == "between"])
        except Exception:  # noqa: BLE001
            pass
        try:
            resp_rows.append(
                analysis.responders(long, s, post=post, pre=have[0], mcids=mcids or None, reference=data.reference)
            )
        except ValueError:
            pass  # no MCID for this scale
        meta = scale_meta(s)
        figs.append(
            figure_svg(
                trajectory_figure(long, s, scale_label(s), data.waves, better=meta["better"]),
                f"{scale_label(s)} by arm and wave",
            )
        )
    parts = [
        f'<p class="note">Analyses: {escape(status)}. Primary outcome: '
        f"{escape(scale_label(scales[0]))}. Reference arm: {escape(str(data.reference))}.</p>"
    ]
    if rows:
        anc = pd.concat(rows, ignore_index=True)
        method = planned.method if planned.method in ("holm", "bh", "bonferroni", "hochberg") else None
        if method is not None:
            anc = analysis.adjust_table(anc, family="family", method=method)
        else:
            anc["p_adjusted"] = anc["p"]  # the plan asked for no adjustment
        anc["prespecified"] = "pre-specified" if data.plan is not None else "post hoc"
        anc["outcome"] = anc["scale"].map(scale_label)
        anc["ci"] = [f"{lo:.2f} to {hi:.2f}" for lo, hi in zip(anc["ci_lower"], anc["ci_upper"], strict=True)]
        anc["role"] = anc["family"]
        if es_rows:
            es = pd.concat(es_rows, ignore_index=True)[["scale", "arm", "estimate", "ci_lower", "ci_upper"]]
            es = es.rename(columns={"estimate": "g", "ci_lower": "g_lo", "ci_upper": "g_hi"})
            anc = anc.merge(es, on=["scale", "arm"], how="left")
            anc["g_text"] = [
                "" if pd.isna(g) else f"{g:.2f} ({lo:.2f} to {hi:.2f})"
                for g, lo, hi in zip(anc["g"], anc["g_lo"], anc["g_hi"], strict=True)
            ]
        else:
            anc["g_text"] = ""
        parts.append(
            table_html(
                anc,
                {
                    "outcome": "Outcome",
                    "role": "Role",
                    "followup_wave": "Time point",
                    "arm": "Arm",
                    "reference": "vs",
                    "n": "n",
                    "n_reference": "n (ref.)",
                    "estimate": "Adjusted difference",
                    "ci": "95% CI",
                    "p": "p",
                    "p_adjusted": f"{METHOD_NAMES.get(planned.method, 'Unadjusted')} p",
                    "g_text": "Hedges' g (95% CI)",
                    "prespecified": "Analysis",
                },
                p_columns=("p", "p_adjusted"),
                key="outcomes",
                caption="Baseline-adjusted difference between arms at the named time point (ANCOVA"
                + (f", adjusted for {', '.join(covariates)}" if covariates else "")
                + "); p-values are adjusted within each family (role)",
            )
        )
    if resp_rows:
        rp = pd.concat(resp_rows, ignore_index=True)
        rp["outcome"] = rp["scale"].map(scale_label)
        rp["cell"] = [
            f"{k}/{n} ({100 * k / n:.0f}%)" if n else "" for k, n in zip(rp["improved"], rp["n"], strict=True)
        ]
        rp["rd"] = [
            "" if pd.isna(r) else f"{r:.2f} ({lo:.2f} to {hi:.2f})"
            for r, lo, hi in zip(rp["risk_difference"], rp["rd_ci_lower"], rp["rd_ci_upper"], strict=True)
        ]
        parts.append(
            table_html(
                rp,
                {
                    "outcome": "Outcome",
                    "followup_wave": "Time point",
                    "mcid": "MCID",
                    "arm": "Arm",
                    "cell": "Improved by at least the MCID",
                    "rd": "Risk difference vs reference (95% CI)",
                },
                decimals=1,
                key="responders",
                caption="Responders by the minimal clinically important difference",
            )
        )
    parts += [absent(p) for p in problems]
    parts += figs
    return "\n".join(parts), bool(rows)


def harms_section(data: ReportData) -> tuple[str, bool]:
    if data.people.empty:
        return absent("no participant allocated yet"), False
    t = analysis.harms_table(data.events, data.people[["participant", "arm"]])
    t = t[~t["measure"].isin(["relatedness"])]
    if data.events.empty:
        head = absent("no adverse events recorded")
    else:
        head = ""
    t["row"] = t["level"].astype(str).str.replace("_", " ")
    t["cell"] = [
        f"{k}/{n} ({100 * k / n:.1f}%); {e} event{'' if e == 1 else 's'}" if n else ""
        for k, n, e in zip(t["n_participants"], t["N"], t["n_events"], strict=True)
    ]
    wide = t.pivot_table(index=["measure", "row"], columns="arm", values="cell", aggfunc="first", sort=False)
    wide = wide.reset_index()
    cols = {"row": "Participants with"} | {a: a for a in data.arms if a in wide.columns}
    return head + table_html(
        wide,
        cols,
        key="harms",
        caption="Harms by arm: participants with at least one event / participants allocated (%), and events "
        "(CONSORT harms)",
    ), True


def attrition_section(data: ReportData) -> tuple[str, bool]:
    flow = data.extra.get("flow")
    if data.people.empty or not flow:
        return absent("no participant allocated yet"), False
    rows = []
    for a in flow["arms"]:
        for w in a["waves"]:
            pct = f"{100 * w['assessed'] / w['due']:.0f}%" if w["due"] else "not yet due"
            rows.append({"arm": a["arm"], "wave": w["wave"], "due": w["due"], "assessed": w["assessed"], "pct": pct})
    parts = [
        table_html(
            pd.DataFrame(rows),
            {"wave": "Wave", "arm": "Arm", "due": "Due (window closed)", "assessed": "Completed", "pct": "Completion"},
            key="completion",
            caption="Completion among participants for whom the wave is due",
        )
    ]
    p = data.people.copy()
    p["event"] = (p["status"].isin(("withdrawn", "lost_to_follow_up")) & p["status_days"].notna()).astype(int)
    p["duration"] = np.where(p["event"] == 1, p["status_days"], p["last_days"]).astype(float)
    p["duration"] = np.nan_to_num(p["duration"], nan=0.0).clip(min=0.0)
    if p["event"].sum() == 0:
        parts.append(absent("no withdrawal or loss to follow-up recorded: retention is complete so far"))
        return "\n".join(parts), True
    km = analysis.km_table(p, by="arm")
    times = [o for _, o in data.waves]
    risk = numbers_at_risk(p, times)
    risk.columns = ["arm", *[f"{w} (day {o})" for w, o in data.waves]]
    parts.append(figure_svg(km_figure(km), "Time to withdrawal or loss to follow-up by arm (Kaplan–Meier)"))
    parts.append(
        table_html(
            risk, {c: ("Arm" if c == "arm" else c) for c in risk.columns}, key="at_risk", caption="Numbers at risk"
        )
    )
    try:
        lr = analysis.logrank(p, "arm")
        parts.append(f'<p class="note">Log-rank test: p = {escape(p_text(float(lr["p"].iloc[0])))}.</p>')
    except Exception:  # noqa: BLE001 - a test that cannot run is left out, not the curves
        pass
    return "\n".join(parts), True
