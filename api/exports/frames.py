"""The cohort rows of the ``long`` shape as DataFrame batches (every format, every database).

Rows are read participant by participant: a keyset query picks the next ``batch_size``
participant ids, then one query reads all their scores. A participant's rows are therefore never
split across batches, and memory holds one batch whatever the cohort size. On PostgreSQL the
whole export runs in one ``REPEATABLE READ`` read-only transaction, so every batch sees the same
snapshot, and the next batch is read while the caller encodes this one (:func:`prefetched`).

The participant columns built here (:func:`_participants`) are shared by the ``wide`` and
``items`` shapes (:mod:`api.exports.service_wide`) and the REDCap export.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import DateTime, and_, select, type_coerce
from sqlmodel import Session

from api.auth.service import Actor
from api.exports import dictionary as dd
from api.exports.pgcopy import copy_out, prefetched
from api.exports.plan import CONTEXT, DEFAULT_BATCH, ExportFilters, Plan, columns, plan_export
from api.participants.models import Participant, ParticipantContact
from api.responses.models import Response, Score
from api.studies.models import Arm, Site, Study, Wave

if TYPE_CHECKING:
    import pandas as pd
else:
    from api.lazyimport import pandas as pd


# ---- reading ---------------------------------------------------------------------------------


def uses_data_clause() -> tuple:
    """Conditions on ``participant`` keeping those whose data may be used: not entered in error
    (voided) and consent for use of data not withdrawn. Exports and analyses read through these."""
    return (Participant.voided_at.is_(None), Participant.consent_withdrawn_on.is_(None))


def _participant_batches(session: Session, plan: Plan, batch_size: int) -> Iterator[list[int]]:
    last = 0
    while True:
        ids = list(
            session.connection()
            .execute(
                select(Participant.id)
                .where(
                    Participant.study_id == plan.study_id,
                    Participant.id > last,
                    Participant.site_id.in_(plan.site_ids),
                    *uses_data_clause(),
                )
                .order_by(Participant.id)
                .limit(batch_size)
            )
            .scalars()
        )
        if not ids:
            return
        yield ids
        last = ids[-1]


def _begin_snapshot(session: Session) -> None:
    # One consistent snapshot for the whole export on PostgreSQL. SQLite keeps short per-batch
    # transactions instead: its transactions take the write lock, which must not be held for minutes.
    if session.get_bind().dialect.name == "postgresql":
        if session.in_transaction():
            session.rollback()  # the isolation level applies to a transaction not yet begun
        session.connection(execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True})


def _end_batch(session: Session) -> None:
    if session.get_bind().dialect.name != "postgresql":
        session.rollback()


def _participants(session: Session, plan: Plan, ids: list[int]) -> pd.DataFrame:
    rows = (
        session.connection()
        .execute(
            select(
                Participant.id,
                Participant.study_code,
                Site.code,
                Arm.code,
                Arm.kind,
                Participant.arm_id,
                Participant.enrolled_on,
                Participant.status,
                Participant.status_date,
                Participant.intervention_stopped_on,
                Participant.follow_up_stopped_on,
            )
            .join(Site, Site.id == Participant.site_id)
            .outerjoin(Arm, Arm.id == Participant.arm_id)
            .where(Participant.id.in_(ids))
        )
        .all()
    )
    df = pd.DataFrame.from_records(
        rows,
        columns=[
            "pid",
            "participant",
            "site",
            "arm",
            "arm_kind",
            "arm_id",
            "enrolled_on",
            "status",
            "status_date",
            "intervention_stopped_on",
            "follow_up_stopped_on",
        ],
    )
    if plan.blind_arms is not None:
        # Blinded analysis: neutral labels, no arm kind (api.sap.blinding).
        df["arm"] = [plan.blind_arms.get(int(a)) if pd.notna(a) else None for a in df["arm_id"]]
        df["arm_kind"] = None
    df = df.drop(columns=["arm_id"])
    # errors="coerce": a date stored before the date policy (0001-01-01, 9999-12-31) becomes NaT, so
    # that participant's day counts are empty instead of the whole export failing mid-stream.
    enrolled = pd.to_datetime(df["enrolled_on"], errors="coerce")
    status_date = pd.to_datetime(df["status_date"], errors="coerce")
    dropout = df["status"].isin(("withdrawn", "lost_to_follow_up"))
    df["status_days"] = np.where(dropout, (status_date - enrolled).dt.days, np.nan)
    # Day offsets, never calendar dates: the flags analysts need without de-identification concerns.
    for kind in ("intervention_stopped", "follow_up_stopped"):
        df[f"{kind}_days"] = (pd.to_datetime(df.pop(f"{kind}_on")) - enrolled).dt.days.astype("float64")
    df["enrolled_on"] = enrolled
    df["due_offset"] = _due_offsets(enrolled, plan)
    dates = plan.dates
    df["shift"] = [dates.shift(int(p)) for p in df["pid"]] if dates.mode == "shift" else 0
    df = df.drop(columns=["status_date"])
    if CONTEXT and plan.context_items:
        df = df.merge(_context(session, plan, ids), on="pid", how="left")
    if plan.filters.identifiers:
        df = df.merge(_contacts(session, ids), on="pid", how="left")
    return df


def _due_offsets(enrolled: pd.Series, plan: Plan) -> np.ndarray:
    """Per participant, the largest planned offset of an exported wave whose window has closed (−1: none yet).

    Completion and retention count a wave only for participants for whom it is due; the offset (not the
    enrolment date) is exported so that de-identified frames carry no calendar date.
    """
    today = pd.Timestamp.now(tz=ZoneInfo(plan.time_zone)).tz_localize(None).normalize()
    elapsed = (today - enrolled).dt.days.to_numpy(float)
    out = np.full(len(enrolled), -1.0)
    for w in sorted(plan.waves, key=lambda w: w.offset_days):
        closed = elapsed > w.offset_days + w.window_after_days
        out = np.where(closed, np.maximum(out, float(w.offset_days)), out)
    return np.where(np.isnan(elapsed), np.nan, out)


def _context(session: Session, plan: Plan, ids: list[int]) -> pd.DataFrame:
    rows = session.execute(
        select(Response.participant_id, Response.answers)
        .where(Response.participant_id.in_(ids), Response.instrument == CONTEXT)
        .order_by(Response.participant_id, Response.completed_at)
    ).all()
    labels = {it.code: {o.code: o.label for o in it.options} for it in plan.context_items}
    seen, out = set(), []
    for pid, answers in rows:
        if pid in seen:
            continue  # the first (baseline) context answers describe the participant
        seen.add(pid)
        rec = {"pid": pid}
        for it in plan.context_items:
            v = (answers or {}).get(it.code)
            name = it.code if it.code.startswith("context_") else f"context_{it.code}"
            rec[name] = labels[it.code].get(v, None if v is None else str(v))
        out.append(rec)
    cols = ["pid"] + [c.name for c in dd.context_columns(plan.context_items)]
    return pd.DataFrame(out, columns=cols)


def _contacts(session: Session, ids: list[int]) -> pd.DataFrame:
    rows = session.execute(
        select(
            ParticipantContact.participant_id,
            ParticipantContact.name,
            ParticipantContact.email,
            ParticipantContact.phone,
            ParticipantContact.date_of_birth,
        ).where(ParticipantContact.participant_id.in_(ids))
    ).all()
    df = pd.DataFrame.from_records(
        rows, columns=["pid", "contact_name", "contact_email", "contact_phone", "contact_date_of_birth"]
    )
    df["contact_date_of_birth"] = df["contact_date_of_birth"].map(lambda d: d.isoformat() if d else None)
    return df


def _response_filter(plan: Plan, ids: list[int]):
    conds = [Response.participant_id.in_(ids), Response.wave_id.in_(plan.wave_ids)]
    wanted = [c for c in plan.instruments if c != CONTEXT]
    conds.append(Response.instrument.in_(wanted))
    return and_(*conds)


def _nanosecond_times(values: pd.Series) -> pd.Series:
    """UTC timestamps at pandas' nanosecond resolution; a time stored before the date policy that
    it cannot hold (year 1, 9999; Arrow reads them at microsecond resolution) becomes NaT."""
    ts = pd.to_datetime(values, utc=True, cache=False, errors="coerce")
    if ts.dtype != "datetime64[ns, UTC]":
        lo, hi = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")
        ts = ts.where((ts >= lo) & (ts <= hi)).astype("datetime64[ns, UTC]")
    return ts


def _dates(df: pd.DataFrame, plan: Plan, column: str = "completed_at") -> pd.DataFrame:
    """``days`` since enrolment (study-local calendar days) and the de-identified ``completed_at``."""
    ts = _nanosecond_times(df[column])
    local = ts.dt.tz_convert(ZoneInfo(plan.time_zone)).dt.tz_localize(None).dt.normalize()
    df["days"] = (local - df["enrolled_on"]).dt.days.astype("float64")
    # DatePolicy.moment, vectorised: the shift column holds DatePolicy.shift of each participant.
    if plan.dates.mode == "shift":
        df[column] = ts - pd.to_timedelta(df["shift"], unit="D")
    elif plan.dates.mode == "relative":
        df[column] = pd.NaT
    else:
        df[column] = ts
    return df


_SCORE_COLUMNS = [
    "pid",
    "wave",
    "wave_offset",
    "completed_at",
    "out_of_window",
    "instrument",
    "scale",
    "value",
    "band",
    "level",
    "items_answered",
    "prorated",
]


_SCORE_TYPES = [
    "int64",
    "string",
    "int64",
    "timestamp",
    "bool",
    "string",
    "string",
    "float64",
    "string",
    "float64",
    "float64",
    "bool",
]


def _copy_frame(session: Session, stmt, names: list[str], types: list[str]) -> pd.DataFrame:
    """Run ``stmt`` through PostgreSQL ``COPY … TO STDOUT`` on the session's connection (same
    snapshot) and parse the CSV with Arrow: the hot loop of every export stays out of Python."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    conn = session.connection()
    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    buf = copy_out(conn.connection.driver_connection, f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)")
    arrow = {
        "int64": pa.int64(),
        "string": pa.string(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }
    if not buf:
        # Arrow refuses an empty CSV; a batch of participants with nothing answered yet is normal.
        table = pa.table({n: pa.array([], type=arrow[t]) for n, t in zip(names, types, strict=True)})
        return _strings_as_objects(table.to_pandas(), names, types)
    # Arrow reads the bytearray in place (no copy of the batch's CSV text).
    table = pacsv.read_csv(
        pa.py_buffer(buf),
        read_options=pacsv.ReadOptions(column_names=names),
        convert_options=pacsv.ConvertOptions(
            column_types={n: arrow[t] for n, t in zip(names, types, strict=True)},
            true_values=["t"],
            false_values=["f"],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    del buf
    df = table.to_pandas(types_mapper=None, split_blocks=True, self_destruct=True)
    del table  # self_destruct hands the Arrow buffers to pandas column by column instead of doubling them
    return _strings_as_objects(df, names, types)


def _strings_as_objects(df: pd.DataFrame, names: list[str], types: list[str]) -> pd.DataFrame:
    """String columns as Python objects (the SQLite path's dtype); columns already so are left as
    they are rather than copied."""
    todo = {n: object for n, t in zip(names, types, strict=True) if t == "string" and df[n].dtype != object}
    return df.astype(todo) if todo else df


def _long_batch(session: Session, plan: Plan, ids: list[int], people: pd.DataFrame) -> pd.DataFrame:
    stmt = (
        select(
            Response.participant_id,
            Wave.code,
            Wave.offset_days,
            type_coerce(Response.completed_at, DateTime(timezone=True)),
            Response.out_of_window,
            Response.instrument,
            Score.scale,
            Score.value,
            Score.band,
            Score.level,
            Score.items_answered,
            Score.prorated,
        )
        .join(Response, Response.id == Score.response_id)
        .join(Wave, Wave.id == Response.wave_id)
        .where(_response_filter(plan, ids))
        .order_by(Response.participant_id, Wave.offset_days, Wave.code, Response.instrument, Score.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        df = _copy_frame(session, stmt, _SCORE_COLUMNS, _SCORE_TYPES)
    else:
        df = pd.DataFrame.from_records(session.connection().execute(stmt).all(), columns=_SCORE_COLUMNS)
    df = df.merge(people, on="pid", how="left", sort=False)
    return _dates(df, plan)


def iter_long(
    session: Session,
    study: Study,
    actor: Actor,
    filters: ExportFilters | None = None,
    *,
    secret: str = "",
    batch_size: int = DEFAULT_BATCH,
    plan: Plan | None = None,
) -> Iterator[pd.DataFrame]:
    """The ``long`` frame of a study as DataFrame batches of whole participants.

    Parameters
    ----------
    session : Session
    study : Study
    actor : Actor
        Decides de-identification and site scope (see the module docstring).
    filters : ExportFilters, optional
    secret : str
        Server secret keying the per-participant date shift (``Settings.secret_key``).
    batch_size : int
        Participants per batch.

    Yields
    ------
    DataFrame
        Columns :data:`analysis.frame.LONG_COLUMNS` then ``context_*`` (and contact columns for
        identified exports), typed as in the data dictionary.
    """
    plan = plan or plan_export(session, study, actor, filters, secret=secret)
    cols = columns(plan, "long")
    yield from _iter(
        session, plan, batch_size, lambda ids, people: dd_conform(_long_batch(session, plan, ids, people), cols)
    )


def dd_conform(df: pd.DataFrame, cols: list[dd.Column]) -> pd.DataFrame:
    from api.exports.writers import conform

    return conform(df, cols)


def _batches(session: Session, plan: Plan, batch_size: int, build) -> Iterator[pd.DataFrame]:
    for ids in _participant_batches(session, plan, batch_size):
        people = _participants(session, plan, ids)
        df = build(ids, people)
        _end_batch(session)
        yield df


def _iter(session: Session, plan: Plan, batch_size: int, build) -> Iterator[pd.DataFrame]:
    _begin_snapshot(session)
    try:
        # PostgreSQL: the next batch is read and built while the caller encodes this one, so the
        # database and the encoder overlap. SQLite keeps the plain loop (its connection stays on
        # one thread, and a one-file database gains little).
        produce = _batches(session, plan, batch_size, build)
        frames = prefetched(produce) if session.get_bind().dialect.name == "postgresql" else produce
        try:
            for df in frames:
                plan.rows += len(df)
                yield df
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()  # the producer has stopped before the session is rolled back
    finally:
        session.rollback()


def long_frame(
    session: Session,
    study: Study,
    actor: Actor,
    filters: ExportFilters | None = None,
    *,
    secret: str = "",
    batch_size: int = DEFAULT_BATCH,
) -> pd.DataFrame:
    """The whole ``long`` frame (see :func:`iter_long`) as one DataFrame."""
    plan = plan_export(session, study, actor, filters, secret=secret)
    frames = list(iter_long(session, study, actor, plan=plan, batch_size=batch_size))
    if not frames:
        return dd_conform(pd.DataFrame(), columns(plan, "long"))
    return pd.concat(frames, ignore_index=True)
