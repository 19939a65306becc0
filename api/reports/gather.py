"""Everything the report's sections read, gathered once under the requester's scope and labels.

Arms carry the labels :func:`api.reports.adapters.arm_labels` gives the requester (neutral while
blinded); participants are their pseudonymous study codes; no calendar date leaves this module
(days since enrolment only). A coordinator's report covers their own sites only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import select as sa_select
from sqlmodel import Session, select

from analysis.flow import participant_flow
from api.analyses.checks import Design, check_sites, scope_sites, study_design
from api.analyses.cohort import load_frame
from api.auth.service import Actor
from api.db import utcnow
from api.exports.service import uses_data_clause
from api.participants.flow import flow_frames
from api.participants.models import Participant
from api.participants.service import local_date
from api.reports import adapters, screening
from api.reports.models import ScreeningEntry
from api.safety.models import AdverseEvent
from api.studies.models import Site, Study


@dataclass
class ReportData:
    """The inputs of every section (frames are tidy; see each attribute)."""

    study: Study
    actor: Actor
    design: Design
    sites: list[str] | None  # site codes covered (None: every site)
    site_ids: list[int]
    arm_labels: dict[int, str]  # arm id -> label shown
    masked: bool  # arm labels are neutral (blinded)
    reference: str | None  # the label of the comparison arm
    people: pd.DataFrame  # one row per allocated participant (see _people)
    long: pd.DataFrame  # the long export, arm column holding labels
    screening: list[ScreeningEntry]
    events: pd.DataFrame  # adverse events: participant, seriousness, serious, severity, relatedness, action_taken
    plan: adapters.PlanView | None
    received_known: bool
    unblinded_at: Any | None = None
    flow: dict[str, Any] | None = None  # analysis.flow.participant_flow over the covered sites, arms as labels
    voided_ids: set[int] = field(default_factory=set)  # participants entered in error: in no count
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def waves(self) -> list[tuple[str, int]]:
        return [(w.code, w.offset_days) for w in self.design.waves]

    @property
    def arms(self) -> list[str]:
        """Arm labels in display order: the study's order, or alphabetical while blinded (so that the
        order reveals nothing)."""
        if self.masked:
            return sorted(set(self.arm_labels.values()))
        return list(dict.fromkeys(self.arm_labels[a.id] for a in self.design.arms if a.id in self.arm_labels))

    @property
    def primary_wave(self) -> str | None:
        """The time point of the primary analysis: the analysis plan's, else the last wave that is due
        for at least half of the allocated participants (else the last wave)."""
        if self.plan is not None and self.plan.primary is not None and self.plan.primary[1]:
            return str(self.plan.primary[1])
        waves = self.waves
        if not waves:
            return None
        due = self.people["due_offset"] if "due_offset" in self.people else pd.Series(dtype=float)
        half = [w for w, off in waves if len(due) and (due >= off).sum() * 2 >= len(due)]
        return half[-1] if half else waves[-1][0]

    def data_hash(self) -> str:
        """SHA-256 of the data the report was computed from (long frame, participants, screening,
        adverse events), in a canonical order: the same data give the same hash."""
        h = hashlib.sha256()
        for name, df in (("long", self.long), ("people", self.people), ("events", self.events)):
            d = df.drop(columns=[c for c in df.columns if c in ("completed_at",)], errors="ignore")
            d = d.reindex(sorted(d.columns), axis=1)
            d = d.sort_values(list(d.columns)[:4], kind="stable") if len(d) and len(d.columns) else d
            h.update(name.encode())
            h.update(d.to_csv(index=False).encode())
        for e in sorted(self.screening, key=lambda e: e.id or 0):
            h.update(f"screening:{e.site_id}:{e.outcome}:{e.reason}:{e.participant_id}".encode())
        return h.hexdigest()


def _due_offsets(enrolled: pd.Series, waves: list, tz: str) -> np.ndarray:
    today = pd.Timestamp(datetime.now(ZoneInfo(tz)).date())
    elapsed = (today - pd.to_datetime(enrolled)).dt.days.to_numpy(float)
    out = np.full(len(enrolled), -1.0)
    for w in sorted(waves, key=lambda w: w.offset_days):
        out = np.where(elapsed > w.offset_days + w.window_after_days, np.maximum(out, float(w.offset_days)), out)
    return out


def _people(
    session: Session, study: Study, design: Design, site_ids: list[int], labels: dict[int, str], long: pd.DataFrame
) -> pd.DataFrame:
    rows = session.exec(
        select(Participant)
        .where(
            Participant.study_id == study.id,
            Participant.site_id.in_(site_ids),
            Participant.arm_id.is_not(None),
            *uses_data_clause(),  # voided and consent-withdrawn participants: no data of theirs is used
        )
        .order_by(Participant.id)
    ).all()
    cols = ["pid", "participant", "site", "arm", "status", "status_reason", "status_days", "enrolled_on"]
    site_codes = {i: c for c, i in design.sites.items()}
    df = pd.DataFrame(
        [
            (
                p.id,
                p.study_code,
                site_codes.get(p.site_id),
                labels.get(p.arm_id or 0, "unlabelled arm"),
                p.status,
                p.status_reason,
                (p.status_date - p.enrolled_on).days
                if p.status_date and p.status in ("withdrawn", "lost_to_follow_up")
                else np.nan,
                p.enrolled_on,
            )
            for p in rows
        ],
        columns=cols,
    )
    names = dict(session.exec(select(Site.id, Site.name).where(Site.study_id == study.id)).all())
    df["site_name"] = [names.get(design.sites.get(c, -1), c) for c in df["site"]]
    df["due_offset"] = _due_offsets(df["enrolled_on"], design.waves, study.time_zone) if len(df) else []
    last = long[long["value"].notna()].groupby("participant")["days"].max() if len(long) else pd.Series(dtype=float)
    df["last_days"] = df["participant"].map(last).astype(float)
    return df.drop(columns=["enrolled_on"])


def gather(session: Session, study: Study, actor: Actor, *, sites: list[str] | None, secret: str) -> ReportData:
    """Read the study for a report under ``actor``'s scope (422/403 for a bad ``sites`` list)."""
    design = study_design(session, study)
    chosen = check_sites(design, actor, sites)
    covered = scope_sites(design, actor, chosen)
    site_ids = [i for c, i in design.sites.items() if (chosen is None or c in chosen) and actor.sees_site(i)]
    labels, masked = adapters.arm_labels(session, study, actor)
    code_to_label = {a.code: labels.get(a.id or 0, a.code) for a in design.arms}
    if masked:  # the export already carries the neutral letters (A, B …) for a blind reader
        code_to_label |= {lab.removeprefix("Arm "): lab for lab in labels.values()}
    long = load_frame(session, study, actor, chosen, secret=secret) if site_ids else pd.DataFrame()
    raw_long = long  # as the exports service gives it (arm codes, or neutral letters): what routes read
    if len(long):
        long = long.copy()
        long["arm"] = long["arm"].map(lambda c: code_to_label.get(c, c))
        if masked:
            long["arm_kind"] = None
    people = _people(session, study, design, site_ids, labels, long)
    # Receipt of the allocated intervention tells the intervention arms from the control arm: not
    # for a reader blind to the arms.
    received = None if masked else adapters.received_allocated(session, study)
    if received is not None:
        people["received"] = people["pid"].map(lambda i: received.get(i, (None, None))[0])
        people["not_received_reason"] = people["pid"].map(lambda i: received.get(i, (None, None))[1])
    ev_rows = (
        session.execute(
            sa_select(
                AdverseEvent.participant_id,
                AdverseEvent.seriousness,
                AdverseEvent.serious,
                AdverseEvent.severity,
                AdverseEvent.relatedness,
                AdverseEvent.action_taken,
            )
            .join(Participant, Participant.id == AdverseEvent.participant_id)
            .where(AdverseEvent.study_id == study.id, Participant.site_id.in_(site_ids))
            .order_by(AdverseEvent.id)
        ).all()
        if site_ids
        else []
    )
    codes = dict(zip(people["pid"], people["participant"], strict=True))
    events = pd.DataFrame(
        [
            (codes.get(p), ";".join(s or []), bool(ser), sev, rel, act)
            for p, s, ser, sev, rel, act in ev_rows
            if p in codes
        ],
        columns=["participant", "seriousness", "serious", "severity", "relatedness", "action_taken"],
    )
    kinds = {labels.get(a.id or 0): a.kind for a in design.arms}
    ctrl = sorted(lab for lab, k in kinds.items() if k == "control" and lab)
    arms_sorted = sorted(set(labels.values()))
    reference = ctrl[0] if ctrl and not masked else (arms_sorted[0] if arms_sorted else None)
    flow, voided = _flow(session, study, design, site_ids, code_to_label)
    data = ReportData(
        study=study,
        actor=actor,
        design=design,
        sites=covered,
        site_ids=site_ids,
        arm_labels=labels,
        masked=masked,
        reference=reference,
        people=people,
        long=long,
        screening=screening.entries(session, study, actor, site_ids),
        events=events,
        plan=adapters.current_plan(session, study),
        received_known=received is not None,
        unblinded_at=adapters.unblinded_at(session, study),
        flow=flow,
        voided_ids=voided,
    )
    from api.reports import process  # the process evaluation, when the study has delivery records

    data.extra["delivery"] = process.collect(session, study, data)
    data.extra["long_raw"] = raw_long
    data.extra["arm_label_of"] = code_to_label  # arm code (or neutral letter) -> the label shown
    return data


def _flow(
    session: Session, study: Study, design: Design, site_ids: list[int], code_to_label: dict[str, str]
) -> tuple[dict[str, Any], set[int]]:
    """:func:`analysis.flow.participant_flow` of the allocated participants of the covered sites
    (arms as the labels shown), and the ids of the voided participants it leaves out."""
    rows = (
        list(
            session.exec(
                select(Participant)
                .where(
                    Participant.study_id == study.id,
                    Participant.site_id.in_(site_ids),
                    Participant.arm_id.is_not(None),
                )
                .order_by(Participant.id)
            ).all()
        )
        if site_ids
        else []
    )
    today = local_date(study, utcnow())
    frame, waves, visits = flow_frames(session, study, rows, list(design.waves), today)
    if len(frame):
        frame["arm"] = frame["arm"].map(lambda c: code_to_label.get(c, c))
    flow = participant_flow(frame, waves, visits)
    return flow, {p.id for p in rows if p.voided_at is not None and p.id is not None}
