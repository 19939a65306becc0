"""Clinical measures for the demo study: HbA1c and weight beside the questionnaires.

Generating parameters (documented in README, "Clinical measures"):

* HbA1c at baseline ~ Normal(62, 12) mmol/mol (7.8 %), kept within 42-120; change to each later
  measurement = -1 mmol/mol in usual care and -1 - 3 x (days / 365) in the peer-support arms (about
  -3 mmol/mol, 0.3 %, more by 12 months, the size the peer-support literature reports), plus
  Normal(0, 6) noise.
* Weight at baseline ~ Normal(92, 16) kg within 50-180, height ~ Normal(168, 9) cm; change
  -0.5 kg (usual care) and -1.5 kg (peer support) by 12 months, pro rata, plus Normal(0, 2.5).
* Measured at the baseline, 6- and 12-month visits of people who answered that wave. 30 % of
  laboratories report HbA1c in % (the rest in mmol/mol) and 20 % of weights are entered in pounds,
  so the demo shows both units converging on one trajectory. One 12-month HbA1c in ten comes from
  health records dated 3-6 weeks after the visit (outside the window, flagged out_of_window).
  Baseline is measured on the day of enrolment or within the week after it.
"""

from __future__ import annotations

from datetime import time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from sqlmodel import Session, select

from api.studies import dates

#: wave -> clinical measures taken at that visit
CLINICAL_WAVES = {
    "baseline": ("hba1c", "anthropometry"),
    "m6": ("hba1c", "anthropometry"),
    "m12": ("hba1c", "anthropometry"),
}


def for_wave(code: str) -> tuple[str, ...]:
    return CLINICAL_WAVES.get(code, ())


def add_measures(session: Session, study, actor, tz: ZoneInfo, today, seed: int) -> int:
    """Enter the demo's HbA1c and weight for everyone who answered a measured wave; returns the count."""
    from api.participants.models import Participant
    from api.responses.models import Response
    from api.responses.service import submit_response
    from api.studies.models import Arm, Wave

    rng = np.random.default_rng(seed + 7)
    waves = {w.id: w for w in session.exec(select(Wave).where(Wave.study_id == study.id)).all()}
    kinds = {a.id: a.kind for a in session.exec(select(Arm).where(Arm.study_id == study.id)).all()}
    answered = sorted(
        set(session.exec(select(Response.participant_id, Response.wave_id).where(Response.study_id == study.id)).all())
    )
    people = {p.id: p for p in session.exec(select(Participant).where(Participant.study_id == study.id)).all()}
    base: dict[int, tuple[float, float, float]] = {}
    n = 0
    for pid, wave_id in answered:
        wave = waves[wave_id]
        if wave.code not in CLINICAL_WAVES:
            continue
        p = people[pid]
        if pid not in base:
            base[pid] = (
                float(np.clip(rng.normal(62, 12), 42, 120)),
                float(np.clip(rng.normal(92, 16), 50, 180)),
                float(np.clip(rng.normal(168, 9), 145, 200)),
            )
        hba1c0, weight0, height = base[pid]
        years = wave.offset_days / 365
        peer = p.arm_id is not None and kinds.get(p.arm_id) == "intervention"
        later = wave.offset_days > 0
        hba1c = hba1c0
        weight = weight0
        if later:
            hba1c += -1 - (3 * years if peer else 0) + rng.normal(0, 6)
            weight += (-1.5 if peer else -0.5) * years + rng.normal(0, 2.5)
        # Baseline is measured on enrolment or in the week after it; later visits within 3 days of the due date.
        shift = int(rng.integers(0, 7)) if not later else int(rng.integers(-3, 4))
        visit = p.enrolled_on + timedelta(days=wave.offset_days + shift)
        from_records = wave.code == "m12" and rng.random() < 0.1
        lab_day = visit + timedelta(days=int(rng.integers(21, 43))) if from_records else visit
        hba1c = float(np.clip(hba1c, 25, 150))
        entries = [
            (
                "hba1c",
                lab_day,
                {"hba1c_pct": round(0.09148 * hba1c + 2.152, 1)}
                if rng.random() < 0.3
                else {"hba1c_mmol": round(hba1c)},
                {"hba1c_source": 4 if from_records else 2},
            ),
            (
                "anthropometry",
                visit,
                {"weight_lb": round(weight / 0.45359237, 1)} if rng.random() < 0.2 else {"weight_kg": round(weight, 1)},
                {"height_cm": round(height), "anthropometry_source": 1},
            ),
        ]
        for code, day, value, rest in entries:
            if day > today:
                continue
            submit_response(
                session,
                participant=p,
                wave_code=wave.code,
                instrument_code=code,
                answers={**value, **rest},
                completed_at=dates.on_day(day, time(9, 15), tz),
                mode="import",
                actor=actor,
            )
            n += 1
    return n
