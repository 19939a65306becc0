"""The report's "What works for whom" section: the study's realist table, drawn.

For every arm against the reference arm the section shows :func:`api.context.realist.realist_table`
computed as ``GET /studies/{id}/realist-table?arm=…&reference=…`` computes it for the same reader
(the same frame, CMO configurations, defaults and arm labels): the configurations, their
moderation estimates and the qualitative evidence of coded mechanisms. A reader blind to the arms
gets the route's neutral letters (shown as ``Arm A``), never an arm's name or kind.

Quotes come from de-identified transcripts; pseudonymous study codes are taken out of them too,
since the report prints none.

Examples
--------
>>> _ci(-1.234, -2.5, 0.04)
'-1.23 (-2.50 to 0.04)'
>>> _ci(float("nan"), 0.0, 1.0)
''
"""

from __future__ import annotations

import math
import re
from html import escape
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlmodel import Session

from analysis.trialreport import absent, table_html
from api.errors import ApiError
from api.studies.models import Study

if TYPE_CHECKING:
    from api.reports.gather import ReportData

#: The route's defaults, which the report keeps so that its numbers are the route's.
FDR, MIN_PER_CELL = 0.05, 5

VERDICTS = {
    "supports": "supports",
    "contradicts": "contradicts",
    "inconclusive": "inconclusive",
    "not_estimable": "not estimable",
}
DIRECTIONS = {
    "positive": "larger in the context",
    "negative": "smaller (more negative) in the context",
    "any": "different in the context",
}


def _ci(est: Any, lo: Any, hi: Any) -> str:
    """``estimate (lower to upper)`` with two decimals; blank when not estimated."""
    if est is None or lo is None or hi is None or any(isinstance(v, float) and math.isnan(v) for v in (est, lo, hi)):
        return ""
    return f"{est:.2f} ({lo:.2f} to {hi:.2f})"


def _share(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.0f}%"


def scrub_codes(text: str, codes: set[str]) -> str:
    """``text`` with every study code in ``codes`` replaced by ``[participant]``.

    >>> scrub_codes("DEMO-001: I felt less alone (DEMO-001)", {"DEMO-001"})
    '[participant]: I felt less alone ([participant])'
    """
    if not codes or not text:
        return text
    pattern = re.compile("|".join(re.escape(c) for c in sorted(codes, key=len, reverse=True) if c))
    return pattern.sub("[participant]", text)


def collect(session: Session, study: Study, data: ReportData, raw_long: pd.DataFrame) -> dict[str, Any]:
    """The realist tables the section draws: one per arm against ``data.reference``.

    ``raw_long`` is the ``long`` frame as the exports service gives it to the reader (arm codes,
    or neutral letters while blinded), the frame the route reads for the same sites.
    """
    from api.context import realist, service
    from api.sap.blinding import arm_labels as route_labels

    # Configurations first: without them nothing else (adherence, quotes) needs reading.
    if not service.list_cmos(session, study):
        return {"reason": "no context–mechanism–outcome (CMO) configurations recorded", "tables": []}
    if raw_long.empty:
        return {"reason": "no questionnaire data yet", "tables": []}
    rd = realist.realist_data(session, study, data.actor, raw_long)
    codes = route_labels(session, study.id, data.actor)  # what the route's arm= and reference= take
    code_of = {label: codes[i] for i, label in data.arm_labels.items() if i in codes}
    tables = []
    for arm in data.arms:
        if arm == data.reference or arm not in code_of or data.reference not in code_of:
            continue
        query, ref = code_of[arm], code_of[data.reference]
        entry: dict[str, Any] = {"arm": arm, "reference": data.reference, "query": (query, ref)}
        try:
            entry["table"] = realist.realist_table(
                rd, query, ref, fdr=FDR, min_per_cell=MIN_PER_CELL, longitudinal=True
            )
        except (ValueError, ApiError) as exc:
            entry["error"] = str(exc)
        tables.append(entry)
    people = set(raw_long["participant"].astype(str))
    return {"reason": None, "tables": tables, "codes": people, "cmos": rd.cmos}


