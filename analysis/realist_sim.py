"""A simulated realist trial with a known moderator, mediator, non-compliance and personal goals.

The generating model (one row per participant, sites of equal size, 1:1 randomisation):

* ``lsns6`` (Lubben Social Network Scale, 0–30) ~ round(N(14, 5.5)); *isolated* means ``lsns6 < 12``.
* Compliance is one-sided: a latent share ``p_complier`` of participants would take up the
  programme if offered; ``adherent = treated × complier``. Sessions attended (of 12) are
  ``6 + Bin(6, 0.6)`` for adherent participants and ``Bin(5, 0.3)`` for those offered who do not
  take it up (so *adherent* is "attended at least 6 of 12 sessions"), 0 in the comparison arm.
* Mechanism: self-efficacy at month 3,
  ``semcd6_m3 = 2 + 0.6 semcd6_baseline + (a + a_isolated · isolated + u_site) · adherent + e_M``.
* Outcome: depression at month 12, ``phq9_m12 = y0 + 0.5 phq9_baseline + b · semcd6_m3 + e_Y`` (``y0`` = 4).

Every effect of the programme runs through the mechanism and needs uptake, so the exclusion
restriction (randomisation acts only through uptake) and sequential ignorability (nothing that
affects both the month-3 mechanism and the month-12 outcome is left out, given arm and baseline)
hold by construction, and the true values are known:

* moderation of the arm (ITT) effect by isolation: ``b · a_isolated · p_complier``;
* natural indirect effect of the arm through ``semcd6_m3``: ``b · p_complier · (a + a_isolated · P(isolated) + ū)``
  and the natural direct effect 0;
* complier average causal effect: ``b · (a + a_isolated · P(isolated | complier) + ū)``
  (``ū``: the site effects averaged with the sites' shares; ``P`` at their population values).

Personal goals (Goal Attainment Scaling): one to three goals per participant with weights 1–3,
baseline level −1, follow-up level ``round(N(−0.3 + 0.9 · adherent, 0.9))`` clipped to −2…+2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["RealistTruth", "RealistStudy", "simulate_realist"]


@dataclass
class RealistTruth:
    """The true moderation, indirect, direct and complier effects of a simulated study.

    Examples
    --------
    >>> simulate_realist(50, seed=1, site_sd=0.0).truth.direct
    0.0
    """

    moderation: float
    indirect: float
    direct: float
    cace: float
    p_complier: float
    p_isolated: float


@dataclass
class RealistStudy:
    """One simulated study: ``participants`` (one row each), ``goals`` (one row per goal) and ``truth``.

    Examples
    --------
    >>> sorted(simulate_realist(50, seed=1).goals.columns)
    ['baseline_level', 'followup_level', 'goal', 'participant', 'weight']
    """

    participants: pd.DataFrame
    goals: pd.DataFrame
    truth: RealistTruth


def simulate_realist(
    n: int = 300,
    seed: int | None = None,
    n_sites: int = 6,
    a: float = 1.0,
    a_isolated: float = 1.5,
    b: float = -2.0,
    p_complier: float = 0.7,
    site_sd: float = 0.3,
    y0: float = 4.0,
) -> RealistStudy:
    """Simulate one realist trial (see the module docstring for the model and its true values).

    Examples
    --------
    >>> s = simulate_realist(200, seed=1)
    >>> len(s.participants), round(s.truth.moderation, 2)
    (200, -2.1)
    """
    rng = np.random.default_rng(seed)
    site_u = rng.normal(0, site_sd, n_sites)
    site = rng.integers(0, n_sites, n)
    treated = rng.permutation(np.arange(n) % 2)
    lsns6 = np.clip(np.round(rng.normal(14, 5.5, n)), 0, 30)
    isolated = (lsns6 < 12).astype(int)
    complier = (rng.random(n) < p_complier).astype(int)
    adherent = treated * complier
    sessions = np.where(adherent == 1, 6 + rng.binomial(6, 0.6, n), np.where(treated == 1, rng.binomial(5, 0.3, n), 0))
    semcd_bl = np.clip(rng.normal(5.5, 1.5, n), 1, 10)
    phq_bl = np.clip(rng.normal(12, 4, n), 0, 27)
    m3 = 2 + 0.6 * semcd_bl + (a + a_isolated * isolated + site_u[site]) * adherent + rng.normal(0, 1.0, n)
    y = y0 + 0.5 * phq_bl + b * m3 + rng.normal(0, 2.5, n)
    participants = pd.DataFrame(
        {
            "participant": [f"P{i + 1:04d}" for i in range(n)],
            "site": [f"S{s + 1}" for s in site],
            "arm": np.where(treated == 1, "peer", "usual"),
            "treated": treated,
            "lsns6": lsns6,
            "isolated": isolated,
            "phq9_baseline": phq_bl,
            "semcd6_baseline": semcd_bl,
            "semcd6_m3": m3,
            "phq9_m12": y,
            "sessions_attended": sessions,
            "adherent": adherent,
        }
    )
    p_iso = float(stats.norm.cdf((11.5 - 14) / 5.5))  # P(round(N(14, 5.5)) < 12), clipping aside
    u_bar = float(site_u.mean())
    mean_a = a + a_isolated * p_iso + u_bar
    truth = RealistTruth(
        moderation=b * a_isolated * p_complier,
        indirect=b * p_complier * mean_a,
        direct=0.0,
        cace=b * mean_a,
        p_complier=p_complier,
        p_isolated=p_iso,
    )
    rows = []
    codes = participants["participant"].tolist()
    for i in range(n):
        for g in range(int(rng.integers(1, 4))):
            # round half to even, as np.round, then clip to -2..+2
            level = min(2, max(-2, round(float(rng.normal(-0.3 + 0.9 * adherent[i], 0.9)))))
            rows.append((codes[i], f"goal {g + 1}", int(rng.integers(1, 4)), -1, level))
    goals = pd.DataFrame(rows, columns=["participant", "goal", "weight", "baseline_level", "followup_level"])
    return RealistStudy(participants, goals, truth)
