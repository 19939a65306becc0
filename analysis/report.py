"""One call that runs the standard analyses and writes tables, plots and a short Markdown report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from . import attrition, change, missing, survival, trial
from .frame import load_long, wave_order
from .multiplicity import adjust_table, format_p
from .plots import plot_forest, plot_km, plot_trajectory
from .reliability import reliability
from .trajectories import ModerationModel, TrajectoryModel

__all__ = ["run_all", "DEFAULT_SCALES"]

#: Scales analysed by default when present in the frame (primary outcome first).
DEFAULT_SCALES = ("pam13_activation", "semcd6", "phq9", "gad7", "lsns6")


def _is_p(name: str) -> bool:
    return name == "p" or name.endswith("_p") or name.startswith("p_")


def _pfmt(p: float) -> str:
    """``= 0.042`` or ``< 0.001`` for a sentence."""
    f = format_p(p)
    return f if f.startswith("<") else f"= {f}"


def _md(df: pd.DataFrame, decimals: int = 2) -> str:
    """A DataFrame as a Markdown table (no extra dependency); p-values print as ``< 0.001``, never ``0.00``."""
    d = df.copy()
    for c in d.columns:
        if _is_p(str(c)) and pd.api.types.is_numeric_dtype(d[c]):
            d[c] = d[c].map(format_p)
        elif pd.api.types.is_float_dtype(d[c]):
            d[c] = d[c].map(lambda v: "" if pd.isna(v) else f"{v:.{decimals}f}")
    head = "| " + " | ".join(map(str, d.columns)) + " |"
    sep = "|" + "|".join("---" for _ in d.columns) + "|"
    body = ["| " + " | ".join(map(str, r)) + " |" for r in d.astype(str).itertuples(index=False)]
    return "\n".join([head, sep, *body])


def run_all(
    frame,
    outdir: str | Path,
    *,
    scales: Sequence[str] | None = None,
    moderators: Sequence[str] | None = None,
    mcids: Mapping[str, float] | None = None,
    post_wave: str | None = None,
    items: pd.DataFrame | None = None,
    random: str = "slope",
    fmt: str = "png",
    mi_imputations: int = 20,
    seed: int = 0,
) -> dict[str, Path]:
    """Run the standard analyses and write CSV tables, plots and ``report.md`` into ``outdir``.

    Parameters
    ----------
    frame : DataFrame or path
        The ``long`` export.
    scales : sequence of str, optional
        Outcomes to model (default: :data:`DEFAULT_SCALES` present in the frame).
    moderators : sequence of str, optional
        Columns for what-works-for-whom models of the first scale (default: every ``code:*``
        column and ``context_living_situation`` when present).
    mcids : mapping, optional
        Study MCIDs for scales without a published one (``{"pam13_activation": 4}``).
    post_wave : str, optional
        The follow-up wave of the primary analysis (ANCOVA), change and responders (default: the
        last wave); every table names it.
    items : DataFrame, optional
        The ``items`` export, for reliability.
    random : {"slope", "intercept"}
        Random part of the trajectory models (falls back to intercept if the slope model fails).
    mi_imputations : int
        Imputations of the missing-data sensitivity analysis (multiple imputation and tipping point).
    seed : int
    fmt : {"png", "svg"}

    Returns
    -------
    dict
        Name -> written path (``report`` is the Markdown file).

    Examples
    --------
    >>> import tempfile
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> long = long_from_synthetic(simulate_cohort(80, seed=4))
    >>> paths = run_all(long, tempfile.mkdtemp(), scales=["phq9"], moderators=[], post_wave="m6", mi_imputations=5)
    >>> "table:ancova" in paths and "table:tipping_point" in paths
    True
    """
    long = load_long(frame)
    out = Path(outdir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    md: list[str] = ["# Peerlens analysis report", ""]

    def table(name: str, df: pd.DataFrame) -> pd.DataFrame:
        p = out / "tables" / f"{name}.csv"
        df.to_csv(p, index=False)
        written[f"table:{name}"] = p
        return df

    def plot(name: str, fig) -> None:
        p = out / "plots" / f"{name}.{fmt}"
        fig.savefig(p, dpi=150)
        written[f"plot:{name}"] = p
        md.append(f"![{name}](plots/{p.name})")
        md.append("")

    present = set(long["scale"].unique())
    scales = [s for s in (scales or DEFAULT_SCALES) if s in present] or sorted(present)
    waves = wave_order(long)
    post = post_wave or waves[-1]
    n_part = long["participant"].nunique()
    md += [
        f"{n_part} participants, {long['arm'].nunique()} arms, {long['site'].nunique()} sites, "
        f"waves: {', '.join(waves)}.",
        "",
    ]

    # Retention and attrition first: they qualify every other result.
    md += ["## Retention and attrition", ""]
    comp = table("completion_by_arm", attrition.completion(long, by=["arm"]))
    table("completion_by_site", attrition.completion(long, by=["site"]))
    comp["cell"] = [
        f"{pct:.0f}% ({c}/{d})" if d else "not yet due"
        for pct, c, d in zip(comp["completed_pct"], comp["completed"], comp["due"], strict=True)
    ]
    md += [
        f"Completion per wave among participants for whom the wave is due (window closed); denominator: "
        f"{comp['denominator'].iloc[0]}.",
        "",
        _md(comp.pivot_table(index="wave", columns="arm", values="cell", aggfunc="first", sort=False).reset_index()),
        "",
    ]
    drop = survival.dropout_frame(long)
    if drop["event"].sum() > 0:
        km = table("km_dropout_by_arm", survival.km_table(drop, by="arm"))
        table("km_dropout_by_site", survival.km_table(drop, by="site"))
        lr = pd.concat([survival.logrank(drop, "arm"), survival.logrank(drop, "site")], ignore_index=True)
        table("logrank_dropout", lr)
        plot("km_dropout_by_arm", plot_km(km, title="Retention by arm"))
        md += [_md(lr, 3), ""]
        try:
            cox = table("cox_dropout", survival.cox_dropout(long, covariates=["arm", "site"]))
            md += [
                "Cox model of time to dropout:",
                "",
                _md(cox[["term", "hr", "hr_ci_lower", "hr_ci_upper", "p"]], 3),
                "",
            ]
        except Exception as exc:  # noqa: BLE001 - a report must not die on one table
            md += [f"Cox model of dropout not estimable: {exc}", ""]
    else:
        md += ["No dropout recorded.", ""]
    dbb = table("dropout_by_baseline", attrition.dropout_by_baseline(long, scales=scales))
    md += [
        "Baseline scores of participants who dropped out vs stayed:",
        "",
        _md(dbb[["variable", "n_dropout", "n_retained", "mean_dropout", "mean_retained", "smd", "p"]]),
        "",
    ]

    # Trajectories.
    md += ["## Trajectories", ""]
    models: dict[str, TrajectoryModel] = {}
    for s in scales:
        try:
            m = TrajectoryModel(s, random=random).fit(long)
            if random == "slope" and not m.fit_statistics["converged"].iloc[0]:
                m = TrajectoryModel(s, random="intercept").fit(long)
        except Exception:  # noqa: BLE001 - fall back to the simpler random part
            try:
                m = TrajectoryModel(s, random="intercept").fit(long)
            except Exception as exc:  # noqa: BLE001
                md += [f"### {s}", "", f"Not estimable: {exc}", ""]
                continue
        models[s] = m
        table(f"trajectory_{s}_fixed", m.summary)
        table(f"trajectory_{s}_variance", m.variance_components)
        table(f"trajectory_{s}_predicted", m.predicted_means)
        sl = table(f"trajectory_{s}_slopes", m.slopes())
        md += [
            f"### {s}",
            "",
            f"Random {m.random}; ICC {m.icc:.2f}.",
            "",
            _md(sl[["arm", "slope", "ci_lower", "ci_upper", "diff", "diff_ci_lower", "diff_ci_upper", "diff_p"]]),
            "",
        ]
        for w in m.warnings:
            md += [f"> {w}", ""]
        plot(f"trajectory_{s}", plot_trajectory(m))

    # The primary analysis at the named follow-up, its longitudinal companion and multiplicity.
    md += [f"## Primary analysis at {post} (baseline-adjusted ANCOVA)", ""]
    anc_all = []
    for s in scales:
        try:
            anc_all.append(trial.ancova(long, s, followup=post))
        except Exception:  # noqa: BLE001 - a scale may lack follow-up data
            continue
    if anc_all:
        anc = pd.concat(anc_all, ignore_index=True)
        anc["family"] = ["primary" if sc == scales[0] else "secondary" for sc in anc["scale"]]
        anc = adjust_table(anc, family="family", method="holm")
        table("ancova", anc)
        md += [
            f"Difference from {anc['reference'].iloc[0]} at {post} adjusted for the baseline score. The first scale "
            "is primary; secondary outcomes carry Holm-adjusted p-values (p_adjusted) across the family.",
            "",
            _md(
                anc[
                    [
                        "scale",
                        "arm",
                        "n",
                        "n_reference",
                        "n_excluded",
                        "estimate",
                        "ci_lower",
                        "ci_upper",
                        "p",
                        "p_adjusted",
                    ]
                ]
            ),
            "",
        ]
        try:
            cl = table("clda", trial.clda(long, scales[0]))
            md += [
                f"Constrained longitudinal analysis of {scales[0]} (all waves, common baseline mean, unstructured "
                "covariance, Satterthwaite df): effect at each follow-up wave.",
                "",
                _md(cl[["followup_wave", "arm", "estimate", "ci_lower", "ci_upper", "df", "p"]]),
                "",
            ]
        except Exception as exc:  # noqa: BLE001
            md += [f"cLDA not estimable: {exc}", ""]
        # Missing data: MI under MAR (with baseline isolation as auxiliary when measured) and a tipping point.
        aux = [a for a in ("lsns6",) if a in present and a != scales[0]]
        try:
            imps = missing.impute(long, scales[0], m=mi_imputations, auxiliary=aux, seed=seed)
            mi = table(
                "multiple_imputation",
                missing.multiple_imputation(long, scales[0], followup=post, m=mi_imputations, imputations=imps),
            )
            tp = table(
                "tipping_point",
                missing.tipping_point(long, scales[0], post, m=mi_imputations, auxiliary=aux, seed=seed),
            )
            tip = tp["tipping_point"].iloc[0]
            md += [
                "### Missing data",
                "",
                f"Multiple imputation ({mi_imputations} imputations by chained equations within arm"
                + (f", baseline {', '.join(aux)} as auxiliary: dropout is related to isolation" if aux else "")
                + ") under missing at random, pooled by Rubin's rules:",
                "",
                _md(mi[["arm", "n_imputed", "estimate", "ci_lower", "ci_upper", "p", "fmi"]]),
                "",
                f"Tipping point (delta-adjusted imputation of {tp['arm'].iloc[0]}'s missing {post} values): "
                + (
                    f"the MAR conclusion changes once dropouts are assumed {tip:+.2f} points different."
                    if pd.notna(tip)
                    else "the MAR conclusion holds over the whole range of shifts examined."
                ),
                "",
                _md(tp[["delta", "estimate", "ci_lower", "ci_upper", "p", "same_conclusion"]]),
                "",
            ]
        except Exception as exc:  # noqa: BLE001
            md += [f"Missing-data sensitivity analysis not estimable: {exc}", ""]

    # What works for whom.
    if scales:
        mods = (
            list(moderators)
            if moderators is not None
            else [c for c in long.columns if c.startswith("code:")]
            + [c for c in ("context_living_situation",) if c in long.columns]
        )
        if mods:
            md += ["## What works for whom", ""]
        for mod in mods:
            try:
                mm = ModerationModel(scales[0], mod, random="intercept").fit(long)
            except Exception as exc:  # noqa: BLE001
                md += [f"{mod}: not estimable ({exc})", ""]
                continue
            safe = mod.replace(":", "_")
            eff = table(f"moderation_{scales[0]}_{safe}", adjust_table(mm.subgroup_effects, method="bh"))
            table(f"moderation_{scales[0]}_{safe}_slopes", mm.subgroup_slopes)
            it = mm.interaction_test.iloc[0]
            md += [
                f"### {scales[0]} by {mod}",
                "",
                f"Interaction (arm × time × {mod}): χ² = {it['chisq']:.2f}, df = {int(it['df'])}, p {_pfmt(it['p'])}. "
                "Subgroup effects carry Benjamini–Hochberg adjusted p-values (p_adjusted).",
                "",
                _md(eff[["level", "arm", "n_participants", "effect", "ci_lower", "ci_upper", "p", "p_adjusted"]]),
                "",
            ]
            plot(f"forest_{scales[0]}_{safe}", plot_forest(eff))

    # Change and responders.
    md += [f"## Change from baseline to {post}", ""]
    es_all, resp_all = [], []
    for s in scales:
        try:
            es_all.append(change.effect_sizes(long, s, post=post))
        except Exception:  # noqa: BLE001 - a scale may lack post-wave data
            continue
        try:
            resp_all.append(change.responders(long, s, post=post, mcids=mcids))
        except ValueError:
            pass  # no MCID for this scale
    if es_all:
        es = table("effect_sizes", pd.concat(es_all, ignore_index=True))
        md += [
            _md(
                es[
                    [
                        "scale",
                        "followup_wave",
                        "comparison",
                        "arm",
                        "n",
                        "mean_change",
                        "effect",
                        "estimate",
                        "ci_lower",
                        "ci_upper",
                    ]
                ]
            ),
            "",
        ]
    if resp_all:
        rp = table("responders", pd.concat(resp_all, ignore_index=True))
        md += [
            f"Responders at {post} (improved by at least the MCID since baseline):",
            "",
            _md(
                rp[
                    [
                        "scale",
                        "arm",
                        "mcid",
                        "n",
                        "improved",
                        "improved_prop",
                        "risk_difference",
                        "rd_ci_lower",
                        "rd_ci_upper",
                    ]
                ]
            ),
            "",
        ]

    if items is not None and len(items):
        md += ["## Reliability", ""]
        rel = table("reliability", reliability(items))
        md += [_md(rel, 3), ""]

    md += [
        "## Methods",
        "",
        "Linear mixed models (REML; optimum checked by the gradient, several optimisers) of each outcome on "
        "time in years × arm with site as a fixed effect and a random intercept (and slope) per participant; "
        "Satterthwaite degrees of freedom for t-based tests and intervals; predicted means are averaged over "
        f"participants' covariates. Primary analysis: ANCOVA at {post} adjusted for baseline; cLDA as its "
        "longitudinal companion; multiple imputation (chained equations, Rubin's rules) and a delta-adjusted "
        "tipping point for missing-not-at-random dropout. Secondary outcomes: Holm; subgroups: "
        "Benjamini–Hochberg. Completion among participants due. Retention: Kaplan–Meier, log-rank, Cox "
        "(lifelines). Effect sizes: Cohen's d_av within arms, Hedges' g on change scores between arms.",
        "",
    ]
    rp = out / "report.md"
    rp.write_text("\n".join(md), encoding="utf-8")
    written["report"] = rp
    return written
