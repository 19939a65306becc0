"""Synthetic cohorts with known effects, for the demo and for recovery tests.

:func:`simulate_cohort` draws a small peer-support trial: participants spread over sites and arms,
questionnaires at every wave with item answers (as a participant would submit them), dropout that
depends on baseline social isolation, and the generating parameters, so that an analysis can be
checked against the truth it should recover.

Generating model
----------------
For participant *i* in arm *a* at time *t* (years since enrolment, from the actual completion day):

* **PAM-13 activation** (0–100, supplied as an external score because the calibration table is
  licensed): ``pam_i(t) = pam_mean + site_effect + u0_i``
  ``+ (pam_slope[a] + iso_i * pam_slope_isolated_extra[a] + u1_i) * t + e`` with
  ``u0 ~ N(0, pam_sd_intercept)``, ``u1 ~ N(0, pam_sd_slope)`` (independent), ``e ~ N(0, pam_sd_residual)``.
  ``pam_slope`` is +6 points/year in peer-support arms and +1 in usual care; isolated participants
  in peer-support arms gain ``pam_slope_isolated_extra`` more (what works for whom).
* **SEMCD-6** (mean 1–10): same form with ``semcd_*`` parameters (+0.8 vs +0.2 per year).
* **PHQ-9** (sum 0–27): same form with ``phq_*`` parameters (−3 vs −1 points per year).
* **GAD-7** (sum 0–21): same form with ``gad_*`` parameters (−2 vs −0.5 per year).
* **LSNS-6** (sum 0–30): ``lsns_mean + u0 + lsns_slope[a] * t + e``; a participant is *isolated* when
  the baseline LSNS-6 total is below 12.
* The random intercepts share one standardised "wellbeing" factor ``f_i`` (loading
  ``intercept_factor_loading``) so that low activation goes with more depressive symptoms.
* **Dropout**: time to dropout is exponential with yearly hazard ``dropout_hazard`` multiplied by
  ``dropout_hr_isolated`` for isolated participants; a dropout is ``withdrawn`` with probability
  ``withdrawn_share``, else ``lost_to_follow_up``. Waves after dropout are not answered; besides,
  each follow-up wave is skipped at random with probability ``wave_skip_prob``.
* **Items**: PAM-13 items are drawn from the latent activation by a graded response model
  (``pam_item_*`` parameters: discrimination 1.8, item locations spread evenly over ±1 SD of a
  latent centred at 55 with SD 12, category steps −1.6, 0, +1.6), so their internal consistency is
  realistic (Cronbach's alpha about 0.85–0.9 at baseline, as published for PAM-13); the activation
  score itself is the external score. For the other instruments the latent scale value is rounded
  to an attainable raw sum and that sum is spread at random over the items within their response
  range, so the scored scale equals the latent value up to rounding and clipping. Each item is left
  blank with probability ``item_missing_prob``.
* **Timing**: a wave is completed ``offset + U{jitter_days}`` days after enrolment (baseline on day
  0–2). Enrolment is spread uniformly over ``recruitment_days`` before the reference date
  (``enrolled_offset_days``); with ``followup_cutoff_days`` set, data are cut that many days after
  the reference date and participants still in follow-up are ``active``.

Everything is drawn from ``numpy.random.Generator`` streams seeded with ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SimulationParams", "SyntheticCohort", "simulate_cohort", "CONTROL_KINDS"]

# Arm kinds that count as "not peer support" in the generating model.
CONTROL_KINDS = ("control", "active_comparator")

PAM_EXTERNAL_SCALE = "pam13_activation"


@dataclass
class SimulationParams:
    """Generating parameters of :func:`simulate_cohort` (see the module docstring for the model).

    Slopes are per year. Keys of the ``*_slope`` dicts are arm kinds (``intervention``, ``control``,
    ``active_comparator``); an arm whose kind is missing from the dict uses the ``control`` value.

    Examples
    --------
    >>> SimulationParams(pam_mean=50).as_dict()["pam_mean"]
    50
    """

    pam_mean: float = 52.0
    pam_sd_intercept: float = 8.0
    pam_sd_slope: float = 2.0
    pam_sd_residual: float = 4.0
    pam_slope: dict = field(default_factory=lambda: {"intervention": 6.0, "control": 1.0})
    pam_slope_isolated_extra: dict = field(default_factory=lambda: {"intervention": 2.0, "control": 0.0})

    semcd_mean: float = 5.6
    semcd_sd_intercept: float = 1.4
    semcd_sd_slope: float = 0.4
    semcd_sd_residual: float = 0.6
    semcd_slope: dict = field(default_factory=lambda: {"intervention": 0.8, "control": 0.2})

    phq_mean: float = 10.0
    phq_sd_intercept: float = 4.0
    phq_sd_slope: float = 1.5
    phq_sd_residual: float = 2.0
    phq_slope: dict = field(default_factory=lambda: {"intervention": -3.0, "control": -1.0})

    gad_mean: float = 8.0
    gad_sd_intercept: float = 3.5
    gad_sd_slope: float = 1.0
    gad_sd_residual: float = 2.0
    gad_slope: dict = field(default_factory=lambda: {"intervention": -2.0, "control": -0.5})

    lsns_mean: float = 14.0
    lsns_sd_intercept: float = 5.5
    lsns_sd_residual: float = 1.5
    lsns_slope: dict = field(default_factory=lambda: {"intervention": 1.0, "control": 0.0})
    isolation_cutoff: float = 12.0

    # Correlation of the random intercepts through one shared factor (0 = independent outcomes).
    intercept_factor_loading: float = 0.5
    site_sd: float = 2.0  # SD of site shifts of PAM activation (other outcomes get scaled shifts)

    dropout_hazard: float = 0.25
    dropout_hr_isolated: float = 2.5
    withdrawn_share: float = 0.4
    wave_skip_prob: float = 0.05
    item_missing_prob: float = 0.01

    # PAM-13 items from the latent activation (graded response model, Samejima 1969): with
    # theta = (activation - pam_item_center) / pam_item_scale, item j (location spread evenly over
    # +-pam_item_spread: the PAM items are ordered by difficulty, Hibbard et al. 2005) is answered
    # at least c (c = 2, 3, 4) with probability logistic(a * (theta - loc_j - step_c)).
    pam_item_discrimination: float = 1.8
    pam_item_center: float = 55.0
    pam_item_scale: float = 12.0
    pam_item_spread: float = 1.0
    pam_item_steps: tuple = (-1.6, 0.0, 1.6)

    jitter_days: tuple = (-5, 10)
    recruitment_days: int = 120
    followup_cutoff_days: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SyntheticCohort:
    """A simulated cohort: participants, questionnaire responses and the parameters behind them.

    Attributes
    ----------
    participants : DataFrame
        One row per participant: ``participant`` (``DEMO-001``…), ``site``, ``arm``, ``arm_kind``,
        ``enrolled_offset_days`` (days between enrolment and the reference date),
        ``baseline_isolated`` (baseline LSNS-6 < 12), ``status`` (active | withdrawn |
        lost_to_follow_up | completed), ``status_days`` (days from enrolment to dropout, NaN if
        none), ``last_wave`` (last wave answered).
    responses : list of dict
        One per instrument filled at one wave: ``participant``, ``wave``, ``instrument``,
        ``answers`` ({item_code: int or None}), ``external_scores`` (e.g.
        ``{"pam13_activation": 58.2}``), ``days_since_enrolment``.
    params : dict
        The generating parameters (:class:`SimulationParams` as a dict plus the design arguments).
    latent : DataFrame
        The latent (noise-free of item rounding) value of each outcome per participant × wave.

    Examples
    --------
    >>> c = simulate_cohort(n_participants=12, seed=1)
    >>> len(c.participants), c.params["seed"]
    (12, 1)
    """

    participants: pd.DataFrame
    responses: list
    params: dict
    latent: pd.DataFrame | None = None
    waves: tuple = ()
    arms: tuple = ()


# Fallback context items when the instrument library has no ``context`` definition yet.
_FALLBACK_CONTEXT = {
    "context_age_band": ["18-39", "40-59", "60-74", "75+"],
    "context_gender": ["woman", "man", "another gender"],
    "context_living_situation": ["lives alone", "with partner or family", "with others"],
}


def _context_items() -> list[tuple[str, list[tuple[Any, str]]]]:
    """(item code, [(option code, label), ...]) of the choice items of the context instrument."""
    try:
        import instruments

        inst = instruments.get("context")
        out = []
        for it in inst.items:
            if getattr(it, "identifier", False) or it.kind not in ("choice",) or not it.options:
                continue
            opts = [(o.code, o.label) for o in it.options if not o.missing]
            if opts:
                out.append((it.code, opts))
        if out:
            return out
    except Exception:  # noqa: BLE001 - the library may not be there yet; the fallback keeps the demo running
        pass
    return [(code, list(enumerate(labels))) for code, labels in _FALLBACK_CONTEXT.items()]


def _spread(rng: np.random.Generator, totals: np.ndarray, k: int, lo: int, hi: int) -> np.ndarray:
    """Spread integer raw sums over ``k`` items coded ``lo..hi`` at random; rows sum to ``totals``.

    Each item has ``hi - lo`` unit slots; the ``total - k*lo`` units are put in slots drawn without
    replacement, which keeps items exchangeable and every item inside its range.
    """
    n = len(totals)
    width = hi - lo
    extra = np.clip(totals - k * lo, 0, k * width).astype(int)
    keys = rng.random((n, k * width))
    ranks = keys.argsort(axis=1).argsort(axis=1)
    chosen = ranks < extra[:, None]
    return lo + chosen.reshape(n, k, width).sum(axis=2)


def _slope(table: dict, kind: str) -> float:
    return float(table.get(kind, table.get("control", 0.0)))


def simulate_cohort(
    n_participants: int = 60,
    seed: int = 20261125,
    sites: Sequence[str] = ("north", "south"),
    arms: Sequence[tuple[str, str]] = (
        ("group", "intervention"),
        ("online", "intervention"),
        ("usual_care", "control"),
    ),
    waves: Sequence[tuple[str, int]] = (("baseline", 0), ("m1", 30), ("m3", 90), ("m6", 180), ("m12", 365)),
    params: SimulationParams | None = None,
) -> SyntheticCohort:
    """Simulate a peer-support cohort with known effects.

    Parameters
    ----------
    n_participants : int
        Number of participants; they are allocated to arms in rotation and to sites at random.
    seed : int
        Seed of the random generator; the same seed gives the same cohort.
    sites : sequence of str
        Site codes.
    arms : sequence of (code, kind)
        Arm codes with their kind (``intervention``, ``active_comparator`` or ``control``).
    waves : sequence of (code, offset_days)
        Scheduled waves; the first is the baseline, where ``context`` is also answered.
    params : SimulationParams, optional
        Generating parameters; defaults documented in :class:`SimulationParams`.

    Returns
    -------
    SyntheticCohort

    Examples
    --------
    >>> cohort = simulate_cohort(n_participants=30, seed=1)
    >>> cohort.participants.columns[:3].tolist()
    ['participant', 'site', 'arm']
    >>> sorted({r["instrument"] for r in cohort.responses})
    ['context', 'gad7', 'lsns6', 'pam13', 'phq9', 'semcd6']
    """
    p = params or SimulationParams()
    rng = np.random.default_rng(seed)
    n = int(n_participants)
    if n < 1:
        raise ValueError("n_participants must be at least 1")
    sites = tuple(sites)
    arms = tuple((str(a), str(k)) for a, k in arms)
    waves = tuple((str(w), int(o)) for w, o in waves)

    width = max(3, len(str(n)))
    codes = [f"DEMO-{i + 1:0{width}d}" for i in range(n)]
    # Rotation over a shuffled order balances arms like permuted blocks would.
    arm_idx = rng.permutation(np.arange(n) % len(arms))
    site_idx = rng.integers(0, len(sites), n)
    arm_code = np.array([arms[i][0] for i in arm_idx])
    arm_kind = np.array([arms[i][1] for i in arm_idx])
    enrolled_offset = rng.integers(0, p.recruitment_days + 1, n)

    site_shift = rng.normal(0.0, p.site_sd, len(sites))[site_idx]  # in PAM points

    # Shared wellbeing factor: higher = more activated, less depressed.
    f = rng.standard_normal(n)
    lam = float(np.clip(p.intercept_factor_loading, 0.0, 1.0))

    def intercept(sd: float, sign: float) -> np.ndarray:
        return sd * (sign * lam * f + np.sqrt(1 - lam**2) * rng.standard_normal(n))

    u0 = {
        "pam": intercept(p.pam_sd_intercept, +1),
        "semcd": intercept(p.semcd_sd_intercept, +1),
        "phq": intercept(p.phq_sd_intercept, -1),
        "gad": intercept(p.gad_sd_intercept, -1),
        "lsns": intercept(p.lsns_sd_intercept, +1),
    }
    u1 = {
        "pam": rng.normal(0, p.pam_sd_slope, n),
        "semcd": rng.normal(0, p.semcd_sd_slope, n),
        "phq": rng.normal(0, p.phq_sd_slope, n),
        "gad": rng.normal(0, p.gad_sd_slope, n),
        "lsns": np.zeros(n),
    }

    # Timing of every participant × wave (baseline on day 0-2).
    n_w = len(waves)
    offsets = np.array([o for _, o in waves])
    lo_j, hi_j = p.jitter_days
    jitter = rng.integers(int(lo_j), int(hi_j) + 1, (n, n_w))
    jitter[:, 0] = rng.integers(0, 3, n)
    days = np.maximum(offsets[None, :] + jitter, 0)
    days = np.maximum.accumulate(days, axis=1)  # waves never out of order
    t_years = days / 365.25

    # Baseline LSNS decides isolation, which drives dropout and moderation.
    lsns_base = p.lsns_mean + u0["lsns"] + rng.normal(0, p.lsns_sd_residual, n)
    lsns_base_total = np.clip(np.rint(lsns_base), 0, 30)
    isolated = lsns_base_total < p.isolation_cutoff

    kinds = np.unique(arm_kind)

    def slopes(table: dict) -> np.ndarray:
        out = np.zeros(n)
        for k in kinds:
            out[arm_kind == k] = _slope(table, k)
        return out

    pam_fixed_slope = slopes(p.pam_slope) + isolated * slopes(p.pam_slope_isolated_extra)
    latent = {
        "pam": (p.pam_mean + site_shift + u0["pam"])[:, None]
        + (pam_fixed_slope + u1["pam"])[:, None] * t_years
        + rng.normal(0, p.pam_sd_residual, (n, n_w)),
        "semcd": (p.semcd_mean + site_shift * p.semcd_sd_intercept / p.pam_sd_intercept + u0["semcd"])[:, None]
        + (slopes(p.semcd_slope) + u1["semcd"])[:, None] * t_years
        + rng.normal(0, p.semcd_sd_residual, (n, n_w)),
        "phq": (p.phq_mean - site_shift * p.phq_sd_intercept / p.pam_sd_intercept + u0["phq"])[:, None]
        + (slopes(p.phq_slope) + u1["phq"])[:, None] * t_years
        + rng.normal(0, p.phq_sd_residual, (n, n_w)),
        "gad": (p.gad_mean + u0["gad"])[:, None]
        + (slopes(p.gad_slope) + u1["gad"])[:, None] * t_years
        + rng.normal(0, p.gad_sd_residual, (n, n_w)),
        "lsns": (p.lsns_mean + u0["lsns"])[:, None]
        + slopes(p.lsns_slope)[:, None] * t_years
        + rng.normal(0, p.lsns_sd_residual, (n, n_w)),
    }
    latent["lsns"][:, 0] = lsns_base

    # Dropout: exponential time with a hazard raised by isolation.
    hazard = p.dropout_hazard * np.where(isolated, p.dropout_hr_isolated, 1.0)
    drop_days = rng.exponential(365.25 / np.maximum(hazard, 1e-12))
    drop_days = np.maximum(drop_days, 1.0)
    withdrawn = rng.random(n) < p.withdrawn_share
    if p.followup_cutoff_days is None:
        available = np.full(n, np.inf)
    else:
        available = enrolled_offset + float(p.followup_cutoff_days)

    observed = (days < drop_days[:, None]) & (days <= available[:, None])
    observed[:, 0] = True  # everyone enrolled answered baseline
    skip = rng.random((n, n_w)) < p.wave_skip_prob
    skip[:, 0] = False
    answered = observed & ~skip

    end_of_followup = days[:, -1]
    dropped = drop_days < np.minimum(end_of_followup, available)
    status = np.where(
        dropped,
        np.where(withdrawn, "withdrawn", "lost_to_follow_up"),
        np.where(end_of_followup <= available, "completed", "active"),
    )
    status_days = np.where(dropped, np.floor(drop_days), np.nan)
    last_idx = np.where(answered, np.arange(n_w)[None, :], -1).max(axis=1)
    last_wave = [waves[i][0] for i in last_idx]

    # Item answers, one instrument at a time, vectorised over participant × wave.
    flat_days = days.reshape(-1)
    nn = n * n_w

    def items_from_sum(prefix: str, totals: np.ndarray, k: int, lo: int, hi: int) -> np.ndarray:
        vals = _spread(rng, totals.reshape(-1), k, lo, hi).astype(object)
        blank = rng.random(vals.shape) < p.item_missing_prob
        vals[blank] = None
        return vals

    def rint_clip(x, lo, hi):
        return np.clip(np.rint(x), lo, hi).reshape(-1)

    pam_act = np.clip(latent["pam"], 0, 100).reshape(-1)
    # PAM-13 items from the latent activation (graded response model; parameters in SimulationParams),
    # so the items hang together as real PAM-13 answers do (alpha around 0.85-0.9).
    theta = (pam_act - p.pam_item_center) / p.pam_item_scale
    loc = np.linspace(-p.pam_item_spread, p.pam_item_spread, 13)
    steps = np.asarray(p.pam_item_steps, float)
    cum = 1 / (1 + np.exp(-p.pam_item_discrimination * (theta[:, None, None] - loc[None, :, None] - steps)))
    # The item model draws from a stream of its own; the main stream advances exactly as the earlier
    # sum-spreading generator did, so every other variable of a seeded cohort stays as it was.
    items_from_sum("pam13", rint_clip(13 + 39 * pam_act / 100, 13, 52), 13, 1, 4)
    item_rng = np.random.default_rng([seed, 13])
    u = item_rng.random((nn, 13))
    pam_items = (1 + (u[:, :, None] < cum).sum(axis=2)).astype(object)
    pam_items[item_rng.random(pam_items.shape) < p.item_missing_prob] = None
    semcd_items = items_from_sum("semcd6", rint_clip(6 * latent["semcd"], 6, 60), 6, 1, 10)
    phq_tot = rint_clip(latent["phq"], 0, 27)
    phq_items = items_from_sum("phq9", phq_tot, 9, 0, 3)
    gad_items = items_from_sum("gad7", rint_clip(latent["gad"], 0, 21), 7, 0, 3)
    lsns_tot = rint_clip(latent["lsns"], 0, 30)
    lsns_tot[0::n_w] = lsns_base_total  # baseline items add up to the total that defined isolation
    lsns_items = _spread(rng, lsns_tot, 6, 0, 5)
    # Difficulty item follows symptom load; it is not scored.
    phq_difficulty = np.clip(np.rint(phq_tot / 7 + rng.normal(0, 0.5, nn)), 0, 3).astype(int)

    context_items = _context_items()
    ctx_choice: dict[str, np.ndarray] = {}
    for code, opts in context_items:
        weights = np.ones(len(opts))
        if code.endswith("living_situation"):
            # Living alone goes with isolation, so context moderators carry some signal.
            alone = np.array(["alone" in str(lbl).lower() for _, lbl in opts])
            if alone.any():
                choice = np.empty(n, dtype=int)
                for iso_val in (False, True):
                    w = weights.copy()
                    w[alone] = 3.0 if iso_val else 0.5
                    idx = np.flatnonzero(isolated == iso_val)
                    choice[idx] = rng.choice(len(opts), size=len(idx), p=w / w.sum())
                ctx_choice[code] = choice
                continue
        ctx_choice[code] = rng.choice(len(opts), size=n, p=weights / weights.sum())

    def as_int(v):
        return None if v is None else int(v)

    responses: list[dict[str, Any]] = []
    for i in range(n):
        for w in range(n_w):
            if not answered[i, w]:
                continue
            r = i * n_w + w
            base = {"participant": codes[i], "wave": waves[w][0], "days_since_enrolment": int(days[i, w])}
            if w == 0:
                responses.append(
                    {
                        **base,
                        "instrument": "context",
                        "answers": {code: opts[ctx_choice[code][i]][0] for code, opts in context_items},
                        "external_scores": {},
                    }
                )
            responses.append(
                {
                    **base,
                    "instrument": "pam13",
                    "answers": {f"pam13_{j + 1}": as_int(pam_items[r, j]) for j in range(13)},
                    "external_scores": {PAM_EXTERNAL_SCALE: round(float(pam_act[r]), 1)},
                }
            )
            responses.append(
                {
                    **base,
                    "instrument": "semcd6",
                    "answers": {f"semcd6_{j + 1}": as_int(semcd_items[r, j]) for j in range(6)},
                    "external_scores": {},
                }
            )
            phq = {f"phq9_{j + 1}": as_int(phq_items[r, j]) for j in range(9)}
            phq["phq9_10"] = int(phq_difficulty[r])
            responses.append({**base, "instrument": "phq9", "answers": phq, "external_scores": {}})
            responses.append(
                {
                    **base,
                    "instrument": "gad7",
                    "answers": {f"gad7_{j + 1}": as_int(gad_items[r, j]) for j in range(7)},
                    "external_scores": {},
                }
            )
            responses.append(
                {
                    **base,
                    "instrument": "lsns6",
                    "answers": {f"lsns6_{j + 1}": int(lsns_items[r, j]) for j in range(6)},
                    "external_scores": {},
                }
            )

    participants = pd.DataFrame(
        {
            "participant": codes,
            "site": np.array(sites, dtype=object)[site_idx],
            "arm": arm_code,
            "arm_kind": arm_kind,
            "enrolled_offset_days": enrolled_offset.astype(int),
            "baseline_isolated": isolated.astype(bool),
            "status": status,
            "status_days": status_days.astype(float),
            "last_wave": last_wave,
        }
    )
    lat = pd.DataFrame(
        {
            "participant": np.repeat(codes, n_w),
            "wave": np.tile([w for w, _ in waves], n),
            "days": flat_days.astype(int),
            "answered": answered.reshape(-1),
            "pam_activation": latent["pam"].reshape(-1),
            "semcd": latent["semcd"].reshape(-1),
            "phq9": latent["phq"].reshape(-1),
            "gad7": latent["gad"].reshape(-1),
            "lsns6": latent["lsns"].reshape(-1),
        }
    )
    meta = {
        **p.as_dict(),
        "n_participants": n,
        "seed": seed,
        "sites": list(sites),
        "arms": [list(a) for a in arms],
        "waves": [list(w) for w in waves],
        "slope_units": "per year (days / 365.25)",
    }
    return SyntheticCohort(
        participants=participants, responses=responses, params=meta, latent=lat, waves=waves, arms=arms
    )
