"""Harms by arm, as the CONSORT extension for harms asks (Ioannidis 2004; Junqueira 2023).

For each arm: participants with at least one adverse event out of the arm's N (with an exact
Clopper-Pearson interval), the number of events, and the same for serious events, each ICH E2A
seriousness criterion, severity, relatedness to the intervention and discontinuation because of
an event. Participants, not events, are the unit of the proportions: one participant with three
events counts once in ``n_participants`` and three times in ``n_events``.

Input is the ``safety`` export (rows with ``record == "adverse_event"``) or any frame with the
columns below; the denominator comes separately, because participants without events have no
event row.

Examples
--------
>>> import pandas as pd
>>> events = pd.DataFrame({
...     "participant": ["P1", "P1", "P2", "P7"],
...     "seriousness": ["", "hospitalisation", "", "death;life_threatening"],
...     "severity": ["mild", "severe", "moderate", "severe"],
...     "relatedness": ["not_related", "possibly", "unlikely", "not_related"],
... })
>>> people = pd.DataFrame({"participant": [f"P{i}" for i in range(1, 9)], "arm": ["peer"] * 4 + ["usual"] * 4})
>>> t = harms_table(events, people)
>>> t.loc[t.measure == "any", ["arm", "n_participants", "N", "n_events"]].values.tolist()
[['peer', 2, 4, 3], ['usual', 1, 4, 1]]
>>> t.loc[t.measure == "serious", ["arm", "n_participants", "n_events"]].values.tolist()
[['peer', 1, 1], ['usual', 1, 1]]
>>> [round(x, 4) for x in clopper_pearson(0, 20)]
[0.0, 0.1684]
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

#: ICH E2A seriousness criteria, in the order tables show them.
SERIOUSNESS = ("death", "life_threatening", "hospitalisation", "disability", "congenital_anomaly", "other_important")
SEVERITIES = ("mild", "moderate", "severe")
RELATEDNESS = ("not_related", "unlikely", "possibly", "probably", "definitely")
#: Relatedness levels counted as related to the intervention.
RELATED = ("possibly", "probably", "definitely")
#: Actions that end the participant's intervention or participation because of the event.
DISCONTINUING = ("intervention_stopped", "withdrawn_from_study")

__all__ = ["clopper_pearson", "harms_table"]

COLUMNS = ["arm", "measure", "level", "n_participants", "N", "proportion", "ci_lower", "ci_upper", "n_events"]


def clopper_pearson(x: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval of a binomial proportion ``x / n``.

    The limits are the ``alpha/2`` and ``1 - alpha/2`` quantiles of Beta(x, n - x + 1) and
    Beta(x + 1, n - x), with 0 and 1 at the ends (as R's ``binom.test``). ``n == 0`` gives NaNs.

    >>> [round(v, 7) for v in clopper_pearson(9, 24)]
    [0.1879929, 0.5940636]
    """
    from scipy.stats import beta

    if n == 0:
        return (float("nan"), float("nan"))
    if not 0 <= x <= n:
        raise ValueError(f"x must be between 0 and n, got {x} of {n}")
    lower = 0.0 if x == 0 else float(beta.ppf(alpha / 2, x, n - x + 1))
    upper = 1.0 if x == n else float(beta.ppf(1 - alpha / 2, x + 1, n - x))
    return lower, upper


def _criteria(value) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        return [c for c in value.replace(",", ";").split(";") if c.strip()]
    return [str(c) for c in value]


def _normalise(events: pd.DataFrame, participant: str) -> pd.DataFrame:
    if participant not in events.columns:
        raise ValueError(f"events need a {participant!r} column")
    ev = events.copy()
    if "seriousness" in ev.columns:
        crit = ev["seriousness"].map(_criteria)
    else:
        crit = pd.Series([[c for c in SERIOUSNESS if c in ev.columns and bool(row[c])] for _, row in ev.iterrows()])
        crit.index = ev.index
    for c in SERIOUSNESS:
        ev[f"_crit_{c}"] = crit.map(lambda cs, c=c: c in cs)
    if "serious" in ev.columns:
        flagged = ev["serious"].map(lambda v: bool(v) if v is not None and not pd.isna(v) else False)
        ev["_serious"] = flagged.astype(bool) | crit.map(bool)
    else:
        ev["_serious"] = crit.map(bool)
    for name in ("severity", "relatedness", "action_taken"):
        if name not in ev.columns:
            ev[name] = None
    ev["_related"] = ev["relatedness"].isin(RELATED)
    ev["_discontinued"] = ev["action_taken"].isin(DISCONTINUING)
    return ev