def _configurations(cmos: list[dict[str, Any]]) -> str:
    from api.context.realist import describe
    from api.reports.outcomes import scale_label

    rows = [
        {
            "cmo": f"{c['title']} ({c['code']})",
            "context": describe(c["context"]),
            "mechanism": f"{c['mechanism']['kind']}: {c['mechanism']['ref']}",
            "outcome": f"{scale_label(c['outcome'])} at {c['outcome_wave']}",
            "direction": DIRECTIONS.get(c["direction"], c["direction"]),
            "prespecified": "pre-specified" if c["prespecified"] else "exploratory",
            "status": str(c["status"]).replace("_", " "),
        }
        for c in cmos
    ]
    return table_html(
        pd.DataFrame(rows),
        {
            "cmo": "Configuration",
            "context": "Context (who is in it)",
            "mechanism": "Mechanism",
            "outcome": "Outcome",
            "direction": "Hypothesis: the arm effect is …",
            "prespecified": "Analysis",
            "status": "Status recorded",
        },
        key="cmos",
        caption="Context–mechanism–outcome configurations recorded for the study",
    )


def _estimates(entry: dict[str, Any]) -> str:
    t: pd.DataFrame = entry["table"]
    out = pd.DataFrame(
        {
            "cmo": t["cmo"],
            "n": ["" if pd.isna(i) else f"{int(i)} / {int(o)}" for i, o in zip(t["n_in"], t["n_out"], strict=True)],
            "effect_in": [_ci(*r) for r in t[["effect_in", "effect_in_ci_lower", "effect_in_ci_upper"]].to_numpy()],
            "effect_out": [_ci(*r) for r in t[["effect_out", "effect_out_ci_lower", "effect_out_ci_upper"]].to_numpy()],
            "shrunk": [
                "" if pd.isna(i) else f"{i:.2f} / {o:.2f}" for i, o in zip(t["shrunk_in"], t["shrunk_out"], strict=True)
            ],
            "moderation": [_ci(*r) for r in t[["moderation", "ci_lower", "ci_upper"]].to_numpy()],
            "p": t["p"],
            "p_bh": t["p_bh"],
            "verdict": [VERDICTS.get(v, v) for v in t["verdict"]],
        }
    )
    caption = (
        f"{entry['arm']} vs {entry['reference']}: arm effect in and outside each context, and the moderation "
        "(effect in the context minus effect outside it)"
    )
    html = table_html(
        out,
        {
            "cmo": "Configuration",
            "n": "n in / out",
            "effect_in": "Arm effect in the context (95% CI)",
            "effect_out": "Arm effect outside it (95% CI)",
            "shrunk": "Shrunken effect in / out",
            "moderation": "Moderation (95% CI)",
            "p": "p",
            "p_bh": "p (BH)",
            "verdict": "Verdict",
        },
        p_columns=("p", "p_bh"),
        key=f"realist:{entry['arm']}",
        caption=caption,
    )
    notes = [f"{c}: {n}" for c, n in zip(t["cmo"], t["note"], strict=True) if n]
    if notes:
        html += absent("not estimable — " + "; ".join(notes))
    return html


def _slopes(entry: dict[str, Any]) -> str:
    t: pd.DataFrame = entry["table"]
    out = pd.DataFrame(
        {
            "cmo": t["cmo"],
            "n": [
                "" if pd.isna(i) else f"{int(i)} / {int(o)}"
                for i, o in zip(t["slope_n_in"], t["slope_n_out"], strict=True)
            ],
            "slope_in": [_ci(*r) for r in t[["slope_in", "slope_in_ci_lower", "slope_in_ci_upper"]].to_numpy()],
            "slope_out": [_ci(*r) for r in t[["slope_out", "slope_out_ci_lower", "slope_out_ci_upper"]].to_numpy()],
            "moderation": [_ci(*r) for r in t[["slope_moderation", "slope_ci_lower", "slope_ci_upper"]].to_numpy()],
            "p": t["slope_p"],
            "p_bh": t["slope_p_bh"],
            "random": t["slope_random"].fillna(""),
        }
    )
    html = table_html(
        out,
        {
            "cmo": "Configuration",
            "n": "n in / out",
            "slope_in": "Slope difference in the context (95% CI)",
            "slope_out": "Slope difference outside it (95% CI)",
            "moderation": "Arm × time × context (95% CI)",
            "p": "p",
            "p_bh": "p (BH)",
            "random": "Random part per participant",
        },
        p_columns=("p", "p_bh"),
        key=f"realist-slopes:{entry['arm']}",
        caption=f"{entry['arm']} vs {entry['reference']} over every wave: the arm's change per year minus the "
        "reference arm's, in and outside each context, and their difference (points per year)",
    )
    notes = [f"{c}: {n}" for c, n in zip(t["cmo"], t["slope_note"], strict=True) if n]
    if notes:
        html += absent("not estimable over time — " + "; ".join(notes))
    return html


