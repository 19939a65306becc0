"""Participant flow (CONSORT 2010, item 13 and the flow diagram): counts per arm and wave.

:func:`participant_flow` partitions the allocated participants of each arm at every wave into
exactly one of: ``responded`` (data usable at the wave), ``data_withdrawn`` (consent for use of
data withdrawn: nothing of theirs is analysed), ``withdrew`` (follow-up stopped on or before the
wave's day), ``lost_to_follow_up`` (declared lost on or before that day), ``missed`` (the window
closed without data) and ``not_yet_due``. The buckets add up to ``allocated`` at every wave, so a
diagram drawn from them balances. Participants entered in error (``voided``) are counted apart and
never allocated.

Days are days since enrolment (no calendar dates), so the flow of a de-identified study is itself
de-identified.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
else:
    from analysis._lazy import pandas as pd

__all__ = ["BUCKETS", "PARTICIPANT_COLUMNS", "participant_flow"]

PARTICIPANT_COLUMNS = (
    "participant",
    "arm",
    "status",
    "status_day",
    "status_reason",
    "intervention_stopped_day",
    "intervention_stopped_reason",
    "follow_up_stopped_day",
    "follow_up_stopped_reason",
    "consent_withdrawn_day",
    "consent_withdrawn_reason",
    "voided",
)
BUCKETS = ("responded", "data_withdrawn", "withdrew", "lost_to_follow_up", "missed", "not_yet_due")
NO_REASON = "not given"


def _reasons(values: pd.Series) -> dict[str, int]:
    """Counts of reasons, most frequent first (ties alphabetically); blanks are ``not given``."""
    texts = [
        NO_REASON if (v is None or (isinstance(v, float) and np.isnan(v)) or not str(v).strip()) else str(v)
        for v in values
    ]
    return dict(sorted(Counter(texts).items(), key=lambda kv: (-kv[1], kv[0])))


def _with_reasons(frame: pd.DataFrame, reason: str) -> dict[str, Any]:
    return {"n": int(len(frame)), "reasons": _reasons(frame[reason]) if len(frame) else {}}


def _on_or_before(day: pd.Series, limit: float) -> pd.Series:
    return day.notna() & (day.astype(float) <= limit)


def participant_flow(
    participants: pd.DataFrame, waves: pd.DataFrame, visits: pd.DataFrame, arms: Sequence[str] = ()
) -> dict[str, Any]:
    """CONSORT counts per arm: allocated, discontinued intervention, per-wave follow-up, analysed.

    Parameters
    ----------
    participants : DataFrame
        One row per enrolled participant with :data:`PARTICIPANT_COLUMNS`: ``arm`` (None = not
        allocated), ``status`` (``active``, ``withdrawn``, ``lost_to_follow_up``, ``completed``),
        ``*_day`` columns in days since enrolment (NaN = does not apply), ``*_reason`` text and
        ``voided`` (entered in error).
    waves : DataFrame
        ``wave`` and ``offset_days``, in schedule order.
    visits : DataFrame
        ``participant``, ``wave``, ``responded`` (any response at the wave) and ``due`` (the
        window has closed or a response exists) for every participant and wave.
    arms : sequence of str, optional
        Arms to report in this order, even when nobody is allocated to them yet; other arms
        follow in order of appearance, participants without an arm last (``arm`` None).

    Returns
    -------
    dict
        ``{"arms": [...], "voided": n, "enrolled": n}``; each arm holds ``arm``, ``allocated``,
        ``discontinued_intervention`` ``{n, reasons}``, ``waves`` (per wave: ``wave``,
        ``offset_days`` and every bucket of :data:`BUCKETS`, with ``withdrew``,
        ``lost_to_follow_up`` and ``data_withdrawn`` as ``{n, reasons}``) and ``analysed``
        (``n`` with data at one wave or more and consent kept; ``excluded`` ``{n, reasons}``).

    Examples
    --------
    >>> people = pd.DataFrame({
    ...     "participant": ["a", "b", "c", "d"], "arm": ["peer", "peer", "peer", "usual"],
    ...     "status": ["active", "withdrawn", "lost_to_follow_up", "active"],
    ...     "status_day": [None, 40, 100, None], "status_reason": [None, "moved", "no reply", None],
    ...     "intervention_stopped_day": [None, 30, None, None],
    ...     "intervention_stopped_reason": [None, "too far", None, None],
    ...     "follow_up_stopped_day": [None, 40, None, None],
    ...     "follow_up_stopped_reason": [None, "moved", None, None],
    ...     "consent_withdrawn_day": [None] * 4, "consent_withdrawn_reason": [None] * 4,
    ...     "voided": [False] * 4})
    >>> waves = pd.DataFrame({"wave": ["baseline", "m3"], "offset_days": [0, 90]})
    >>> visits = pd.DataFrame({
    ...     "participant": ["a", "a", "b", "b", "c", "c", "d", "d"],
    ...     "wave": ["baseline", "m3"] * 4, "responded": [1, 1, 1, 0, 1, 0, 1, 0],
    ...     "due": [1, 1, 1, 1, 1, 1, 1, 1]})
    >>> flow = participant_flow(people, waves, visits)
    >>> peer = flow["arms"][0]
    >>> peer["allocated"], peer["discontinued_intervention"]
    (3, {'n': 1, 'reasons': {'too far': 1}})
    >>> m3 = peer["waves"][1]
    >>> m3["responded"], m3["withdrew"]["n"], m3["lost_to_follow_up"]["n"]
    (1, 1, 0)
    >>> m3["missed"]  # c was declared lost on day 100, after the m3 day (90)
    1
    """
    people = participants.copy()
    for col in PARTICIPANT_COLUMNS:
        if col not in people:
            people[col] = None
    voided = people["voided"].fillna(False).astype(bool)
    n_voided = int(voided.sum())
    people = people[~voided]
    waves = waves.reset_index(drop=True)
    v = visits.copy()
    v["responded"] = v["responded"].fillna(False).astype(bool)
    v["due"] = v["due"].fillna(False).astype(bool)
    responded = set(zip(v.loc[v["responded"], "participant"], v.loc[v["responded"], "wave"], strict=True))
    due = set(zip(v.loc[v["due"], "participant"], v.loc[v["due"], "wave"], strict=True))
    day = {c: pd.to_numeric(people[c], errors="coerce") for c in PARTICIPANT_COLUMNS if c.endswith("_day")}
    consent_out = day["consent_withdrawn_day"].notna()
    lost = people["status"].eq("lost_to_follow_up")

    arms_out = []
    arm_keys = people["arm"].astype(object).where(people["arm"].notna(), None)
    present = list(dict.fromkeys(arm_keys.tolist()))
    order = list(arms) + [a for a in present if a is not None and a not in arms] + [None] * (None in present)
    for arm in order:
        in_arm = (arm_keys == arm) if arm is not None else arm_keys.isna()
        group = people[in_arm]
        stopped = group[day["intervention_stopped_day"][in_arm].notna()]
        per_wave = []
        for _, w in waves.iterrows():
            code, off = w["wave"], float(w["offset_days"])
            has = group["participant"].map(lambda p, code=code: (p, code) in responded)
            is_due = group["participant"].map(lambda p, code=code: (p, code) in due)
            gone = consent_out[in_arm]
            ok = has & ~gone
            withdrew = ~ok & ~gone & _on_or_before(day["follow_up_stopped_day"][in_arm], off)
            lost_here = ~ok & ~gone & ~withdrew & lost[in_arm] & _on_or_before(day["status_day"][in_arm], off)
            rest = ~ok & ~gone & ~withdrew & ~lost_here
            per_wave.append(
                {
                    "wave": code,
                    "offset_days": int(off),
                    "responded": int(ok.sum()),
                    "data_withdrawn": _with_reasons(group[gone], "consent_withdrawn_reason"),
                    "withdrew": _with_reasons(group[withdrew], "follow_up_stopped_reason"),
                    "lost_to_follow_up": _with_reasons(group[lost_here], "status_reason"),
                    "missed": int((rest & is_due).sum()),
                    "not_yet_due": int((rest & ~is_due).sum()),
                }
            )
        any_data = group["participant"].map(lambda p: any((p, w) in responded for w in waves["wave"]))
        usable = any_data & ~consent_out[in_arm]
        reasons = np.where(consent_out[in_arm], "consent for use of data withdrawn", "no outcome data")
        excluded = pd.DataFrame({"reason": reasons[~usable.to_numpy()]})
        arms_out.append(
            {
                "arm": arm,
                "allocated": int(len(group)),
                "discontinued_intervention": _with_reasons(stopped, "intervention_stopped_reason"),
                "waves": per_wave,
                "analysed": {"n": int(usable.sum()), "excluded": _with_reasons(excluded, "reason")},
            }
        )
    return {"enrolled": int(len(participants)), "voided": n_voided, "arms": arms_out}
