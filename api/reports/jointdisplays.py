"""The report's "Joint displays" section: qualitative themes against outcome trajectories.

Two displays of the transcripts domain (:mod:`api.transcripts.joint`), computed as its routes
compute them for the same reader, over the report's participants only:

* the trajectory × theme matrix (``GET /studies/{id}/qualitative/trajectory-matrix``): the
  interviewed participants of each arm grouped as improved / no change / worsened by the outcome's
  minimal clinically important difference (MCID), how many of each group expressed each theme,
  and different quotes per cell;
* the case matrix (``GET /studies/{id}/qualitative/case-matrix``): one row per interviewed
  participant with their trajectory, change and a 0/1 column per theme.

The outcome is the first outcome of the report (the analysis plan's primary outcome first) that
has an MCID (the plan's, else the instrument's published one); the themes are the codable codes
with at least one coding. Transcripts are stored de-identified; the report prints no study code,
so quotes are attributed to "interviewee 1, 2 …" and the case matrix numbers its rows.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlmodel import Session

from analysis.trialreport import absent, table_html
from api.config import Settings
from api.errors import ApiError
from api.studies.models import Study

if TYPE_CHECKING:
    from api.reports.gather import ReportData

QUOTES = 2


def _choose_outcome(data: ReportData) -> tuple[str, float, bool] | None:
    """(scale, MCID, higher is better) of the first reported outcome with an MCID, else None."""
    from analysis.change import scale_meta
    from api.reports.outcomes import _outcome_plan

    if data.long.empty:
        return None
    for scale, _wave, _family in _outcome_plan(data).outcomes:
        meta = scale_meta(scale)
        mcid = (data.plan.mcids.get(scale) if data.plan is not None else None) or meta.get("mcid")
        if mcid:
            return scale, float(mcid), meta.get("better", "higher") != "lower"
    return None


def collect(session: Session, study: Study, data: ReportData, settings: Settings) -> dict[str, Any]:
    """The joint displays' frames (and what is missing), for :func:`section`."""
    from api.transcripts import joint
    from api.transcripts.analysis import load_corpus

    scope = frozenset(data.people["participant"].astype(str))
    corpus = joint.restrict(load_corpus(session, study, data.actor), scope)
    if not corpus.transcripts:
        return {"reason": "no joint display recorded: no interview transcript of these participants"}
    coded = {c.code_id for c in corpus.codings}
    themes = [c.key for c in corpus.codes if c.codable and c.id in coded]
    if not themes:
        return {"reason": "no joint display recorded: the transcripts carry no coding yet"}
    chosen = _choose_outcome(data)
    if chosen is None:
        return {
            "reason": "no joint display recorded: no reported outcome has a minimal clinically important difference"
        }
    scale, mcid, higher = chosen
    p = joint.MatrixParams(
        themes=themes, scale=scale, mcid=mcid, higher_is_better=higher, quotes=QUOTES, participants=scope
    )
    out: dict[str, Any] = {"reason": None, "params": p, "transcripts": len(corpus.transcripts)}
    try:
        out["trajectory"] = joint.trajectory_matrix(session, study, data.actor, p, settings)
        out["cases"] = joint.case_matrix(session, study, data.actor, p, settings, ["arm", "trajectory", "participant"])
    except (ApiError, ValueError) as exc:
        return {"reason": f"no joint display recorded: {exc}"}
    return out


def _interviewees(cases: pd.DataFrame, traj: pd.DataFrame) -> dict[str, str]:
    """Study code -> ``interviewee k`` (in the case matrix's order)."""
    codes = list(dict.fromkeys(cases["participant"].astype(str))) if len(cases) else []
    for ps in traj.get("participants", pd.Series(dtype=object)):
        codes += [c for c in ps or [] if c not in codes]
    return {c: f"interviewee {i}" for i, c in enumerate(codes, 1)}


