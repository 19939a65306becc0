"""The cohort rows behind every export: the ``long``, ``wide`` and ``items`` frames, in batches.

Rows are read participant by participant: a keyset query picks the next ``batch_size``
participant ids, then one query reads all their scores (or answers). A participant's rows are
therefore never split across batches, and memory holds one batch whatever the cohort size. On
PostgreSQL the whole export runs in one ``REPEATABLE READ`` read-only transaction, so every batch
sees the same snapshot.

De-identification is decided here, by role, not by the caller:

* analysts never get contact fields, identifier-flagged items or free-text items a coordinator
  flagged; dates are either replaced by days since enrolment (``completed_at`` left empty) or, if
  the study chose ``date_mode="shift"``, moved back by a per-participant secret offset;
* coordinators and admins see calendar dates; with ``identifiers=true`` they also get the contact
  vault columns and identifier items, coordinators for their own sites only.

Examples
--------
>>> from api.auth.service import Actor
>>> f = ExportFilters(waves=["baseline"])
>>> for batch in iter_long(session, study, Actor.system(), f):  # doctest: +SKIP
...     print(len(batch))
>>> frame = long_frame(session, study, Actor.system())  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import DateTime, and_, func, select, type_coerce
from sqlalchemy.engine import Engine
from sqlmodel import Session

import instruments
from api.audit.service import record
from api.auth import policy
from api.auth.service import Actor
from api.errors import Forbidden, Unprocessable
from api.exports import dictionary as dd
from api.exports.deid import DatePolicy, Deidentification
from api.exports.models import ExportSettings
from api.participants.models import Participant, ParticipantContact
from api.responses.models import Response, Score
from api.studies.models import Arm, Site, Study, Wave

if TYPE_CHECKING:
    import pandas as pd
else:
    from api.lazyimport import pandas as pd

SHAPES = (
    "long",
    "wide",
    "items",
    "safety",
    "delivery",
    "dose",
    "delivery_sessions",
    "supporter_training",
    "fidelity",
    "adaptations",
)
CONTEXT = "context"
# Participants per batch: memory against per-batch overhead. Measured on 10,000 participants
# (bench/export.py, two cores): 250 → +71 MB over start-up, long 3.6x COPY; 500 → +129 MB, 3.3x;
# 1,000 → +173 MB, 2.2-2.7x. The increment stays flat when the cohort grows.
DEFAULT_BATCH = 500


@dataclass
class ExportFilters:
    """What to export: wave, instrument and site codes (None = all), identifiers, item columns."""

    waves: list[str] | None = None
    instruments: list[str] | None = None
    sites: list[str] | None = None
    identifiers: bool = False
    items: bool = False
    # CSV only: prefix ' to text cells a spreadsheet would run as a formula (OWASP); False = verbatim.
    escape_formulas: bool = True

    def params(self) -> dict[str, Any]:
        return {
            "waves": self.waves,
            "instruments": self.instruments,
            "sites": self.sites,
            "identifiers": self.identifiers,
            "items": self.items,
            "escape_formulas": self.escape_formulas,
        }


@dataclass(frozen=True)
class WaveInfo:
    """The parts of a wave an export needs (plain values: a rolled-back session cannot expire them)."""

    id: int
    code: str
    offset_days: int
    instruments: tuple[str, ...]
    window_after_days: int = 0


@dataclass
class Plan:
    """An export resolved against a study and an actor: who sees what, and which columns."""

    study: Study
    actor: Actor
    filters: ExportFilters
    deidentified: bool
    date_mode: str
    secret: str
    waves: list[WaveInfo]
    site_ids: list[int]
    instruments: list[str]
    dropped_items: set[tuple[str, str]]
    context_items: list = field(default_factory=list)
    blind_arms: dict[int, str] | None = None  # neutral arm labels while the reader is blind
    rows: int = 0
    study_id: int = 0
    time_zone: str = "UTC"

    @property
    def dates(self) -> DatePolicy:
        """How this export's reader sees calendar dates (the policy every analyst surface uses)."""
        mode = self.date_mode if policy.deidentified(self.actor) else "calendar"
        return DatePolicy(mode, self.secret, self.study_id)

    @property
    def shift_dates(self) -> bool:
        """Whether calendar dates are de-identified (analysts only; staff keep calendar dates)."""
        return self.dates.deidentified

    @property
    def wave_ids(self) -> list[int]:
        return [w.id for w in self.waves]