def _qualitative(entry: dict[str, Any], codes: set[str]) -> str:
    t: pd.DataFrame = entry["table"]
    coded = t[t["mechanism"].str.startswith("code:")]
    if coded.empty:
        return ""
    rows = [
        {
            "cmo": r.cmo,
            "code": r.mechanism.removeprefix("code:"),
            "share_in": _share(r.code_share_in),
            "share_out": _share(r.code_share_out),
            "quotes_in": scrub_codes(r.quotes_in, codes),
            "quotes_out": scrub_codes(r.quotes_out, codes),
        }
        for r in coded.itertuples()
    ]
    return table_html(
        pd.DataFrame(rows),
        {
            "cmo": "Configuration",
            "code": "Mechanism (code)",
            "share_in": "Interviewed in the context with the code",
            "share_out": "Interviewed outside it with the code",
            "quotes_in": "Quotes, in the context",
            "quotes_out": "Quotes, outside it",
        },
        key=f"realist-qualitative:{entry['arm']}",
        caption=f"{entry['arm']} and {entry['reference']}: qualitative evidence of the coded mechanisms "
        "(share of interviewed participants whose interview carries the code)",
    )


def section(data: ReportData) -> tuple[str, bool]:
    """The section's HTML and whether it has data (see the module docstring)."""
    info = data.extra.get("realist") or {"reason": "no context–mechanism–outcome (CMO) configurations recorded"}
    if info.get("reason"):
        return absent(info["reason"]), False
    sid = data.study.id
    parts = [
        '<p class="note">Each configuration says for whom, in which context, the programme should work '
        "and through which mechanism. It is tested in two ways, for each arm against the reference arm.</p>"
        '<p class="note"><b>At the named wave</b>: the arm × context interaction on the outcome, adjusted for '
        "the outcome's baseline value (ANCOVA; t intervals on the residual degrees of freedom). <b>Arm effect</b>: "
        "the arm's mean outcome minus the reference arm's, among the participants in the context and among "
        "those outside it, in the outcome's points (where lower is better, a negative effect favours the arm). "
        "<b>Moderation</b>: effect in the context minus effect outside it. <b>Shrunken</b> effects are pulled "
        "towards their pooled mean (partial pooling), so that a small subgroup's estimate is not over-read. "
        "<b>Verdict</b>: supports / contradicts (significant after the adjustment, in / against the "
        "hypothesised direction), inconclusive, or not estimable (fewer than "
        f"{MIN_PER_CELL} participants of an arm in or out of the context).</p>"
        '<p class="note"><b>Over every wave</b>: one mixed model of all the outcome\'s scores (random intercept '
        "and slope per participant, or intercept only when the two cannot be told apart; site as a fixed effect "
        "unless the context is a site's; REML, Satterthwaite degrees of freedom). <b>Slope difference</b>: the "
        "arm's change per year minus the reference arm's; <b>arm × time × context</b>: that difference in the "
        "context minus outside it, in outcome points per year.</p>"
        f'<p class="note"><b>p (BH)</b>: Benjamini–Hochberg adjusted across each table\'s rows (false-discovery '
        f"rate {FDR:g}). These are the numbers of "
        f"<code>GET /studies/{sid}/realist-table?arm=…&amp;reference=…&amp;longitudinal=true</code> for the "
        "same reader.</p>",
        _configurations(info["cmos"]),
    ]
    present = False
    for entry in info["tables"]:
        parts.append(f"<h3>{escape(entry['arm'])} vs {escape(entry['reference'])}</h3>")
        if "error" in entry:
            parts.append(absent(f"not estimable: {entry['error']}"))
            continue
        present = True
        parts.append(_estimates(entry))
        parts.append(_slopes(entry))
        parts.append(_qualitative(entry, info.get("codes", set())))
    if not info["tables"]:
        parts.append(absent("fewer than two arms with labels for this reader: no comparison"))
    if data.masked:
        parts.append(
            '<p class="note">The study is blinded to this reader: arms are neutral labels and the reference '
            "arm is the first label, not necessarily the control arm.</p>"
        )
    return "\n".join(p for p in parts if p), present