def _relabel(text: str, names: dict[str, str], codes: set[str]) -> str:
    """Interviewees' codes as their numbers; any other study code as ``[participant]``."""
    from api.reports.forwhom import scrub_codes

    for code, name in sorted(names.items(), key=lambda kv: len(kv[0]), reverse=True):
        text = text.replace(code, name)
    return scrub_codes(text, codes - set(names))


def section(data: ReportData) -> tuple[str, bool]:
    """The section's HTML and whether it has data (see the module docstring)."""
    from api.reports.outcomes import scale_label

    info = data.extra.get("joint") or {"reason": "no joint display recorded"}
    if info.get("reason"):
        return absent(info["reason"]), False
    p = info["params"]
    traj: pd.DataFrame = info["trajectory"].copy()
    cases: pd.DataFrame = info["cases"].copy()
    names = _interviewees(cases, traj)
    scope = set(data.people["participant"].astype(str))
    labels = data.extra.get("arm_label_of", {})
    label = scale_label(p.scale)
    better = "higher" if p.higher_is_better else "lower"
    theme_names = dict(zip(traj["theme"], traj["theme_name"], strict=False)) if len(traj) else {}
    parts = [
        '<p class="note">What the interviews say, set against how the interviewed participants fared. '
        f"Each interviewed participant's change in {escape(label)} (latest minus earliest score) puts them in a "
        f"trajectory group: <b>improved</b> or <b>worsened</b> by at least the MCID of {p.mcid:g} points "
        f"({better} is better), otherwise <b>no change</b>. <b>n group</b>: interviewed participants of the arm "
        "in that group; <b>n theme</b>: of them, whose interviews carry the theme (or one of its sub-codes); "
        "<b>prevalence</b> = n theme / n group. Quotes are different in every cell and come from the "
        f"de-identified transcripts ({info['transcripts']} interview"
        f"{'s' if info['transcripts'] != 1 else ''}); speakers are numbered, not named. <b>Meta-inference</b>: "
        "what the team recorded the two strands say together for the theme and outcome (confirmation, "
        "expansion, discordance or silence).</p>"
    ]
    t = traj.assign(
        arm=traj["arm"].map(lambda a: labels.get(a, a)),
        prevalence=[f"{100 * v:.0f}%" if pd.notna(v) else "" for v in traj["prevalence"]],
        quotes=[" | ".join(_relabel(q, names, scope) for q in (qs or [])) for qs in traj["quotes"]],
        meta_inference=traj["meta_inference"].fillna(""),
    )
    parts.append(
        table_html(
            t,
            {
                "trajectory": "Trajectory",
                "theme_name": "Theme",
                "arm": "Arm",
                "n_group": "n group",
                "n_theme": "n theme",
                "prevalence": "Prevalence",
                "quotes": "Quotes",
                "meta_inference": "Meta-inference",
            },
            key="trajectory_matrix",
            caption=f"Trajectory × theme matrix: {label}, improved / no change / worsened by {p.mcid:g} points, by arm",
        )
    )
    if len(cases):
        c = cases.assign(
            participant=cases["participant"].astype(str).map(names),
            arm=cases["arm"].map(lambda a: labels.get(a, a)),
        )
        cols = {"participant": "Interviewee", "arm": "Arm", "trajectory": "Trajectory"}
        cols |= {k: v for k, v in (("baseline", "Earliest score"), ("followup", "Latest score")) if k in c.columns}
        if "change" in c.columns:
            cols["change"] = "Change"
        cols |= {f"theme:{k}": theme_names.get(k, k) for k in p.themes if f"theme:{k}" in c.columns}
        parts.append(
            table_html(
                c,
                cols,
                decimals=1,
                key="case_matrix",
                caption=f"Case matrix: one row per interviewed participant, {label}; 1 = the interview carries the "
                "theme",
            )
        )
    if data.masked:
        parts.append('<p class="note">The study is blinded to this reader: arms are neutral labels.</p>')
    return "\n".join(parts), True
