"""A second demo study, a realist trial with a known moderator, mediator and non-compliance.

Participants, arms and answers come from :func:`analysis.realist_sim.simulate_realist` (240
participants, six sites, 1:1 randomisation, ``y0 = 17`` so that PHQ-9 stays inside 0–24 (items 1–8)): 70 % of
those offered peer support take it up (recorded as each participant's context record
``{"adherent": 0/1, "sessions_attended": n}``, read through ``ctx:adherent``); self-efficacy at
month 3 (SEMCD-6) carries the whole effect to depression at month 12 (PHQ-9), and the effect is
larger in isolated participants (LSNS-6 < 12). Scores are rounded to attainable totals (PHQ-9 item
9 is left at 0 so that the synthetic answers raise no safety alert), so the recovered values
differ from the generating ones by rounding as well as by chance. The true values are printed by
``peerlens demo``.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from sqlmodel import Session, select

from api.auth.service import Actor
from api.context import service
from api.context.schemas import CmoIn, ContextRecordIn, LogicModelIn
from api.studies.models import Study

TITLE = "Peerlens demo: what works for whom (realist trial)"
TZ = "Europe/London"
N = 240


def _spread(total: int, k: int, lo: int, hi: int) -> list[int]:
    """``total`` spread as evenly as possible over ``k`` items in ``lo..hi``."""
    total = int(np.clip(total, k * lo, k * hi)) - k * lo
    base, extra = divmod(total, k)
    return [lo + base + (1 if i < extra else 0) for i in range(k)]


def load(session: Session, today: date, seed: int, actor: Actor) -> dict | None:
    """Create the realist demo study once; returns its id and true values (None if it exists)."""
    from analysis.realist_sim import simulate_realist
    from api.participants import service as participants
    from api.responses.service import submit_response
    from api.studies import service as studies
    from api.studies.schemas import ArmCreate, SiteCreate, StudyCreate, WaveCreate

    if session.exec(select(Study.id).where(Study.title == TITLE)).first() is not None:
        return None
    sim = simulate_realist(N, seed=seed, y0=17.0)
    study = studies.create_study(
        session,
        StudyCreate(
            title=TITLE,
            design="realist_trial",
            planned_sample_size=N,
            time_zone=TZ,
            status="follow_up",
            randomisation_seed=f"realist-{seed}",
        ),
        actor,
    )
    for s in sorted(sim.participants["site"].unique()):
        studies.create_site(session, study, SiteCreate(code=s, name=f"Site {s[1:]}"), actor)
    studies.create_arm(session, study, ArmCreate(code="peer", name="Peer support", kind="intervention"), actor)
    studies.create_arm(session, study, ArmCreate(code="usual", name="Usual care", kind="control"), actor)
    for code, off, insts in (
        ("baseline", 0, ["phq9", "semcd6", "lsns6"]),
        ("m3", 90, ["semcd6"]),
        ("m12", 365, ["phq9"]),
    ):
        studies.create_wave(
            session,
            study,
            WaveCreate(code=code, offset_days=off, window_before_days=14, window_after_days=30, instruments=insts),
            actor,
        )
    rng = np.random.default_rng([seed, 17])
    for row in sim.participants.itertuples(index=False):
        enrolled = today - timedelta(days=420 + int(rng.integers(0, 90)))
        p = participants.enrol(
            session,
            study=study,
            site_code=row.site,
            enrolled_on=enrolled,
            consent_date=enrolled,
            consent_version="v1",
            arm_code=row.arm,
            study_code=row.participant,
            actor=actor,
        )
        answers = {
            ("baseline", "phq9"): _spread(round(row.phq9_baseline), 8, 0, 3) + [0],
            ("baseline", "semcd6"): _spread(round(6 * row.semcd6_baseline), 6, 1, 10),
            ("baseline", "lsns6"): _spread(int(row.lsns6), 6, 0, 5),
            ("m3", "semcd6"): _spread(round(6 * row.semcd6_m3), 6, 1, 10),
            ("m12", "phq9"): _spread(round(row.phq9_m12), 8, 0, 3) + [0],
        }
        offsets = {"baseline": 0, "m3": 90, "m12": 365}
        for (wave, inst), items in answers.items():
            done = datetime.combine(enrolled + timedelta(days=offsets[wave]), time(11, 0), tzinfo=ZoneInfo(TZ))
            submit_response(
                session,
                participant=p,
                wave_code=wave,
                instrument_code=inst,
                answers={f"{inst}_{i + 1}": v for i, v in enumerate(items)},
                completed_at=done,
                mode="import",
                actor=actor,
            )
        if row.treated:
            service.add_context_record(
                session,
                study,
                ContextRecordIn(
                    participant=row.participant,
                    valid_from=enrolled + timedelta(days=365),
                    variables={"adherent": int(row.adherent), "sessions_attended": int(row.sessions_attended)},
                ),
                actor,
            )
    service.put_logic_model(
        session,
        study,
        LogicModelIn(
            nodes=[
                {"code": "groups", "kind": "activity", "label": "Peer groups (12 sessions)"},
                {"code": "efficacy", "kind": "mechanism", "label": "Self-efficacy", "measure": "semcd6"},
                {"code": "mood", "kind": "outcome", "label": "Depressive symptoms", "measure": "phq9"},
            ],
            links=[{"from": "groups", "to": "efficacy"}, {"from": "efficacy", "to": "mood"}],
        ),
        actor,
    )
    service.add_cmo(
        session,
        study,
        CmoIn(
            code="isolation",
            title="Isolated participants gain most self-efficacy from peers",
            context=[{"variable": "lsns6", "op": "<", "value": 12}],
            mechanism={"kind": "measure", "ref": "semcd6", "wave": "m3"},
            outcome="phq9",
            outcome_wave="m12",
            direction="negative",
        ),
        actor,
    )
    return {"study_id": study.id, "participants": N, "truth": {k: round(v, 3) for k, v in asdict(sim.truth).items()}}
