"""The tidy ``long`` frame: column spec, loading with type checks, and cohort views.

Every analysis function works over the ``long`` export: one row per participant × wave × scale
score. :data:`LONG_COLUMNS` documents the columns; :func:`load_long` reads a CSV/Parquet file (or
takes a DataFrame), checks the columns and coerces their types with errors that name the column.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
else:
    from analysis._lazy import pandas as pd

__all__ = [
    "LONG_COLUMNS",
    "REQUIRED_COLUMNS",
    "DROPOUT_STATUSES",
    "load_long",
    "wave_order",
    "scale_frame",
    "wide",
    "baseline",
    "participants",
    "cohort_frame",
    "context_columns",
    "long_from_synthetic",
]

#: Column spec of the long frame: name -> (kind, description). ``context_*`` columns (one per
#: baseline context item, answer labels as strings) and ``code:*`` columns (quantitised
#: qualitative codes, 0/1 or counts per participant) may follow.
LONG_COLUMNS: dict[str, tuple[str, str]] = {
    "participant": ("string", "pseudonymous participant code"),
    "site": ("string", "site code"),
    "arm": ("string", "arm code"),
    "arm_kind": ("string", "intervention | active_comparator | control"),
    "wave": ("string", "wave code (baseline, m1, ...)"),
    "wave_offset": ("int", "planned days from enrolment to the wave"),
    "days": ("float", "days from enrolment to completion of the questionnaire"),
    "completed_at": ("datetime", "completion time (UTC)"),
    "out_of_window": ("bool", "completed outside the wave window"),
    "instrument": ("string", "instrument code (phq9, pam13, ...)"),
    "scale": ("string", "scale code (phq9, pam13_activation, ...)"),
    "value": ("float", "scale score; NaN when the missing-data rule was not met"),
    "band": ("string", "severity band / level label, if the scale has bands"),
    "level": ("float", "numeric level of the band (PAM level 1-4), NaN if none"),
    "items_answered": ("float", "number of items answered"),
    "prorated": ("bool", "the score was prorated for missing items"),
    "status": ("string", "participant status: active | withdrawn | lost_to_follow_up | completed"),
    "status_days": ("float", "days from enrolment to withdrawal or loss; NaN otherwise"),
    "intervention_stopped_days": ("float", "days from enrolment to stopping the intervention; NaN if not stopped"),
    "follow_up_stopped_days": ("float", "days from enrolment to stopping follow-up data collection; NaN otherwise"),
    "due_offset": (
        "float",
        "largest planned wave offset whose window had closed for the participant at export (-1: none yet; "
        "NaN: unknown); a wave is due when wave_offset <= due_offset",
    ),
}

#: Columns without which no analysis can run.
REQUIRED_COLUMNS = ("participant", "arm", "wave", "scale", "value")

#: Statuses that end follow-up early (the "event" of retention analyses).
DROPOUT_STATUSES = ("withdrawn", "lost_to_follow_up")

_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n", ""}


def _to_bool(series: pd.Series, name: str) -> pd.Series:
    if series.dtype == bool:
        return series
    if pd.api.types.is_numeric_dtype(series):
        bad = ~series.isin([0, 1]) & series.notna()
        if bad.any():
            raise ValueError(f"column {name!r}: expected booleans, found {series[bad].iloc[0]!r}")
        return series.fillna(0).astype(bool)
    s = series.astype("string").str.strip().str.lower()
    bad = ~s.isin(_TRUE | _FALSE) & s.notna()
    if bad.any():
        raise ValueError(f"column {name!r}: expected true/false, found {series[bad].iloc[0]!r}")
    return s.isin(_TRUE).fillna(False).astype(bool)


def _to_float(series: pd.Series, name: str) -> pd.Series:
    try:
        return pd.to_numeric(series.replace("", np.nan), errors="raise").astype(float)
    except (ValueError, TypeError) as exc:
        conv = pd.to_numeric(series, errors="coerce")
        bad = conv.isna() & series.notna() & (series.astype(str) != "")
        example = series[bad].iloc[0] if bad.any() else "?"
        raise ValueError(f"column {name!r}: expected numbers, found {example!r}") from exc


def load_long(path_or_df: str | Path | pd.DataFrame, *, required: Sequence[str] = REQUIRED_COLUMNS) -> pd.DataFrame:
    """Read and check a ``long`` export.

    Parameters
    ----------
    path_or_df : str, Path or DataFrame
        A ``.csv`` or ``.parquet`` file, or a DataFrame (copied, never modified).
    required : sequence of str
        Columns that must be present; other :data:`LONG_COLUMNS` are added (empty) when absent.

    Returns
    -------
    DataFrame
        Columns of :data:`LONG_COLUMNS` with their documented types, then ``context_*`` and any
        other columns as given.

    Raises
    ------
    ValueError
        Naming the missing column or the column whose values cannot be coerced.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"participant": ["P1"], "arm": ["group"], "wave": ["baseline"],
    ...                    "scale": ["phq9"], "value": ["12"]})
    >>> float(load_long(df)["value"].iloc[0])
    12.0
    """
    if isinstance(path_or_df, pd.DataFrame):
        df = path_or_df.copy()
    else:
        path = Path(path_or_df)
        if not path.exists():
            raise FileNotFoundError(f"no such file: {path}")
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        elif path.suffix.lower() in (".csv", ".txt"):
            # Strings stay strings (codes like "007" must not become numbers); types come below.
            df = pd.read_csv(path, dtype=str, keep_default_na=True)
        else:
            raise ValueError(f"{path}: expected a .csv or .parquet file")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"the long frame lacks required column(s): {', '.join(map(repr, missing))}")
    for name, (kind, _) in LONG_COLUMNS.items():
        if name not in df.columns:
            df[name] = {"bool": False, "string": pd.NA}.get(kind, np.nan)
            if kind == "string":
                df[name] = df[name].astype(object)
            continue
        col = df[name]
        if kind == "float":
            df[name] = _to_float(col, name)
        elif kind == "int":
            vals = _to_float(col, name)
            if (vals.dropna() % 1 != 0).any():
                raise ValueError(f"column {name!r}: expected whole numbers")
            df[name] = vals
        elif kind == "bool":
            df[name] = _to_bool(col, name)
        elif kind == "datetime":
            try:
                df[name] = pd.to_datetime(col, utc=True, errors="raise", format="mixed")
            except (ValueError, TypeError) as exc:
                raise ValueError(f"column {name!r}: expected ISO date-times ({exc})") from exc
        else:
            df[name] = col.astype(object).where(col.notna(), None)
            if name in ("participant", "arm", "wave", "scale") and df[name].isna().any():
                raise ValueError(f"column {name!r}: has empty values")
    for c in df.columns:
        if c.startswith("context_"):
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    order = list(LONG_COLUMNS) + [c for c in df.columns if c not in LONG_COLUMNS]
    return df[order].reset_index(drop=True)


def _ensure(frame: pd.DataFrame | str | Path) -> pd.DataFrame:
    if isinstance(frame, pd.DataFrame) and all(c in frame.columns for c in LONG_COLUMNS):
        return frame
    return load_long(frame)


def wave_order(frame: pd.DataFrame) -> list[str]:
    """Wave codes ordered by planned offset (then by first appearance).

    Examples
    --------
    >>> import pandas as pd
    >>> wave_order(pd.DataFrame({"wave": ["m6", "baseline", "m1"], "wave_offset": [182, 0, 30]}))
    ['baseline', 'm1', 'm6']
    """
    w = frame[["wave", "wave_offset"]].drop_duplicates("wave")
    w = w.assign(_pos=np.arange(len(w))).sort_values(["wave_offset", "_pos"], na_position="last")
    return w["wave"].tolist()


def context_columns(frame: pd.DataFrame) -> list[str]:
    """The ``context_*`` columns of a frame.

    Examples
    --------
    >>> import pandas as pd
    >>> context_columns(pd.DataFrame(columns=["participant", "context_living_situation", "value"]))
    ['context_living_situation']
    """
    return [c for c in frame.columns if c.startswith("context_")]


def scale_frame(frame: pd.DataFrame, scale: str, *, dropna: bool = True) -> pd.DataFrame:
    """Rows of one scale, with ``years`` (days / 365.25) and ordered ``wave`` added.

    Examples
    --------
    >>> import pandas as pd
    >>> long = pd.DataFrame({"participant": ["a", "a"], "arm": "x", "scale": "phq9",
    ...                      "wave": ["baseline", "m6"], "wave_offset": [0, 182], "value": [9, 5]})
    >>> scale_frame(long, "phq9")["years"].round(3).tolist()
    [0.0, 0.498]
    """
    frame = _ensure(frame)
    out = frame[frame["scale"] == scale].copy()
    if out.empty:
        raise ValueError(f"scale {scale!r} is not in the frame (scales: {sorted(frame['scale'].unique())})")
    if dropna:
        out = out[out["value"].notna()]
    days = out["days"].where(out["days"].notna(), out["wave_offset"])
    out["years"] = days / 365.25
    out["wave"] = pd.Categorical(out["wave"], categories=wave_order(frame), ordered=True)
    return out.reset_index(drop=True)


def wide(frame: pd.DataFrame, scale: str, values: str = "value") -> pd.DataFrame:
    """Participant × wave table of one scale (columns ordered by wave).

    Returns
    -------
    DataFrame
        Index ``participant``; one column per wave; NaN where the wave is missing.

    Examples
    --------
    >>> import pandas as pd
    >>> long = pd.DataFrame({"participant": ["a", "a", "b"], "arm": "x", "scale": "phq9",
    ...                      "wave": ["baseline", "m6", "baseline"], "wave_offset": [0, 182, 0], "value": [9, 5, 12]})
    >>> wide(long, "phq9").to_dict("index")
    {'a': {'baseline': 9.0, 'm6': 5.0}, 'b': {'baseline': 12.0, 'm6': nan}}
    """
    sf = scale_frame(frame, scale, dropna=False)
    tab = sf.pivot_table(index="participant", columns="wave", values=values, aggfunc="first", observed=False)
    tab.columns = [str(c) for c in tab.columns]
    return tab[[w for w in wave_order(_ensure(frame)) if w in tab.columns]]


def participants(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per participant with the participant-level columns.

    Columns: ``participant, site, arm, arm_kind, status, status_days, due_offset, last_days`` (days of
    the last completed questionnaire), ``last_wave``, then the ``context_*`` columns.

    Examples
    --------
    >>> import pandas as pd
    >>> long = pd.DataFrame({"participant": ["a", "a", "b"], "arm": "x", "scale": "phq9",
    ...                      "wave": ["baseline", "m6", "baseline"], "wave_offset": [0, 182, 0], "value": [9, 5, 12]})
    >>> participants(long)[["participant", "last_wave"]].values.tolist()
    [['a', 'm6'], ['b', 'baseline']]
    """
    frame = _ensure(frame)
    cols = ["participant", "site", "arm", "arm_kind", "status", "status_days", "due_offset"] + context_columns(frame)
    per = frame.groupby("participant", sort=True)[cols[1:]].first().reset_index()
    answered = frame[frame["value"].notna()]
    days = answered["days"].where(answered["days"].notna(), answered["wave_offset"])
    last = (
        answered.assign(_d=days)
        .sort_values("_d")
        .groupby("participant")
        .agg(last_days=("_d", "last"), last_wave=("wave", "last"))
    )
    return per.merge(last, on="participant", how="left")


