"""The data the realist analyses read, and the study's realist output table.

:func:`realist_data` gathers, in the caller's scope, the cohort frame, each site's current context,
personal goals with their ratings, the CMO configurations and the per-participant adherence of the
**adherence provider**: the delivery domain's ``participant_dose`` when the service has it
(:func:`delivery_adherence`), otherwise a request field (codes → 0/1) or a participant-level column
(a context answer, a code or a baseline score) named by the request.

:func:`participant_frame` turns that into one row per participant: ``participant, site, arm,
treated`` (1 = the intervention arm, 0 = the reference arm), ``<scale>@<wave>`` scores, each
scale's baseline value under its own name (``lsns6``), ``context_*`` answers, ``site:<variable>``
site context and ``ctx:<variable>`` the participant's current context record.

:func:`realist_table` is the per-study realist output: every CMO configuration with its
quantitative estimate (:func:`analysis.realist.what_works_for_whom`) and its qualitative evidence
(for a coded mechanism: the share of interviewed participants with the code in and out of the
context, and up to two de-identified quotes from each group). The trial report calls it.
"""

from __future__ import annotations

import importlib.util
import io
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select as sa_select
from sqlmodel import Session, select

from api.auth.service import Actor
from api.context import service
from api.errors import Unprocessable
from api.exports.writers import SafeCsvWriter
from api.lazyimport import LazyModule
from api.studies.models import Arm, Study
from api.transcripts.models import QualCode, QualCoding, Transcript

if TYPE_CHECKING:
    import pandas as pd
else:
    from api.lazyimport import pandas as pd


_realist = LazyModule("analysis.realist")  # the model stack on first use, not at start-up
_slopes = LazyModule("analysis.realist_slopes")


@dataclass
class RealistData:
    long: pd.DataFrame
    site_context: dict[str, dict[str, Any]]
    goals: pd.DataFrame
    cmos: list[dict[str, Any]]
    arms: list[tuple[str, str]]  # (code, kind)
    adherence: pd.DataFrame | None = None  # participant, adherent, sessions_attended (delivery domain)
    quotes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame())  # participant, code, quote
    participant_context: dict[str, dict[str, Any]] = field(default_factory=dict)  # code -> current variables

    def __len__(self) -> int:
        return len(self.long)


def delivery_adherence(session: Session, study_id: int, actor: Actor) -> pd.DataFrame | None:
    """Per-participant adherence from the delivery domain, or None when the service has none."""
    if importlib.util.find_spec("api.delivery") is None or importlib.util.find_spec("api.delivery.dose") is None:
        return None
    from api.delivery.dose import participant_dose  # type: ignore[import-not-found,unused-ignore]

    rows = participant_dose(session, study_id, actor)
    if not rows:
        return None
    df = pd.DataFrame(rows)
    out = pd.DataFrame({"participant": df["study_code"].astype(str)})
    out["adherent"] = pd.to_numeric(df["adherent"].map({True: 1.0, False: 0.0}), errors="coerce")
    out["sessions_attended"] = pd.to_numeric(df.get("sessions_attended"), errors="coerce")
    return out if out["adherent"].notna().any() or out["sessions_attended"].notna().any() else None


def realist_data(session: Session, study: Study, actor: Actor, long: pd.DataFrame) -> RealistData:
    """Everything the realist kinds read, limited to the participants of ``long`` (the actor's scope)."""
    codes = set(long["participant"].astype(str)) if len(long) else set()
    goals = pd.DataFrame(
        service.goal_levels(session, study.id, None),
        columns=["participant", "goal", "weight", "baseline_level", "wave", "level"],
    )
    goals = goals[goals["participant"].isin(codes)].reset_index(drop=True)
    cmos = [c.model_dump() for c in service.list_cmos(session, study)]
    from api.sap.blinding import arm_labels, blinded

    # Blinded readers see the arms as neutral letters and not their kinds: they name arm and reference.
    labels = arm_labels(session, study.id, actor)
    blind = blinded(session, study.id, actor)
    arms = [
        (labels.get(a.id, a.code), "blinded" if blind else a.kind)
        for a in session.exec(select(Arm).where(Arm.study_id == study.id).order_by(Arm.id))
    ]
    return RealistData(
        long=long,
        site_context=service.site_context(session, study.id),
        goals=goals,
        cmos=cmos,
        arms=arms,
        adherence=delivery_adherence(session, study.id, actor),
        quotes=_quotes(session, study.id, codes),
        participant_context={k: v for k, v in service.participant_context(session, study.id).items() if k in codes},
    )


