"""The demo study's context and programme theory, recorded through the context services.

* Site context (north: urban GP-practice hub; south: rural diabetes clinic, two versions — the
  supporter ratio changed), a study-level lockdown and a site-level supporter leaving.
* The logic model peer modelling → self-efficacy (SEMCD-6) → activation (PAM-13) → depression (PHQ-9).
* Three CMO configurations: *isolation* (pre-specified: LSNS-6 < 12 at baseline, where the
  generating model of :func:`analysis.synthetic.simulate_cohort` gives peer-support arms an extra
  ``pam_slope_isolated_extra`` = +2 PAM points a year: the documented moderator), *rural site*
  (pre-specified, no effect generated) and *low self-efficacy* (exploratory, none generated).
* Personal goals (Goal Attainment Scaling) for every participant: one to three goals, baseline
  level −1, rated at m6 with a level drawn from ``round(N(μ, 0.9))`` clipped to −2…+2, where
  ``μ = +0.6`` in peer-support arms and ``−0.4`` in usual care (seeded).
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
from sqlmodel import Session, select

from api.auth.service import Actor
from api.context import service
from api.context.schemas import CmoIn, ContextEventIn, ContextRecordIn, GoalIn, LogicModelIn, RatingIn
from api.participants.models import Participant
from api.responses.models import Response
from api.studies.models import Arm, Study, Wave

RATED_AT = "m6"  # every demo participant has reached six months
GOAL_DOMAINS = (
    ("walk", "physical activity", "Walk to the shops and back"),
    ("cook", "diet", "Cook a healthy evening meal"),
    ("friends", "social", "Meet friends outside the house"),
)
LEVELS = {
    "-2": "much less than expected",
    "-1": "somewhat less than expected",
    "0": "the expected outcome",
    "1": "somewhat more than expected",
    "2": "much more than expected",
}


def seed(session: Session, study: Study, today: date, seed: int, actor: Actor) -> dict[str, int]:
    """Record the demo's context, logic model, CMO configurations and goals; returns counts."""
    start = today - timedelta(days=420)
    records = [
        ContextRecordIn(
            valid_from=start, variables={"programme": "peer support for type 2 diabetes", "sessions_planned": 12}
        ),
        ContextRecordIn(
            site="north",
            valid_from=start,
            variables={
                "setting": "urban",
                "deprivation_decile": 3,
                "clinic_type": "GP practice hub",
                "supporter_ratio": 8,
                "digital_access": 0.85,
            },
        ),
        ContextRecordIn(
            site="south",
            valid_from=start,
            variables={
                "setting": "rural",
                "deprivation_decile": 6,
                "clinic_type": "diabetes clinic",
                "supporter_ratio": 6,
                "digital_access": 0.6,
            },
        ),
        ContextRecordIn(
            site="south",
            valid_from=start + timedelta(days=200),
            variables={
                "setting": "rural",
                "deprivation_decile": 6,
                "clinic_type": "diabetes clinic",
                "supporter_ratio": 12,
                "digital_access": 0.6,
            },
            note="one of two peer supporters left",
        ),
    ]
    for r in records:
        service.add_context_record(session, study, r, actor)
    service.add_event(
        session,
        study,
        ContextEventIn(
            level="site",
            site="south",
            kind="supporter_left",
            title="Peer supporter left; groups merged",
            starts_on=start + timedelta(days=200),
        ),
        actor,
    )
    service.add_event(
        session,
        study,
        ContextEventIn(
            level="study",
            kind="lockdown",
            title="Winter restrictions: groups met online",
            starts_on=start + timedelta(days=150),
            ends_on=start + timedelta(days=190),
        ),
        actor,
    )
    service.put_logic_model(
        session,
        study,
        LogicModelIn(
            nodes=[
                {"code": "supporters", "kind": "input", "label": "Trained peer supporters"},
                {"code": "groups", "kind": "activity", "label": "Fortnightly peer groups and forum"},
                {
                    "code": "modelling",
                    "kind": "mechanism",
                    "label": "Peer modelling raises self-efficacy",
                    "measure": "semcd6",
                },
                {"code": "activation", "kind": "outcome", "label": "Patient activation", "measure": "pam13_activation"},
                {"code": "mood", "kind": "outcome", "label": "Depressive symptoms", "measure": "phq9"},
            ],
            links=[
                {"from": "supporters", "to": "groups"},
                {"from": "groups", "to": "modelling"},
                {"from": "modelling", "to": "activation"},
                {"from": "activation", "to": "mood"},
            ],
        ),
        actor,
    )
    mech = {"kind": "measure", "ref": "semcd6", "wave": "m3"}
    cmos = [
        CmoIn(
            code="isolation",
            title="Isolated participants gain most: peers replace a missing network",
            context=[{"variable": "lsns6", "op": "<", "value": 12}],
            mechanism=mech,
            outcome="pam13_activation",
            outcome_wave="m6",
            direction="positive",
            prespecified=True,
        ),
        CmoIn(
            code="rural",
            title="Rural sites: travel limits group attendance",
            context=[{"variable": "site:setting", "op": "==", "value": "rural"}],
            mechanism=mech,
            outcome="pam13_activation",
            outcome_wave="m6",
            direction="negative",
            prespecified=True,
        ),
        CmoIn(
            code="low_efficacy",
            title="Low self-efficacy at baseline: most room to grow",
            context=[{"variable": "semcd6", "op": "<", "value": 5}],
            mechanism=mech,
            outcome="phq9",
            outcome_wave="m6",
            direction="negative",
            prespecified=False,
        ),
    ]
    for c in cmos:
        service.add_cmo(session, study, c, actor)
    n_goals = _goals(session, study, seed, actor)
    return {"context_records": len(records), "cmos": len(cmos), "goals": n_goals}


def _goals(session: Session, study: Study, seed: int, actor: Actor) -> int:
    rng = np.random.default_rng([seed, 16])
    kinds = {a.id: a.kind for a in session.exec(select(Arm).where(Arm.study_id == study.id))}
    waves = session.exec(select(Wave).where(Wave.study_id == study.id).order_by(Wave.offset_days.desc())).all()
    last = next((w for w in waves if w.code == RATED_AT), waves[0] if waves else None)
    people = session.exec(select(Participant).where(Participant.study_id == study.id).order_by(Participant.id)).all()
    rated = {
        pid
        for pid in session.exec(
            select(Response.participant_id).where(Response.wave_id == last.id)  # type: ignore[union-attr]
        ).all()
    }
    n = 0
    for p in people:
        k = int(rng.integers(1, 4))
        mu = 0.6 if kinds.get(p.arm_id) == "intervention" else -0.4  # type: ignore[arg-type]
        for code, domain, _title in GOAL_DOMAINS[:k]:
            goal = service.add_goal(
                session,
                study,
                GoalIn(
                    participant=p.study_code,
                    code=code,
                    domain=domain,
                    weight=int(rng.integers(1, 3)),
                    levels=LEVELS,
                    set_on=p.enrolled_on,
                ),
                actor,
            )
            level = int(np.clip(np.round(rng.normal(mu, 0.9)), -2, 2))
            n += 1
            if p.id in rated and last is not None:
                service.rate_goal(
                    session,
                    study,
                    goal["id"],
                    RatingIn(wave=last.code, level=level, rated_on=p.enrolled_on + timedelta(days=last.offset_days)),
                    actor,
                )
    return n
