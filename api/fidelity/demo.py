"""The fidelity part of the demo study: a checklist, ratings of delivered sessions by two independent
evaluators (some sessions double-rated), and a few adaptations described with FRAME.

Called by :func:`api.demo.load_demo` after the delivery records exist, through the same services as
real use. Generating parameters (seeded, so every demo database is the same):

* each peer supporter has a delivery skill ``z ~ N(0, 1)``; an item of a session is fully delivered
  with probability ``logistic(1.4 + 0.8 z − 0.04 · (session number − 1))`` for core components and
  ``logistic(0.9 + 0.8 z)`` for form items (drift: core delivery falls a little as a programme goes
  on); otherwise partly delivered (70 %) or not at all (30 %); one session in eight leaves the
  "breaks" item not applicable;
* 40 % of delivered sessions are rated (audio recordings), a quarter of those by both evaluators;
  the second evaluator gives the first's rating with probability 0.85 per item, otherwise one
  step up or down, so that the agreement figures (weighted kappa about 0.6–0.8) look like a real
  study's.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import numpy as np
from sqlmodel import Session, col, select

from api.auth.models import User
from api.auth.service import Actor
from api.delivery.models import DeliverySession
from api.fidelity import adaptations, service
from api.fidelity.schemas import AdaptationIn, ChecklistIn, RatingIn
from api.studies.models import Arm, Site, Study
from instruments.checklist import load_checklist

TEMPLATE = "peer_group_session"
RATED = 0.40
DOUBLE = 0.25
AGREE = 0.85


def _logistic(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _actor(user: User) -> Actor:
    return Actor(user_id=user.id, role=user.role, email=user.email, source="system")


def ratings(session: Session, study: Study, raters: list[User], today: date, seed: int = 20261201) -> int:
    """The checklist and the ratings of the demo's delivered sessions; returns how many ratings."""
    admin = Actor.system(source="system")
    service.create_checklist(session, study, ChecklistIn(template=TEMPLATE), admin)
    checklist = load_checklist(TEMPLATE)
    rng = np.random.default_rng(seed)
    delivered = session.exec(
        select(DeliverySession)
        .where(DeliverySession.study_id == study.id, DeliverySession.status == "delivered")
        .order_by(col(DeliverySession.id))
    ).all()
    skill: dict[int | None, float] = {}
    made = 0
    for ds in delivered:
        if ds.delivered_on is None or ds.delivered_on > today or rng.random() >= RATED:
            continue
        z = skill.setdefault(ds.supporter_id, float(rng.normal()))
        first: dict[str, float | None] = {}
        for it in checklist.items:
            base = 1.4 - 0.04 * ((ds.number or 1) - 1) if it.component == "core" else 0.9
            if rng.random() < _logistic(base + 0.8 * z):
                v = 2.0
            else:
                v = 1.0 if rng.random() < 0.7 else 0.0
            first[it.code] = v
        if rng.random() < 1 / 8:
            first["breaks"] = 9.0
        pairs = [first]
        if len(raters) > 1 and rng.random() < DOUBLE:
            second: dict[str, float | None] = {}
            for code, given in first.items():
                if given is None or given == 9.0 or rng.random() < AGREE:
                    second[code] = given
                else:
                    second[code] = float(min(2.0, max(0.0, given + rng.choice([-1.0, 1.0]))))
            pairs.append(second)
        rated_on = min(today, ds.delivered_on + timedelta(days=int(rng.integers(2, 15))))
        for rater, answers in zip(raters, pairs, strict=False):
            body = RatingIn(
                session_id=ds.id,
                checklist=TEMPLATE,
                method="audio_recording",
                rated_on=rated_on,
                answers=answers,
            )
            service.create_rating(session, study, body, _actor(rater))
            made += 1
    return made


def adaptation_log(session: Session, study: Study, today: date) -> int:
    """Four adaptations of the group arm, as a programme team would log them."""
    actor = Actor.system(source="system")
    arm = session.exec(select(Arm).where(Arm.study_id == study.id, Arm.kind == "intervention")).first()
    if arm is None:
        return 0
    sites = list(session.exec(select(Site).where(Site.study_id == study.id).order_by(col(Site.id))))
    sessions = session.exec(
        select(DeliverySession)
        .where(DeliverySession.arm_id == arm.id, DeliverySession.status == "delivered")
        .order_by(col(DeliverySession.delivered_on))
    ).all()
    start = sessions[0].delivered_on if sessions and sessions[0].delivered_on else today - timedelta(days=120)
    entries: list[dict[str, Any]] = [
        dict(
            site=None,
            adapted_on=start - timedelta(days=14),
            phase="pre_implementation",
            what="content",
            level="programme",
            nature="tailoring",
            planned=True,
            decided_by=["intervention_developer", "peer_supporter"],
            reasons=["recipient_literacy"],
            goal="fit_with_recipients",
            fidelity="consistent",
            component="information",
            description="Handouts rewritten at a reading age of 9 with pictures; the key messages unchanged",
        ),
        dict(
            site=sites[-1].code if sites else None,
            adapted_on=start + timedelta(days=35),
            phase="implementation",
            what="context",
            context_aspect="format",
            level="site",
            nature="shortening",
            planned=False,
            decided_by=["programme_manager"],
            reasons=["recipient_access", "disruption"],
            goal="retention",
            fidelity="inconsistent",
            component="skills_practice",
            description="Sessions moved to video calls of 60 minutes during winter road closures; practice cut",
        ),
        dict(
            site=sites[0].code if sites else None,
            adapted_on=start + timedelta(days=49),
            phase="implementation",
            what="content",
            level="site",
            nature="adding",
            planned=False,
            decided_by=["peer_supporter", "participants"],
            reasons=["recipient_preferences"],
            goal="engagement",
            fidelity="consistent",
            component="examples",
            description="A shared walk added before each session at the participants' request",
        ),
        dict(
            site=None,
            adapted_on=start + timedelta(days=70),
            phase="implementation",
            what="training",
            level="programme",
            nature="repeating",
            planned=True,
            decided_by=["researcher", "programme_leader"],
            reasons=["supporter_skills"],
            goal="effectiveness",
            fidelity="consistent",
            component="goal_setting",
            description="Refresher on action planning after fidelity ratings showed goal setting slipping",
        ),
    ]
    made = 0
    for e in entries:
        if e["adapted_on"] > today:
            continue
        adaptations.create_adaptation(session, study, AdaptationIn(arm=arm.code, **e), actor)
        made += 1
    return made