def _quotes(session: Session, study_id: int, codes: set[str]) -> pd.DataFrame:
    rows = session.execute(
        sa_select(Transcript.participant_codes, QualCode.key, Transcript.text, QualCoding.start, QualCoding.end)
        .join(Transcript, Transcript.id == QualCoding.transcript_id)
        .join(QualCode, QualCode.id == QualCoding.code_id)
        .where(QualCoding.study_id == study_id)
        .order_by(QualCoding.id)
    ).all()
    out = []
    for pcodes, key, text, start, end in rows:
        if len(pcodes or []) != 1 or pcodes[0] not in codes:
            continue  # group transcripts cannot be placed in one participant's context
        out.append((pcodes[0], key, " ".join(text[start:end].split())[:300]))
    interviewed = session.exec(select(Transcript.participant_codes).where(Transcript.study_id == study_id)).all()
    seen = sorted({c for pc in interviewed if len(pc or []) == 1 for c in pc if c in codes})
    df = pd.DataFrame(out, columns=["participant", "code", "quote"])
    df.attrs["interviewed"] = seen
    return df


def pick_arms(data: RealistData, arm: str | None, reference: str | None) -> tuple[str, str]:
    """The intervention arm and the reference arm (defaults: the first intervention and control arms)."""
    kinds = dict(data.arms)
    inter = arm or next((c for c, k in data.arms if k == "intervention"), None)
    ref = reference or next((c for c, k in data.arms if k == "control"), None)
    ref = ref or next((c for c, k in data.arms if k != "intervention"), None)
    if inter is None or inter not in kinds:
        raise ValueError("arm")
    if ref is None or ref not in kinds or ref == inter:
        raise ValueError("reference")
    return inter, ref


def participant_frame(
    data: RealistData, measures: list[tuple[str, str]], arm: str, reference: str, adherence: dict[str, float] | None
) -> pd.DataFrame:
    """One row per participant of the two arms (see the module docstring)."""
    long = data.long
    long = long[long["arm"].isin([arm, reference])]
    per = long.drop_duplicates("participant")
    extra = [c for c in per.columns if c.startswith("context_") or c.startswith("code:")]
    out = per[["participant", "site", "arm", *extra]].set_index("participant")
    out["treated"] = (out["arm"] == arm).astype(int)
    first_wave = long.sort_values("wave_offset")["wave"].iloc[0] if len(long) else None
    for scale, g in long[long["wave"] == first_wave].groupby("scale"):
        out[str(scale)] = g.drop_duplicates("participant").set_index("participant")["value"]
    for scale, wave in measures:
        g = long[(long["scale"] == scale) & (long["wave"] == wave)].drop_duplicates("participant")
        out[f"{scale}@{wave}"] = g.set_index("participant")["value"]
    for code, variables in data.site_context.items():
        for k, v in variables.items():
            col = f"site:{k}"
            if col not in out.columns:
                out[col] = pd.Series(dtype=object)
            out.loc[out["site"] == code, col] = v
    for code, variables in data.participant_context.items():
        if code not in out.index:
            continue
        for k, v in variables.items():
            col = f"ctx:{k}"
            if col not in out.columns:
                out[col] = pd.Series(dtype=object)
            out.loc[code, col] = v
    if adherence is not None:
        out["adherent"] = pd.Series(adherence, dtype=float)
    elif data.adherence is not None:
        a = data.adherence.set_index("participant")
        out["adherent"] = a["adherent"]
        out["sessions_attended"] = a["sessions_attended"]
    return out.reset_index()


def _predicate(cmo: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"variable": c["variable"], "op": c["op"], "value": c["value"]} for c in cmo["context"]]


def describe(conds: list[dict[str, Any]]) -> str:
    """``lsns6 < 12 and site:setting == rural``."""
    return " and ".join(f"{c['variable']} {c['op']} {c['value']}" for c in conds)


def realist_table(
    data: RealistData,
    arm: str | None = None,
    reference: str | None = None,
    alpha: float = 0.05,
    fdr: float = 0.05,
    min_per_cell: int = 5,
    codes: list[str] | None = None,
    longitudinal: bool = False,
) -> pd.DataFrame:
    """Every CMO configuration with its quantitative estimate and qualitative evidence.

    Columns: ``cmo, title, context, mechanism, outcome, outcome_wave, direction, prespecified,
    status`` (as recorded), the estimate columns of :func:`analysis.realist.what_works_for_whom`
    (``n_in … verdict, note``), ``code_share_in, code_share_out`` (coded mechanisms: share of
    interviewed participants in / out of the context with the code), ``quotes_in, quotes_out`` and
    ``evidence`` (the recorded links, ``kind:ref`` joined by ``; ``). With ``longitudinal`` the
    arm × time × context estimate of :func:`analysis.realist_slopes.slope_moderation_table` over
    every wave follows (``slope_*`` columns, points per year).
    """
    cmos = [c for c in data.cmos if codes is None or c["code"] in codes]
    inter, ref = pick_arms(data, arm, reference)
    measures = sorted({(c["outcome"], c["outcome_wave"]) for c in cmos})
    frame = participant_frame(data, measures, inter, ref, None)
    specs = [
        {
            "code": c["code"],
            "outcome": f"{c['outcome']}@{c['outcome_wave']}",
            "baseline": c["outcome"] if c["outcome"] in frame.columns else None,
            "context": _predicate(c),
            "direction": c["direction"],
            "prespecified": c["prespecified"],
        }
        for c in cmos
    ]
    est = _realist.what_works_for_whom(frame, specs, alpha=alpha, fdr=fdr, min_per_cell=min_per_cell)
    rows = []
    interviewed = set(data.quotes.attrs.get("interviewed", []))
    for c, (_, e) in zip(cmos, est.iterrows(), strict=True):
        row = {
            "cmo": c["code"],
            "title": c["title"],
            "context": describe(c["context"]),
            "mechanism": f"{c['mechanism']['kind']}:{c['mechanism']['ref']}",
            "outcome": c["outcome"],
            "outcome_wave": c["outcome_wave"],
            "direction": c["direction"],
            "prespecified": c["prespecified"],
            "status": c["status"],
            **{k: e[k] for k in est.columns if k not in ("cmo", "outcome", "direction", "prespecified")},
        }
        row.update(_qualitative(c, frame, data.quotes, interviewed))
        row["evidence"] = "; ".join(f"{ev['kind']}:{ev['ref']}" for ev in c.get("evidence", []))
        rows.append(row)
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    if not longitudinal:
        return table
    slopes = _slopes.slope_moderation_table(
        data.long,
        frame,
        [{"outcome": c["outcome"], "context": _predicate(c)} for c in cmos],
        inter,
        ref,
        alpha=alpha,
        fdr=fdr,
        min_per_cell=min_per_cell,
    )
    return pd.concat([table, slopes], axis=1)