def baseline(frame: pd.DataFrame, scales: Iterable[str] | None = None, wave: str | None = None) -> pd.DataFrame:
    """Baseline score of each scale, one row per participant.

    Parameters
    ----------
    scales : iterable of str, optional
        Scales to include (default: all).
    wave : str, optional
        The baseline wave code (default: the wave with the smallest offset).

    Returns
    -------
    DataFrame
        :func:`participants` columns plus one column per scale (named by the scale code).

    Examples
    --------
    >>> import pandas as pd
    >>> long = pd.DataFrame({"participant": ["a", "a", "b"], "arm": "x", "scale": "phq9",
    ...                      "wave": ["baseline", "m6", "baseline"], "wave_offset": [0, 182, 0], "value": [9, 5, 12]})
    >>> baseline(long)["phq9"].tolist()
    [9.0, 12.0]
    """
    frame = _ensure(frame)
    wave = wave or wave_order(frame)[0]
    b = frame[frame["wave"] == wave]
    if scales is not None:
        b = b[b["scale"].isin(list(scales))]
    tab = b.pivot_table(index="participant", columns="scale", values="value", aggfunc="first")
    tab.columns = [str(c) for c in tab.columns]
    return participants(frame).merge(tab.reset_index(), on="participant", how="left")


def cohort_frame(frame: pd.DataFrame, scales: Iterable[str] | None = None) -> pd.DataFrame:
    """Participant × wave rows with one column per scale (the usual modelling frame).

    Columns: ``participant, site, arm, arm_kind, wave, wave_offset, days, years``, the scale
    columns, ``status, status_days`` and the ``context_*`` columns.

    Examples
    --------
    >>> import pandas as pd
    >>> long = pd.DataFrame({"participant": ["a", "a"], "arm": "x", "scale": ["phq9", "gad7"],
    ...                      "wave": "baseline", "wave_offset": 0, "value": [9, 7]})
    >>> cohort_frame(long)[["participant", "wave", "gad7", "phq9"]].values.tolist()
    [['a', 'baseline', 7.0, 9.0]]
    """
    frame = _ensure(frame)
    f = frame if scales is None else frame[frame["scale"].isin(list(scales))]
    keys = ["participant", "wave"]
    tab = f.pivot_table(index=keys, columns="scale", values="value", aggfunc="first").reset_index()
    tab.columns = [str(c) for c in tab.columns]
    meta = f.groupby(keys)[["wave_offset", "days"]].first().reset_index()
    out = tab.merge(meta, on=keys).merge(
        participants(frame).drop(columns=["last_days", "last_wave"]), on="participant", how="left"
    )
    out["years"] = out["days"].where(out["days"].notna(), out["wave_offset"]) / 365.25
    out["wave"] = pd.Categorical(out["wave"], categories=wave_order(frame), ordered=True)
    lead = ["participant", "site", "arm", "arm_kind", "wave", "wave_offset", "days", "years"]
    return (
        out[lead + [c for c in out.columns if c not in lead]]
        .sort_values(["participant", "wave"])
        .reset_index(drop=True)
    )


