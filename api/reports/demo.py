"""The demo study's screening log: every enrolled participant, and the people screened but not
enrolled, with reasons of the kind peer-support trials report (a fixed seed, so the demo's
CONSORT diagram is the same on every machine)."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlmodel import Session

from api.auth.service import Actor
from api.participants.models import Participant
from api.reports import screening
from api.reports.schemas import ScreeningIn
from api.studies.models import Study

# (outcome, reason, weight): about four in ten people screened are not enrolled.
EXCLUSIONS = (
    ("not_eligible", "HbA1c below 7.5%", 9),
    ("not_eligible", "type 1 diabetes", 3),
    ("not_eligible", "cannot attend in English", 2),
    ("declined", "no time for sessions", 6),
    ("declined", "not interested in peer support", 4),
    ("other", "could not be contacted", 3),
)


def screening_log(
    session: Session, study: Study, people: list[Participant], site_codes: dict[int, str], actor: Actor, seed: int
) -> int:
    """Record one screening per participant and about 0.7 excluded people per participant; returns
    the number of entries."""
    rng = random.Random(seed)
    n = 0
    for p in people:
        body = ScreeningIn(
            site=site_codes[p.site_id],
            screened_on=p.enrolled_on - timedelta(days=rng.randint(2, 14)),
            outcome="enrolled",
            participant_id=p.id,
        )
        screening.add(session, study, body, actor)
        n += 1
        for _ in range(rng.choices((0, 1, 2), weights=(45, 40, 15))[0]):
            outcome, reason, _w = rng.choices(EXCLUSIONS, weights=[w for *_, w in EXCLUSIONS])[0]
            when = p.enrolled_on - timedelta(days=rng.randint(1, 30))
            screening.add(
                session,
                study,
                ScreeningIn(site=site_codes[p.site_id], screened_on=when, outcome=outcome, reason=reason),
                actor,
            )
            n += 1
    return n