TABLE_COLUMNS = [
    "cmo",
    "title",
    "context",
    "mechanism",
    "outcome",
    "outcome_wave",
    "direction",
    "prespecified",
    "status",
    "n_in",
    "n_out",
    "effect_in",
    "effect_in_ci_lower",
    "effect_in_ci_upper",
    "effect_out",
    "effect_out_ci_lower",
    "effect_out_ci_upper",
    "shrunk_in",
    "shrunk_in_ci_lower",
    "shrunk_in_ci_upper",
    "shrunk_out",
    "shrunk_out_ci_lower",
    "shrunk_out_ci_upper",
    "tau2",
    "moderation",
    "se",
    "df",
    "ci_lower",
    "ci_upper",
    "p",
    "p_bh",
    "significant",
    "verdict",
    "note",
    "code_share_in",
    "code_share_out",
    "quotes_in",
    "quotes_out",
    "evidence",
]


def _qualitative(cmo, frame: pd.DataFrame, quotes: pd.DataFrame, interviewed: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"code_share_in": np.nan, "code_share_out": np.nan, "quotes_in": "", "quotes_out": ""}
    if cmo["mechanism"]["kind"] != "code" or not interviewed:
        return out
    try:
        mask = _realist.context_mask(frame, _predicate(cmo))
    except ValueError:
        return out
    inside = set(frame.loc[mask.fillna(False).astype(bool), "participant"])
    outside = set(frame.loc[(~mask.fillna(True)).astype(bool), "participant"])
    q = quotes[quotes["code"] == cmo["mechanism"]["ref"]]
    coded = set(q["participant"])
    for name, group in (("in", inside), ("out", outside)):
        heard = group & interviewed
        if heard:
            out[f"code_share_{name}"] = len(coded & heard) / len(heard)
        out[f"quotes_{name}"] = " | ".join(q[q["participant"].isin(group)]["quote"].head(2))
    return out


def table_csv(table: pd.DataFrame) -> str:
    """The table as CSV (blank = missing; text that a spreadsheet would run as a formula neutralised)."""
    buf = io.StringIO()
    w = SafeCsvWriter(buf, lineterminator="\n")
    w.writerow(list(table.columns))
    for row in table.itertuples(index=False):
        w.writerow(["" if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in row])
    return buf.getvalue()


def study_realist_table(
    session: Session,
    study: Study,
    actor: Actor,
    secret: str,
    arm: str | None = None,
    reference: str | None = None,
    fdr: float = 0.05,
    min_per_cell: int = 5,
    longitudinal: bool = False,
) -> pd.DataFrame:
    """The realist output table of a study in ``actor``'s scope (what the route and the CLI call;
    the trial report calls :func:`realist_table` on the same data, restricted to its sites).

    Raises :class:`api.errors.Unprocessable` (422) naming ``arm``/``reference`` for an unknown arm,
    and the study when it has no data or no CMO configurations.
    """
    from api.analyses.cohort import load_frame

    long = load_frame(session, study, actor, None, secret=secret)
    if long.empty:
        raise Unprocessable(["path", "study_id"], "no participant in scope has questionnaire data yet", "no_data")
    data = realist_data(session, study, actor, long)
    if not data.cmos:
        raise Unprocessable(["path", "study_id"], "the study has no CMO configurations yet", "no_cmos")
    try:
        return realist_table(data, arm, reference, fdr=fdr, min_per_cell=min_per_cell, longitudinal=longitudinal)
    except ValueError as exc:
        name = str(exc)
        if name in ("arm", "reference"):
            arms = ", ".join(code for code, _ in data.arms)
            raise Unprocessable(
                ["query", name], f"not an arm of this study for this role: expected one of {arms}", "unknown_arm"
            ) from exc
        raise Unprocessable(["path", "study_id"], name, "not_estimable") from exc