def long_from_synthetic(cohort: Any, *, reference_date: datetime | None = None, window_days: int = 14) -> pd.DataFrame:
    """Score a :class:`~analysis.synthetic.SyntheticCohort` and shape it like the ``long`` export.

    Each response is scored with :func:`instruments.score` (PAM-13 activation from the external
    score). Context answers become label strings in ``context_*`` columns.

    Parameters
    ----------
    cohort : SyntheticCohort
    reference_date : datetime, optional
        The date from which ``enrolled_offset_days`` count back (default 2026-01-01 UTC).
    window_days : int
        A questionnaire completed more than this many days from the planned offset is
        ``out_of_window``.

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> long = long_from_synthetic(simulate_cohort(n_participants=12, seed=3))
    >>> int(long["participant"].nunique())
    12
    """
    import instruments

    ref = reference_date or datetime(2026, 1, 1, tzinfo=UTC)
    if ref.tzinfo is None:
        ref = ref.replace(tzinfo=UTC)
    part = cohort.participants.set_index("participant")
    offsets = dict(cohort.waves) if cohort.waves else {}
    kinds = dict(cohort.arms) if cohort.arms else {}

    # A wave is due once its window (planned offset + window_days) has closed by the data cut-off
    # (reference date + followup_cutoff_days); without a cut-off the cohort is followed to the end.
    cutoff = (cohort.params or {}).get("followup_cutoff_days")
    due: dict[str, float] = {}
    for pid, prow in part.iterrows():
        if cutoff is None:
            due[pid] = float(max(offsets.values())) if offsets else np.nan
            continue
        elapsed = int(prow["enrolled_offset_days"]) + float(cutoff)
        closed = [o for o in offsets.values() if elapsed > o + window_days]
        due[pid] = float(max(closed)) if closed else -1.0
    context: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    inst_cache: dict[str, Any] = {}
    for r in cohort.responses:
        code = r["instrument"]
        if code not in inst_cache:
            inst_cache[code] = instruments.get(code)
        inst = inst_cache[code]
        if code == "context":
            labels = {}
            for item_code, ans in r["answers"].items():
                try:
                    opts = {o.code: o.label for o in inst.item(item_code).options}
                except KeyError:
                    opts = {}
                labels[item_code] = None if ans is None else str(opts.get(ans, ans))
            context[r["participant"]] = labels
            continue
        scores = instruments.score(inst, r["answers"], external_scores=r.get("external_scores") or None)
        p = part.loc[r["participant"]]
        planned = offsets.get(r["wave"], np.nan)
        enrolled = ref - timedelta(days=int(p["enrolled_offset_days"]))
        completed = enrolled + timedelta(days=int(r["days_since_enrolment"]), hours=12)
        for s in scores:
            rows.append(
                {
                    "participant": r["participant"],
                    "site": p["site"],
                    "arm": p["arm"],
                    "arm_kind": p.get("arm_kind", kinds.get(p["arm"])),
                    "wave": r["wave"],
                    "wave_offset": planned,
                    "days": float(r["days_since_enrolment"]),
                    "completed_at": completed,
                    "out_of_window": bool(abs(r["days_since_enrolment"] - planned) > window_days),
                    "instrument": code,
                    "scale": s.scale,
                    "value": np.nan if s.value is None else float(s.value),
                    "band": s.band,
                    "level": np.nan if s.level is None else float(s.level),
                    "items_answered": float(s.items_answered),
                    "prorated": bool(s.prorated),
                    "status": p["status"],
                    "status_days": p["status_days"],
                    "due_offset": due[r["participant"]],
                }
            )
    df = pd.DataFrame(rows)
    ctx = pd.DataFrame.from_dict(context, orient="index")
    ctx.index.name = "participant"
    if not ctx.empty:
        df = df.merge(ctx.reset_index(), on="participant", how="left")
    return load_long(df)
