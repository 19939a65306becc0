"""The report's sections, in order: a registry other domains add to.

A section is a key, a title and a function ``build(data: ReportData) -> (html, present)``; the
rendering itself lives in the pure library (:mod:`analysis.trialreport`). A section whose data do
not exist yet says so (``absent(...)``) and keeps its place. Another domain contributes a section
by registering it (``register("delivery", "Intervention and process", build, before="attrition")``).
What works for whom (:mod:`api.reports.forwhom`) and the joint displays
(:mod:`api.reports.jointdisplays`) draw the context and transcripts domains' tables.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

import pandas as pd

from analysis.trialreport import EXCLUSION_LABELS, absent, flow_counts, flow_svg, table_html
from api.reports import forwhom, jointdisplays
from api.reports.gather import ReportData
from api.reports.outcomes import attrition_section, harms_section, outcomes_section, table1_section
from api.reports.process import intervention_section

Build = Callable[[ReportData], tuple[str, bool]]


@dataclass(frozen=True)
class SectionSpec:
    key: str
    title: str
    build: Build


SECTIONS: list[SectionSpec] = []


def register(key: str, title: str, build: Build, *, before: str | None = None) -> None:
    """Add (or replace) a section; ``before`` places it ahead of an existing key."""
    spec = SectionSpec(key, title, build)
    for i, s in enumerate(SECTIONS):
        if s.key == key:
            SECTIONS[i] = spec
            return
    keys = [s.key for s in SECTIONS]
    SECTIONS.insert(keys.index(before) if before in keys else len(SECTIONS), spec)


# ---- participant flow ----------------------------------------------------------------------------


def flow_data(data: ReportData) -> dict:
    """The CONSORT counts of :func:`analysis.trialreport.flow_counts` for this study."""
    entries = [e for e in data.screening if e.participant_id not in data.voided_ids]  # voided: in no count
    scr = pd.DataFrame([(e.outcome, e.reason) for e in entries], columns=["outcome", "reason"])
    long = data.long
    assessed = (
        long.loc[long["value"].notna(), ["participant", "wave"]].drop_duplicates()
        if len(long)
        else pd.DataFrame(columns=["participant", "wave"])
    )
    order = {a: i for i, a in enumerate(data.arms)}
    people = data.people.sort_values("arm", key=lambda c: c.map(order), kind="stable")
    return flow_counts(
        scr if entries else None,
        people,
        assessed,
        waves=data.waves,
        primary_wave=data.primary_wave,
        participant_flow=data.flow,
    )


def _flow(data: ReportData) -> tuple[str, bool]:
    if data.people.empty and not data.screening:
        return absent("no participant allocated and no screening log recorded"), False
    flow = flow_data(data)
    if data.masked:  # discontinuing the intervention happens in intervention arms only: it would name them
        for a in flow["arms"]:
            a["discontinued"], a["discontinued_reasons"] = None, {}
    data.extra["flow"] = flow
    parts = [f'<div class="flow">{flow_svg(flow)}</div>']
    notes = []
    if flow["assessed"] is None:
        notes.append(absent("no screening log recorded: the diagram starts at randomisation"))
    if data.masked:
        notes.append(
            absent(
                "receipt and discontinuation of the allocated intervention are withheld while the study is "
                "blinded to this reader: they tell the intervention arms from the control arm"
            )
        )
    elif not data.received_known:
        notes.append(absent("no delivery records: receipt of the allocated intervention is not recorded"))
    voided = flow.get("voided") or 0
    notes.append(
        '<p class="note">Discontinued intervention, withdrew from follow-up and withdrew consent for use of data '
        "are the withdrawals recorded for each participant, with their reasons; lost to follow-up is the "
        "participant's status. At each wave every allocated participant is counted once: assessed, withdrew, "
        "lost, consent withdrawn, missed the wave (its window closed without data) or not yet due. Analysed: "
        f"participants with the primary outcome at {escape(str(flow['baseline_wave']))} and "
        f"{escape(str(flow['primary_wave']))} whose consent for use of data stands."
        + (
            f' <span data-count="voided">{voided} participant{"s" if voided != 1 else ""} entered in error '
            f"(voided) {'are' if voided != 1 else 'is'} in no count.</span>"
            if voided
            else ""
        )
        + "</p>"
    )
    if flow["assessed"] is not None:
        rows = []
        for k, label in EXCLUSION_LABELS.items():
            for reason, n in flow["excluded_by"][k]["reasons"].items():
                rows.append({"why": label, "reason": reason, "n": n})
        if rows:
            parts.append(
                table_html(
                    pd.DataFrame(rows),
                    {"why": "Excluded before randomisation", "reason": "Reason", "n": "n"},
                    key="screening_reasons",
                    caption="Screening log: reasons for exclusion",
                )
            )
    return "\n".join(parts + notes), True


# ---- reproducibility -------------------------------------------------------------------------------


def _reproducibility(data: ReportData) -> tuple[str, bool]:
    prov = data.extra.get("provenance", {})
    plan = data.plan
    rows = [
        ("Peerlens", str(prov.get("peerlens", ""))),
        ("Database schema", str(prov.get("schema_revision") or "not recorded")),
        ("Python", str(prov.get("python", ""))),
        ("Libraries", ", ".join(f"{k} {v}" for k, v in (prov.get("packages") or {}).items() if v)),
        ("Data snapshot (SHA-256)", data.extra.get("data_hash", "")),
        (
            "Analysis plan",
            "no analysis plan recorded"
            if plan is None
            else f"version {plan.version}, locked {plan.locked_at}, SHA-256 {plan.hash or 'not recorded'}",
        ),
        ("Random seeds", "none: no analysis in this report draws random numbers"),
        ("Arm labels", "neutral (the study is blinded to this reader)" if data.masked else "arm names"),
        ("Unblinded", "not unblinded" if data.unblinded_at is None else f"unblinded at {data.unblinded_at}"),
        ("Sites covered", "every site" if data.sites is None else (", ".join(data.sites) or "none")),
        ("Regenerate with", data.extra.get("command", "")),
    ]
    counts = Counter(s.outcome for s in data.screening)
    rows.append(
        (
            "Rows read",
            f"{len(data.long)} scores, {len(data.people)} participants, "
            f"{sum(counts.values())} screening entries, {len(data.events)} adverse events",
        )
    )
    body = "".join(f"<tr><th scope=row>{escape(k)}</th><td><code>{escape(v)}</code></td></tr>" for k, v in rows)
    return f'<table data-table="reproducibility"><tbody>{body}</tbody></table>', True


register("flow", "Participant flow (CONSORT 2010)", _flow)
register("baseline", "Baseline characteristics (Table 1)", table1_section)
register("outcomes", "Outcomes", outcomes_section)
register("harms", "Harms", harms_section)
register("intervention", "Intervention and process (TIDieR, dose, fidelity)", intervention_section)
register("for_whom", "What works for whom", forwhom.section)
register("joint_displays", "Joint displays", jointdisplays.section)
register("attrition", "Attrition and retention", attrition_section)
register("reproducibility", "Reproducibility appendix", _reproducibility)