def export_settings(session: Session, study_id: int) -> ExportSettings:
    """The study's export settings (defaults when none were saved)."""
    return session.get(ExportSettings, study_id) or ExportSettings(study_id=study_id)


def _codes(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    out = []
    for v in values:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out or None


def plan_export(
    session: Session, study: Study, actor: Actor, filters: ExportFilters | None = None, *, secret: str = ""
) -> Plan:
    """Check an export request against the study and the actor's role and resolve its scope.

    Raises
    ------
    api.errors.ApiError
        403 when an analyst asks for identifiers; 422 naming ``waves``, ``instruments`` or
        ``sites`` for an unknown code.
    """
    filters = filters or ExportFilters()
    filters.waves, filters.instruments, filters.sites = (
        _codes(filters.waves),
        _codes(filters.instruments),
        _codes(filters.sites),
    )
    if filters.identifiers and policy.deidentified(actor):
        raise Forbidden(
            ["query", "identifiers"], "analysts receive de-identified exports only", "identifiers_not_allowed"
        )
    waves = list(
        session.exec(select(Wave).where(Wave.study_id == study.id).order_by(Wave.offset_days, Wave.code)).scalars()
    )
    if filters.waves:
        known = {w.code for w in waves}
        bad = [c for c in filters.waves if c not in known]
        if bad:
            raise Unprocessable(
                ["query", "waves"], f"unknown wave code(s) {bad}; the study has {sorted(known)}", "unknown_wave"
            )
        waves = [w for w in waves if w.code in filters.waves]
    sites = list(session.exec(select(Site).where(Site.study_id == study.id).order_by(Site.id)).scalars())
    if filters.sites:
        known = {s.code for s in sites}
        bad = [c for c in filters.sites if c not in known]
        if bad:
            raise Unprocessable(["query", "sites"], f"unknown site code(s) {bad}", "unknown_site")
        sites = [s for s in sites if s.code in filters.sites]
    if policy.site_scoped(actor):
        if filters.sites and any(not actor.sees_site(s.id) for s in sites):
            raise Forbidden(["query", "sites"], "coordinators export their own sites only", "site_not_allowed")
        sites = [s for s in sites if actor.sees_site(s.id)]
    used: list[str] = []
    for w in waves:
        for code in w.instruments:
            if code not in used:
                used.append(code)
    if filters.instruments:
        bad = [c for c in filters.instruments if c not in used]
        if bad:
            raise Unprocessable(
                ["query", "instruments"],
                f"instrument(s) {bad} are not collected at the selected waves",
                "unknown_instrument",
            )
        used = [c for c in used if c in filters.instruments or c == CONTEXT]
    settings = export_settings(session, study.id)
    deidentified = not filters.identifiers
    deid = Deidentification.for_reader(
        session, study.id, actor, secret=secret, identifiers=filters.identifiers, instruments=used
    )
    dropped: set[tuple[str, str]] = set(deid.dropped_items)
    context_items = []
    ctx = _get(CONTEXT)
    if ctx is not None and any(
        CONTEXT in w.instruments for w in session.exec(select(Wave).where(Wave.study_id == study.id)).scalars()
    ):
        context_items = [it for it in ctx.items if (CONTEXT, it.code) not in dropped]
    infos = [WaveInfo(w.id, w.code, w.offset_days, tuple(w.instruments), int(w.window_after_days or 0)) for w in waves]
    return Plan(
        study=study,
        actor=actor,
        filters=filters,
        deidentified=deidentified,
        date_mode=settings.date_mode,
        secret=secret,
        waves=infos,
        study_id=study.id,
        time_zone=study.time_zone,
        site_ids=[s.id for s in sites],
        instruments=used,
        dropped_items=dropped,
        context_items=context_items,
        blind_arms=deid.blind_arms,
    )


def _get(code: str):
    try:
        return instruments.get(code)
    except instruments.InstrumentError:
        return None


# ---- columns ---------------------------------------------------------------------------------


def columns(plan: Plan, shape: str) -> list[dd.Column]:
    """The columns of ``shape`` for this plan (also the data dictionary's rows); a blind reader's
    ``arm`` column holds neutral labels and ``arm_kind`` stays empty (:mod:`api.sap.blinding`)."""
    cols = _columns(plan, shape)
    if plan.blind_arms is None:
        return cols
    blind = {
        "arm": dd.Column("arm", "arm, blinded: a neutral label (A, B, C…) until the study is unblinded", "string"),
        "arm_kind": dd.Column("arm_kind", "arm kind: withheld until the study is unblinded", "string"),
    }
    return [blind.get(c.name, c) for c in cols]


def _columns(plan: Plan, shape: str) -> list[dd.Column]:
    ident = dd.identifier_columns() if plan.filters.identifiers else []
    if shape == "long":
        return dd.long_columns(plan.context_items) + ident
    if shape == "items":
        return dd.items_columns() + ident
    if shape == "safety":
        from api.safety.export import safety_columns

        return safety_columns() + ident
    if shape in ("delivery", "dose"):
        from api.delivery.export import columns as delivery_columns

        return delivery_columns(shape) + ident
    if shape in ("delivery_sessions", "supporter_training"):
        from api.delivery.export import columns as delivery_columns

        return delivery_columns(shape)  # no participant rows: no participant identifiers
    if shape in ("fidelity", "adaptations"):  # sessions and adaptations: no participant, no identifier
        from api.fidelity.export import adaptation_columns, fidelity_columns

        return fidelity_columns() if shape == "fidelity" else adaptation_columns()
    if shape == "wide":
        scales: list = []
        for code in plan.instruments:
            inst = _get(code)
            if inst is None or code == CONTEXT:
                continue
            scales.extend((inst, s) for s in inst.scales)
        names = wide_item_names(plan)
        cols = dd.wide_columns(plan.context_items, scales, [])
        for (code, item_code), name in names.items():
            inst = _get(code)
            item = next(it for it in inst.items if it.code == item_code) if inst is not None else None
            if item is not None:
                cols.append(dd.item_column(inst, item, name))
        return cols + ident
    raise ValueError(f"shape must be one of {SHAPES}")


def wide_item_names(plan: Plan) -> dict[tuple[str, str], str]:
    """``(instrument, item)`` -> its column in the ``wide`` shape (empty unless items are asked for).

    An item keeps its own code unless that names another column (a scale, a fixed or context
    column, or an item of another instrument), then it is ``<instrument>__<item>``: two columns
    of one name would overwrite each other's values.
    """
    if not plan.filters.items:
        return {}
    pairs, taken = [], {c.name for c in dd.wide_columns(plan.context_items, [], [])}
    for code in plan.instruments:
        inst = _get(code)
        if inst is None or code == CONTEXT:
            continue
        taken.update(s.code for s in inst.scales)
        pairs.extend((code, it.code) for it in inst.items if (code, it.code) not in plan.dropped_items)
    seen: dict[str, int] = {}
    for _code, item_code in pairs:
        seen[item_code] = seen.get(item_code, 0) + 1
    return {
        (code, item_code): f"{code}__{item_code}" if item_code in taken or seen[item_code] > 1 else item_code
        for code, item_code in pairs
    }


def dictionary(plan: Plan, shape: str) -> dict[str, Any]:
    """The JSON data dictionary of an export of ``shape``."""
    return dd.dictionary_json(
        columns(plan, shape),
        shape=shape,
        study_id=plan.study_id,
        deidentified=plan.deidentified,
        date_mode=plan.date_mode if plan.shift_dates else "calendar",
        instruments_used=plan.instruments,
        blinded=plan.blind_arms is not None,
    )


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


def copy_out(raw: Any, sql: str) -> bytearray:
    """The whole output of a ``COPY … TO STDOUT`` on a psycopg connection, read at the libpq level.

    psycopg's ``Copy`` iterator costs several microseconds of Python per row (one libpq message
    each); this loop takes the rows as libpq hands them over and waits on the socket (without the
    GIL, so a thread encoding the previous batch keeps running) only when none is buffered. Same
    connection, same transaction and snapshot; a server error is raised as psycopg raises it.
    """
    import select

    import psycopg
    from psycopg import pq

    pgconn = raw.pgconn
    pgconn.send_query(sql.encode())
    # The COPY_OUT result arrives first; get_result would block, so wait for it on the socket too.
    while pgconn.is_busy():
        select.select([pgconn.socket], [], [])
        pgconn.consume_input()
    first = pgconn.get_result()
    if first is None or first.status != pq.ExecStatus.COPY_OUT:
        _drain(pgconn)
        raise psycopg.DatabaseError(_error(first, "COPY did not start"))
    buf = bytearray()
    while True:
        nbytes, data = pgconn.get_copy_data(1)
        if nbytes > 0:
            buf += data
        elif nbytes == 0:
            select.select([pgconn.socket], [], [])
            pgconn.consume_input()
        else:
            break
    results = _drain(pgconn)
    failed = [r for r in results if r.status != pq.ExecStatus.COMMAND_OK]
    if nbytes == -2 or failed:
        raise psycopg.DatabaseError(_error(failed[0] if failed else None, "COPY failed"))
    return buf


def _drain(pgconn: Any) -> list:
    """The remaining results of the current query (None ends them)."""
    import select

    out = []
    while True:
        while pgconn.is_busy():
            select.select([pgconn.socket], [], [])
            pgconn.consume_input()
        res = pgconn.get_result()
        if res is None:
            return out
        out.append(res)


def _error(res: Any, fallback: str) -> str:
    message = res.error_message.decode(errors="replace").strip() if res is not None else ""
    return message or fallback


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


_DONE = object()


def prefetched(items: Iterator[Any], depth: int = 1) -> Iterator[Any]:
    """``items`` produced one step ahead on a thread of their own.

    At most ``depth`` items wait in the queue (memory: one batch more than a plain loop). The
    session the producer reads from is used by that thread alone while it runs; closing this
    generator (the client went away, an encoder failed) stops the producer and waits for it before
    returning, and an exception in the producer is raised here, in the caller's thread.
    """
    import queue
    import threading

    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # handed to the consumer, re-raised there
            failure.append(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
            while not stop.is_set():
                try:
                    q.put(_DONE, timeout=0.1)
                    break
                except queue.Full:
                    continue

    worker = threading.Thread(target=run, name="export-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                break
            yield item
        if failure:
            raise failure[0]
    finally:
        stop.set()
        worker.join()


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


def _answers_rows(session: Session, plan: Plan, ids: list[int]) -> list:
    return session.execute(
        select(
            Response.participant_id,
            Wave.code,
            Wave.offset_days,
            Response.completed_at,
            Response.instrument,
            Response.answers,
        )
        .join(Wave, Wave.id == Response.wave_id)
        .where(_response_filter(plan, ids))
        .order_by(Response.participant_id, Wave.offset_days, Wave.code, Response.instrument)
    ).all()


def _item_value(item, value, enrolled: pd.Timestamp, pid: int, plan: Plan) -> tuple[float | None, str | None]:
    """(numeric value, text value) of one answer; dates de-identified like every other date."""
    if value is None:
        return None, None
    if item is not None and item.kind in ("date", "datetime"):
        return plan.dates.answer(item.kind, value, enrolled, pid)
    if isinstance(value, bool):
        return float(value), None
    if isinstance(value, (int, float)):
        return float(value), None
    if isinstance(value, list):
        return None, ";".join(str(v) for v in value)
    return None, str(value)


def _local_day(moment, time_zone: str) -> pd.Timestamp:
    """The study-local calendar day of a stored timestamp (NaT when pandas cannot hold it)."""
    try:
        return pd.Timestamp(moment).tz_convert(ZoneInfo(time_zone)).tz_localize(None).normalize()
    except (ValueError, OverflowError):  # OutOfBoundsDatetime is a ValueError
        return pd.NaT


def _items_batch(session: Session, plan: Plan, ids: list[int], people: pd.DataFrame) -> pd.DataFrame:
    by_pid = people.set_index("pid")
    out: list[tuple] = []
    defs: dict[str, Any] = {}
    for pid, wave, offset, completed_at, code, answers in _answers_rows(session, plan, ids):
        inst = defs.setdefault(code, _get(code))
        person = by_pid.loc[pid]
        items = inst.items if inst is not None else []
        order = [it.code for it in items] + sorted(set(answers or {}) - {it.code for it in items})
        lookup = {it.code: it for it in items}
        local = _local_day(completed_at, plan.time_zone)
        days = float((local - person["enrolled_on"]).days)
        for item_code in order:
            if (code, item_code) in plan.dropped_items or item_code not in (answers or {}):
                continue
            it = lookup.get(item_code)
            if it is None and plan.deidentified:
                continue  # an item the definition does not know cannot be vetted: leave it out
            raw = answers[item_code]
            if raw is None:
                continue
            num, text = _item_value(it, raw, person["enrolled_on"], int(pid), plan)
            label = None
            if it is not None and it.options and num is not None:
                label = next((o.label for o in it.options if o.code == raw), None)
            out.append(
                (
                    pid,
                    person["participant"],
                    person["site"],
                    person["arm"],
                    wave,
                    offset,
                    days,
                    code,
                    item_code,
                    num,
                    text,
                    label,
                )
            )
    df = pd.DataFrame.from_records(
        out,
        columns=[
            "pid",
            "participant",
            "site",
            "arm",
            "wave",
            "wave_offset",
            "days",
            "instrument",
            "item",
            "value",
            "value_text",
            "label",
        ],
    )
    if plan.filters.identifiers:
        df = df.merge(
            people[["pid", "contact_name", "contact_email", "contact_phone", "contact_date_of_birth"]],
            on="pid",
            how="left",
        )
    return df


def iter_items(
    session: Session,
    study: Study,
    actor: Actor,
    filters: ExportFilters | None = None,
    *,
    secret: str = "",
    batch_size: int = DEFAULT_BATCH,
    plan: Plan | None = None,
) -> Iterator[pd.DataFrame]:
    """The ``items`` frame: one row per answered item (for psychometrics), in participant batches."""
    plan = plan or plan_export(session, study, actor, filters, secret=secret)
    cols = columns(plan, "items")
    yield from _iter(
        session, plan, batch_size, lambda ids, people: dd_conform(_items_batch(session, plan, ids, people), cols)
    )


def _wide_batch(
    session: Session, plan: Plan, ids: list[int], people: pd.DataFrame, cols: list[dd.Column]
) -> pd.DataFrame:
    long = _long_batch(session, plan, ids, people)
    key = ["pid", "wave"]
    if long.empty:
        return pd.DataFrame(columns=[c.name for c in cols])
    base = (
        long.groupby(key, sort=False)
        .agg(
            wave_offset=("wave_offset", "first"),
            days=("days", "min"),
            completed_at=("completed_at", "min"),
            out_of_window=("out_of_window", "max"),
        )
        .reset_index()
    )
    values = long.drop_duplicates(key + ["scale"]).set_index(key + ["scale"])["value"].unstack("scale")
    values.columns = [str(c) for c in values.columns]
    base = base.merge(values.reset_index(), on=key, how="left")
    if plan.filters.items:
        rows = []
        names = wide_item_names(plan)
        for pid, wave, _offset, _at, code, answers in _answers_rows(session, plan, ids):
            rec = {"pid": pid, "wave": wave}
            for item_code, v in (answers or {}).items():
                name = names.get((code, item_code))
                if name is None or v is None:
                    continue  # dropped, or not an item of the instrument
                if (isinstance(v, (int, float)) and not isinstance(v, bool)) or not plan.deidentified:
                    rec[name] = v
            rows.append(rec)
        if rows:
            items = pd.DataFrame(rows).groupby(key, sort=False).first().reset_index()
            base = base.merge(items, on=key, how="left")
    person_cols = [c for c in people.columns if c not in ("enrolled_on", "shift")]
    base = base.merge(people[person_cols], on="pid", how="left")
    order = {w.code: i for i, w in enumerate(plan.waves)}
    base["_w"] = base["wave"].map(order)
    return base.sort_values(["pid", "_w"], kind="stable")


def iter_wide(
    session: Session,
    study: Study,
    actor: Actor,
    filters: ExportFilters | None = None,
    *,
    secret: str = "",
    batch_size: int = DEFAULT_BATCH,
    plan: Plan | None = None,
) -> Iterator[pd.DataFrame]:
    """The ``wide`` frame: one row per participant × wave, a column per scale (and per item)."""
    plan = plan or plan_export(session, study, actor, filters, secret=secret)
    cols = columns(plan, "wide")
    yield from _iter(
        session, plan, batch_size, lambda ids, people: dd_conform(_wide_batch(session, plan, ids, people, cols), cols)
    )


def iter_safety(*args, **kwargs) -> Iterator[pd.DataFrame]:
    """The ``safety`` frame (adverse events and safety alerts): :func:`api.safety.export.iter_safety`."""
    from api.safety.export import iter_safety as _iter_safety

    return _iter_safety(*args, **kwargs)


def _delivery(shape: str) -> Callable[..., Iterator[pd.DataFrame]]:
    def iterate(*args, **kwargs) -> Iterator[pd.DataFrame]:
        """A delivery shape: :func:`api.delivery.export.iter_delivery_shape`."""
        from api.delivery.export import iter_delivery_shape

        return iter_delivery_shape(shape, *args, **kwargs)

    return iterate


def iter_fidelity(*args, **kwargs) -> Iterator[pd.DataFrame]:
    """The ``fidelity`` frame (ratings by score part and item): :func:`api.fidelity.export.iter_fidelity`."""
    from api.fidelity.export import iter_fidelity as _iter_fidelity

    return _iter_fidelity(*args, **kwargs)


def iter_adaptations(*args, **kwargs) -> Iterator[pd.DataFrame]:
    """The ``adaptations`` frame (FRAME log): :func:`api.fidelity.export.iter_adaptations`."""
    from api.fidelity.export import iter_adaptations as _iter_adaptations

    return _iter_adaptations(*args, **kwargs)


ITERATORS = {
    "long": iter_long,
    "wide": iter_wide,
    "items": iter_items,
    "safety": iter_safety,
    **{shape: _delivery(shape) for shape in ("delivery", "dose", "delivery_sessions", "supporter_training")},
    "fidelity": iter_fidelity,
    "adaptations": iter_adaptations,
}


def participants_in(session: Session, plan: Plan) -> int:
    """How many participants an export plan covers (the sites it may read)."""
    return session.execute(
        select(func.count())
        .select_from(Participant)
        .where(Participant.study_id == plan.study_id, Participant.site_id.in_(plan.site_ids), *uses_data_clause())
    ).scalar_one()


def iter_shape(session: Session, plan: Plan, shape: str, batch_size: int = DEFAULT_BATCH) -> Iterator[pd.DataFrame]:
    """Batches of ``shape`` for a resolved plan."""
    return ITERATORS[shape](session, plan.study, plan.actor, plan=plan, batch_size=batch_size)


def audit_export(
    session: Session,
    plan: Plan,
    *,
    shape: str,
    fmt: str,
    complete: bool,
    error: str | None = None,
    digest: dict[str, Any] | None = None,
) -> None:
    """Record one export (parameters, row count and, for a streamed one, the byte count and SHA-256
    of what was sent) in the audit trail (the caller commits). The event is the export's receipt:
    see :func:`receipt`."""
    record(
        session,
        plan.actor,
        "export",
        "study",
        plan.study_id,
        study_id=plan.study_id,
        after={
            "shape": shape,
            "format": fmt,
            **plan.filters.params(),
            "deidentified": plan.deidentified,
            "date_mode": plan.date_mode if plan.shift_dates else "calendar",
            "rows": plan.rows,
            "complete": complete,
            **({"error": error} if error else {}),
            **(digest or {}),
        },
    )


def audited_stream(
    engine: Engine, plan: Plan, chunks: Callable[[Session], Iterator[bytes]], *, shape: str, fmt: str
) -> Iterator[bytes]:
    """The bytes of an export, read in a session of their own while a response streams them, and
    audited once the last byte is produced (or the client goes away: the event then says
    ``complete: false`` with the rows sent so far). The audit event is committed in its own
    transaction, since the request's has ended by then."""
    complete, error = False, None
    sha, size = hashlib.sha256(), 0
    with Session(engine, expire_on_commit=False) as session:
        try:
            for chunk in chunks(session):
                sha.update(chunk)
                size += len(chunk)
                yield chunk
            complete = True
        except Exception as exc:
            error = type(exc).__name__
            raise
        finally:
            digest = {"bytes": size, "sha256": sha.hexdigest()}
            with Session(engine) as audit_session:
                audit_export(audit_session, plan, shape=shape, fmt=fmt, complete=complete, error=error, digest=digest)
                audit_session.commit()


def update_settings(
    session: Session, study: Study, actor: Actor, *, date_mode: str | None, free_text_items: list[str] | None
) -> ExportSettings:
    """Change a study's export settings (admins; audited; the caller commits)."""
    # Study-wide: a coordinator of one site would change what analysts see of the others.
    policy.ensure_admin(actor, "change a study's export settings")
    current = session.get(ExportSettings, study.id)
    before = (
        None if current is None else {"date_mode": current.date_mode, "free_text_items": list(current.free_text_items)}
    )
    if current is None:
        current = ExportSettings(study_id=study.id)
    if free_text_items is not None:
        bad = []
        for n, ref in enumerate(free_text_items):
            code, _, item = ref.partition(".")
            inst = _get(code)
            if inst is None or item not in {i.code for i in inst.items}:
                bad.append(n)
        if bad:
            raise Unprocessable(
                ["body", "free_text_items", bad[0]],
                "expected instrument.item naming an item of a registered instrument",
                "unknown_item",
            )
        current.free_text_items = sorted(set(free_text_items))
    if date_mode is not None:
        current.date_mode = date_mode
    from api.db import utcnow

    current.updated_at = utcnow()
    session.add(current)
    session.flush()
    record(
        session,
        actor,
        "update" if before else "create",
        "export_settings",
        study.id,
        study_id=study.id,
        before=before,
        after={"date_mode": current.date_mode, "free_text_items": list(current.free_text_items)},
    )
    return current