def harms_table(
    events: pd.DataFrame,
    participants: pd.DataFrame | Mapping[str, int],
    *,
    arm: str = "arm",
    participant: str = "participant",
    alpha: float = 0.05,
    total: bool = False,
) -> pd.DataFrame:
    """The CONSORT harms table by arm, one row per arm × measure (tidy).

    Parameters
    ----------
    events : DataFrame
        One row per adverse event: ``participant``; ``seriousness`` (criteria as a list or a
        ``;``-separated string, empty = not serious) or one boolean column per criterion; optional
        ``serious``, ``severity``, ``relatedness`` and ``action_taken``; ``arm`` when
        ``participants`` is a mapping.
    participants : DataFrame or mapping
        The denominator: one row per participant with ``participant`` and ``arm`` columns (e.g.
        the randomised participants), or ``{arm: N}``. Events of participants outside it are
        ignored (a DataFrame) or counted by their own ``arm`` column (a mapping).
    arm, participant : str
        Column names.
    alpha : float
        1 - confidence level of the exact intervals.
    total : bool
        Add rows for all arms together (``arm == "total"``).

    Returns
    -------
    DataFrame
        ``arm, measure, level, n_participants, N, proportion, ci_lower, ci_upper, n_events``.
        Measures: ``any`` (any adverse event), ``serious``, ``seriousness`` (one row per ICH E2A
        criterion), ``severity`` (mild, moderate, severe), ``relatedness`` (each level),
        ``related`` (possibly, probably or definitely related), ``serious_related`` and
        ``discontinued`` (intervention stopped or withdrawn from the study because of the event).
        ``proportion`` = n_participants / N; the interval is Clopper-Pearson's.

    Examples
    --------
    >>> import pandas as pd
    >>> ev = pd.DataFrame({"participant": ["a", "a", "b"], "arm": ["peer", "peer", "usual"],
    ...                    "seriousness": ["", "death", ""], "outcome": ["", "fatal", ""]})
    >>> t = harms_table(ev, {"peer": 10, "usual": 10})
    >>> t.loc[t.measure.isin(["any", "serious"]), ["arm", "measure", "n_participants", "n_events"]].values.tolist()
    [['peer', 'any', 1, 2], ['peer', 'serious', 1, 1], ['usual', 'any', 1, 1], ['usual', 'serious', 0, 0]]
    """
    ev = _normalise(events, participant)
    if isinstance(participants, Mapping):
        sizes = {str(k): int(v) for k, v in participants.items()}
        if arm not in ev.columns:
            raise ValueError(f"with a mapping of arm sizes, events need an {arm!r} column")
        ev[arm] = ev[arm].astype(str)
    else:
        if not {participant, arm} <= set(participants.columns):
            raise ValueError(f"participants need {participant!r} and {arm!r} columns")
        people = participants[[participant, arm]].drop_duplicates(participant)
        sizes = people.groupby(arm, sort=False).size().astype(int).to_dict()
        sizes = {str(k): v for k, v in sizes.items()}
        ev = ev.drop(columns=[arm], errors="ignore").merge(
            people.assign(**{arm: people[arm].astype(str)}), on=participant, how="inner"
        )
    groups: list[tuple[str, pd.DataFrame, int]] = [(a, ev[ev[arm] == a], n) for a, n in sizes.items()]
    if total:
        groups.append(("total", ev, sum(sizes.values())))
    measures: list[tuple[str, str, pd.Series]] = []

    def add(measure: str, level: str, mask_fn):
        measures.append((measure, level, mask_fn))

    add("any", "any adverse event", lambda d: pd.Series(True, index=d.index))
    add("serious", "serious adverse event", lambda d: d["_serious"])
    for c in SERIOUSNESS:
        add("seriousness", c, lambda d, c=c: d[f"_crit_{c}"])
    for s in SEVERITIES:
        add("severity", s, lambda d, s=s: d["severity"] == s)
    for r in RELATEDNESS:
        add("relatedness", r, lambda d, r=r: d["relatedness"] == r)
    add("related", "possibly, probably or definitely related", lambda d: d["_related"])
    add("serious_related", "serious and related", lambda d: d["_serious"] & d["_related"])
    add("discontinued", "intervention stopped or withdrawn because of the event", lambda d: d["_discontinued"])
    rows = []
    for a, d, n in groups:
        for measure, level, fn in measures:
            hit = d[fn(d).astype(bool)] if len(d) else d
            k = int(hit[participant].nunique())
            lo, hi = clopper_pearson(k, n, alpha) if n else (np.nan, np.nan)
            rows.append([a, measure, level, k, n, (k / n) if n else np.nan, lo, hi, int(len(hit))])
    return pd.DataFrame(rows, columns=COLUMNS)
