"""The ``long`` and ``wide`` CSV exports built by PostgreSQL and streamed as its COPY blocks.

On PostgreSQL a CSV export of the ``long`` or ``wide`` shape is one
``COPY (SELECT …) TO STDOUT WITH (FORMAT csv)``: the database joins, de-identifies, pivots and
formats every cell, and the server passes its blocks to the response as they arrive, so no row
becomes a Python object. The bytes are those of the batch path (:mod:`api.exports.frames` with
:func:`api.exports.writers.write_csv`), which stays the path of every other format, of SQLite and
of the cases listed in :func:`supported`:

* text cells are always quoted, numbers and booleans never (as Arrow's CSV writer does); floats
  are written in Arrow's shortest form (``12``, ``0.000015``, ``1e-7``), booleans ``true``/``false``,
  times ``YYYY-MM-DDTHH:MM:SSZ``;
* a text cell that a spreadsheet would run as a formula gets a leading ``'`` (the RE2 tests of
  :mod:`api.exports.writers`, written for PostgreSQL's regex engine);
* the analyst date shift is :func:`api.exports.deid.shift_days` in SQL: HMAC-SHA256 built from
  ``sha256()`` with the key's inner and outer pads computed here, its first 8 bytes read as an
  unsigned integer modulo 365 (the secret never reaches the statement, only the padded key does,
  and the statement is never logged);
* times and dates pandas cannot hold (before 1677 or after 2262) are empty, as on the batch path.

Examples
--------
>>> _hmac_pads("k")[0][:2].hex(), len(_hmac_pads("k")[1])
('5d36', 64)
>>> print(_float_text("v"))  # doctest: +ELLIPSIS
CASE WHEN abs(v) >= 1e-4 AND abs(v) < 'Infinity' OR v = 0 THEN (v)::text ...
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session

from api.exports import dictionary as dd
from api.exports.frames import _begin_snapshot
from api.exports.pgcopy import copy_blocks, prefetched
from api.exports.plan import CONTEXT, Plan, _get, columns
from api.exports.writers import neutralise

# The extremes pandas holds at nanosecond resolution, at PostgreSQL's microsecond resolution.
_TS_LO, _TS_HI = "'1677-09-21 00:12:43.145225+00'::timestamptz", "'2262-04-11 23:47:16.854775+00'::timestamptz"
_DATE_LO, _DATE_HI = "'1677-09-22'::date", "'2262-04-11'::date"
_NUMBER_RE = "'^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$'"
_TIME_FORMAT = '\'YYYY-MM-DD"T"HH24:MI:SS"Z"\''
# 2**64 mod 365: turns the signed 64-bit reading of the digest into the unsigned one.
_WRAP = (1 << 64) % 365
BLOCK = 1 << 19  # bytes per chunk handed to the response


def supported(plan: Plan, shape: str, fmt: str, dialect: str) -> bool:
    """Whether this export takes the SQL path: PostgreSQL, CSV, ``long`` or ``wide`` without item
    columns, and no scale code shared by two of the exported instruments (the batch path then
    keeps each instrument's value apart by its order)."""
    if dialect != "postgresql" or fmt != "csv" or shape not in ("long", "wide"):
        return False
    if shape == "wide":
        if plan.filters.items:
            return False
        codes = [s.code for _inst, s in _scales(plan)]
        if len(codes) != len(set(codes)):
            return False
    return True


def _scales(plan: Plan) -> list[tuple[Any, Any]]:
    out: list[tuple[Any, Any]] = []
    for code in plan.instruments:
        inst = _get(code)
        if inst is None or code == CONTEXT:
            continue
        out.extend((inst, s) for s in inst.scales)
    return out


def _hmac_pads(secret: str) -> tuple[bytes, bytes]:
    """The inner and outer HMAC-SHA256 key pads of ``secret`` (RFC 2104)."""
    key = secret.encode()
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def _shift_sql(plan: Plan) -> str:
    """Per participant ``p``, :func:`api.exports.deid.shift_days` as a SQL expression."""
    inner, outer = _hmac_pads(plan.secret)
    message = f"convert_to('{int(plan.study_id)}:' || p.id::text, 'UTF8')"
    digest = f"sha256('\\x{outer.hex()}'::bytea || sha256('\\x{inner.hex()}'::bytea || {message}))"
    signed = f"('x' || encode(substring({digest} from 1 for 8), 'hex'))::bit(64)::bigint"
    # Signed modulo keeps the dividend's sign; the wrap term adds 2**64 back for negative readings.
    return f"((({signed}) % 365 + 365 + CASE WHEN ({signed}) < 0 THEN {_WRAP} ELSE 0 END) % 365)"


def _float_text(x: str) -> str:
    """``x`` (double precision) as Arrow's CSV writer spells it (``nan``, ``inf``, no exponent
    down to 1e-6, exponents without padding)."""
    t = f"({x})::text"
    mant, exp = f"split_part({t}, 'e', 1)", f"split_part({t}, 'e', 2)::int"
    small = (
        f"CASE WHEN {exp} >= -6 THEN CASE WHEN {x} < 0 THEN '-' ELSE '' END || '0.' || repeat('0', -{exp} - 1)"
        f" || replace(ltrim({mant}, '-'), '.', '') ELSE {mant} || 'e' || {exp}::text END"
    )
    return (
        f"CASE WHEN abs({x}) >= 1e-4 AND abs({x}) < 'Infinity' OR {x} = 0 THEN {t} "
        f"WHEN {x} = 'Infinity' THEN 'inf' WHEN {x} = '-Infinity' THEN '-inf' WHEN {x} = 'NaN' THEN 'nan' "
        f"WHEN {x} IS NOT NULL THEN {small} END"
    )


def _bool_text(x: str) -> str:
    return f"CASE WHEN {x} THEN 'true' WHEN NOT {x} THEN 'false' END"


class _Builder:
    """The SELECT of one plan and shape, literals quoted by the driver."""

    def __init__(self, plan: Plan, raw: Any, today) -> None:
        from psycopg import sql

        self.plan, self.today = plan, today
        self._quote = lambda v: sql.Literal(v).as_string(raw)
        self.escape = plan.filters.escape_formulas

    def lit(self, value: Any) -> str:
        return self._quote(value)

    def text(self, x: str) -> str:
        """A text cell, neutralised when it would start a spreadsheet formula."""
        if not self.escape:
            return x
        return (
            # ascii() of the first character: an integer test, no substring built for every cell.
            f"CASE WHEN ascii({x}) IN (61, 43, 45, 64, 9, 13) AND {x} !~ {_NUMBER_RE} THEN '''' || {x} ELSE {x} END"
        )

    def ints(self, values: list[int]) -> str:
        return "ARRAY[" + ",".join(str(int(v)) for v in values) + "]::int[]" if values else "'{}'::int[]"

    def texts(self, values: list[str]) -> str:
        return "ARRAY[" + ",".join(self.lit(v) for v in values) + "]::text[]" if values else "'{}'::text[]"

    # ---- participants --------------------------------------------------------------------

    def people(self) -> str:
        """One row per exported participant with its formatted participant-level cells."""
        plan = self.plan
        enrolled_ok = f"p.enrolled_on BETWEEN {_DATE_LO} AND {_DATE_HI}"
        if plan.blind_arms is not None:
            arms = " ".join(f"WHEN {int(k)} THEN {self.lit(v)}" for k, v in plan.blind_arms.items())
            arm, arm_kind = (f"CASE p.arm_id {arms} END" if arms else "NULL::text"), "NULL::text"
        else:
            arm, arm_kind = "a.code", "a.kind"
        status_days = (
            f"CASE WHEN p.status IN ('withdrawn', 'lost_to_follow_up') AND {enrolled_ok} AND p.status_date "
            f"BETWEEN {_DATE_LO} AND {_DATE_HI} THEN (p.status_date - p.enrolled_on)::text END"
        )
        closed = ", ".join(
            f"CASE WHEN {self.lit(self.today)}::date - p.enrolled_on > {w.offset_days + w.window_after_days} "
            f"THEN {int(w.offset_days)} END"
            for w in plan.waves
        )
        due = f"CASE WHEN {enrolled_ok} THEN greatest(-1{', ' + closed if closed else ''})::text END"
        shift = _shift_sql(plan) if plan.dates.mode == "shift" else "0"
        cells = [
            "p.id AS pid",
            f"{self.text('p.study_code')} AS participant",
            f"{self.text('si.code')} AS site",
            f"{self.text(arm)} AS arm",
            f"{self.text(arm_kind)} AS arm_kind",
            "p.enrolled_on",
            f"({enrolled_ok}) AS enrolled_ok",
            f"{self.text('p.status')} AS status",
            f"{status_days} AS status_days",
            f"CASE WHEN {enrolled_ok} THEN (p.intervention_stopped_on - p.enrolled_on)::text END "
            "AS intervention_stopped_days",
            f"CASE WHEN {enrolled_ok} THEN (p.follow_up_stopped_on - p.enrolled_on)::text END "
            "AS follow_up_stopped_days",
            f"{due} AS due_offset",
            f"{shift} AS shift",
        ]
        joins = ["JOIN site si ON si.id = p.site_id", "LEFT JOIN arm a ON a.id = p.arm_id"]
        if plan.context_items:
            joins.append(
                "LEFT JOIN LATERAL (SELECT c.answers FROM response c WHERE c.participant_id = p.id "
                f"AND c.instrument = {self.lit(CONTEXT)} ORDER BY c.completed_at LIMIT 1) ctx ON true"
            )
            for col, item in zip(dd.context_columns(plan.context_items), plan.context_items, strict=True):
                cells.append(f"{self.text(self._context_value(item))} AS {self.ident(col.name)}")
        if plan.filters.identifiers:
            joins.append("LEFT JOIN participant_contact pc ON pc.participant_id = p.id")
            cells += [
                f"{self.text('pc.name')} AS contact_name",
                f"{self.text('pc.email')} AS contact_email",
                f"{self.text('pc.phone')} AS contact_phone",
                self.text("to_char(pc.date_of_birth, 'YYYY-MM-DD')") + " AS contact_date_of_birth",
            ]
        return f"SELECT {', '.join(cells)} FROM participant p {' '.join(joins)} WHERE {self.in_scope('p')}"

    def ident(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def _context_value(self, item) -> str:
        """A baseline context answer as its option label (``str`` of the answer when no option
        has its code), with Python's dict lookup: ``1``, ``1.0`` and ``true`` find code 1."""
        v = f"(ctx.answers -> {self.lit(item.code)})"
        numeric = [(o.code, o.label) for o in item.options if isinstance(o.code, (int, float))]
        strings = [(o.code, o.label) for o in item.options if isinstance(o.code, str)]
        n = f"({v}::text)::numeric"
        number_text = (
            f"CASE WHEN {v}::text ~ '^-?[0-9]+$' THEN {n}::text "
            f"ELSE CASE WHEN ({v}::text)::float8::text ~ '^-?[0-9]+$' THEN ({v}::text)::float8::text || '.0' "
            f"ELSE ({v}::text)::float8::text END END"
        )
        by_number = " ".join(f"WHEN {n} = {float(c)!r}::numeric THEN {self.lit(lab)}" for c, lab in numeric)
        by_string = " ".join(f"WHEN {v} #>> '{{}}' = {self.lit(c)} THEN {self.lit(lab)}" for c, lab in strings)
        true_label = next((lab for c, lab in numeric if c == 1), "True")
        false_label = next((lab for c, lab in numeric if c == 0), "False")
        return (
            f"CASE json_typeof({v}) "
            f"WHEN 'number' THEN CASE {by_number} ELSE {number_text} END "
            f"WHEN 'string' THEN CASE {by_string} ELSE {v} #>> '{{}}' END "
            f"WHEN 'boolean' THEN CASE WHEN {v}::text = 'true' THEN {self.lit(true_label)} "
            f"ELSE {self.lit(false_label)} END "
            f"WHEN 'null' THEN NULL ELSE {v}::text END"
        ).replace("CASE  ELSE", "CASE WHEN false THEN NULL ELSE")

    # ---- rows ----------------------------------------------------------------------------

    def _scores(self, fields: str) -> str:
        """``fields`` of the score rows in scope. It names ``participant`` itself rather than the
        ``pe`` rows, so that PostgreSQL may scan and join the large tables in parallel workers."""
        plan = self.plan
        wanted = [c for c in plan.instruments if c != CONTEXT]
        return (
            f"SELECT {fields} FROM response r JOIN participant p ON p.id = r.participant_id "
            "JOIN score s ON s.response_id = r.id "
            f"WHERE {self.in_scope('p')} AND r.wave_id = ANY({self.ints(plan.wave_ids)}) "
            f"AND r.instrument = ANY({self.texts(wanted)})"
        )

    def in_scope(self, p: str) -> str:
        """The participants whose data this export may use (:func:`api.exports.frames.uses_data_clause`)."""
        plan = self.plan
        return (
            f"{p}.study_id = {int(plan.study_id)} AND {p}.site_id = ANY({self.ints(plan.site_ids)}) "
            f"AND {p}.voided_at IS NULL AND {p}.consent_withdrawn_on IS NULL"
        )

    def _moment(self, ts: str, shift: str = "pe.shift") -> str:
        """A completion time as the reader sees it, formatted (shifted, calendar or empty)."""
        mode = self.plan.dates.mode
        if mode == "relative":
            return "NULL::text"
        utc = f"({ts} AT TIME ZONE 'UTC')"
        if mode == "shift":
            utc = f"({utc} - {shift} * interval '1 day')"
        return f"to_char({utc}, {_TIME_FORMAT})"

    def _days(self, ts: str, enrolled_on: str = "pe.enrolled_on", enrolled_ok: str = "pe.enrolled_ok") -> str:
        tz = self.lit(self.plan.time_zone)
        return f"CASE WHEN {enrolled_ok} THEN ({ts} AT TIME ZONE {tz})::date - {enrolled_on} END"

    def long(self, cols: list[dd.Column]) -> str:
        ok = f"r.completed_at BETWEEN {_TS_LO} AND {_TS_HI}"
        enrolled_ok = f"p.enrolled_on BETWEEN {_DATE_LO} AND {_DATE_HI}"
        # The cells of the score row, formatted where the rows are read (in parallel workers when
        # PostgreSQL uses them); the date shift needs the participant's offset, so a shifted time
        # is formatted after the join with ``pe``.
        row = {
            "wave": self.text("w.code"),
            "wave_offset": "w.offset_days",
            "days": f"CASE WHEN {ok} THEN {self._days('r.completed_at', 'p.enrolled_on', enrolled_ok)} END",
            "completed_at": f"CASE WHEN {ok} THEN {self._moment('r.completed_at')} END",
            "out_of_window": _bool_text("r.out_of_window"),
            "instrument": self.text("r.instrument"),
            "scale": self.text("s.scale"),
            "value": _float_text("s.value"),
            "band": self.text("s.band"),
            "level": "s.level",
            "items_answered": "s.items_answered",
            "prorated": _bool_text("s.prorated"),
        }
        shifted = self.plan.dates.mode == "shift"
        if shifted:
            row["completed_at"] = "r.completed_at"
        inner = self._scores(
            "r.participant_id AS pid, w.offset_days AS o, w.code AS wc, r.instrument AS ri, s.id AS sid, "
            + ", ".join(f"{expr} AS {name}" for name, expr in zip(_ROW_NAMES, [row[n] for n in _ROW], strict=True))
        ).replace("JOIN score s", "JOIN wave w ON w.id = r.wave_id JOIN score s", 1)
        outer = {n: f"x.{name}" for n, name in zip(_ROW, _ROW_NAMES, strict=True)}
        if shifted:
            at = "x.r_completed_at"
            outer["completed_at"] = f"CASE WHEN {at} BETWEEN {_TS_LO} AND {_TS_HI} THEN {self._moment(at)} END"
        select = _aliased(outer.get(c.name, f"pe.{self.ident(c.name)}") for c in cols)
        # OFFSET 0 keeps the row query a subquery of its own: its cells are computed before the
        # sort, where the rows are read, instead of after the join.
        return (
            f"WITH pe AS MATERIALIZED ({self.people()}) SELECT {select} FROM ({inner} "
            "ORDER BY r.participant_id, w.offset_days, w.code, r.instrument, s.id OFFSET 0) x "
            "JOIN pe ON pe.pid = x.pid ORDER BY x.pid, x.o, x.wc, x.ri, x.sid"
        )

    def wide(self, cols: list[dd.Column]) -> str:
        ok = f"r.completed_at BETWEEN {_TS_LO} AND {_TS_HI}"
        scales = {s.code for _inst, s in _scales(self.plan)}
        aggs = [f"min(r.completed_at) FILTER (WHERE {ok}) AS first_at", "bool_or(r.out_of_window) AS oow"]
        for n, code in enumerate(sorted(scales)):
            aggs.append(f"max(s.value) FILTER (WHERE s.scale = {self.lit(code)}) AS v{n}")
        column_of = {code: f"g.v{n}" for n, code in enumerate(sorted(scales))}
        row = {
            "wave": self.text("w.code"),
            "wave_offset": "w.offset_days",
            "days": self._days("g.first_at"),
            "completed_at": self._moment("g.first_at"),
            "out_of_window": _bool_text("g.oow"),
        }
        select = _aliased(
            row.get(c.name) or (_float_text(column_of[c.name]) if c.name in column_of else f"pe.{self.ident(c.name)}")
            for c in cols
        )
        grouped = self._scores(f"r.participant_id AS pid, r.wave_id AS wid, {', '.join(aggs)}")
        grouped += " GROUP BY r.participant_id, r.wave_id"
        return (
            f"WITH pe AS MATERIALIZED ({self.people()}), g AS ({grouped}) "
            f"SELECT {select} FROM g JOIN pe ON pe.pid = g.pid JOIN wave w ON w.id = g.wid "
            "ORDER BY pe.pid, w.offset_days, w.code"
        )


_ROW = (
    "wave",
    "wave_offset",
    "days",
    "completed_at",
    "out_of_window",
    "instrument",
    "scale",
    "value",
    "band",
    "level",
    "items_answered",
    "prorated",
)
_ROW_NAMES = tuple("r_" + n for n in _ROW)


def _aliased(expressions) -> str:
    """The select list, columns named ``c0``, ``c1``… (export names may be any text)."""
    return ", ".join(f"{e} AS c{i}" for i, e in enumerate(expressions))


def statement(plan: Plan, shape: str, raw: Any) -> str:
    """The ``COPY`` statement of ``shape`` for ``plan`` (text columns forced into quotes)."""
    # The study-local day the batch path measures due offsets from.
    today = datetime.now(ZoneInfo(plan.time_zone)).date()
    b = _Builder(plan, raw, today)
    cols = columns(plan, shape)
    query = b.long(cols) if shape == "long" else b.wide(cols)
    quoted = [f"c{i}" for i, c in enumerate(cols) if c.kind in ("string", "datetime")]
    force = f", FORCE_QUOTE ({', '.join(quoted)})" if quoted else ""
    return f"COPY ({query}) TO STDOUT WITH (FORMAT csv{force})"


def header(plan: Plan, shape: str) -> bytes:
    """The header line, as :func:`api.exports.writers.write_csv` writes it."""
    from api.exports.writers import _quote

    names = [c.name for c in columns(plan, shape)]
    escape = plan.filters.escape_formulas
    return (",".join(_quote(neutralise(n) if escape else n) for n in names) + "\n").encode()


def csv_chunks(session: Session, plan: Plan, shape: str) -> Iterator[bytes]:
    """The CSV bytes of ``shape`` in chunks of about :data:`BLOCK` bytes; the header travels with
    the first block, so a failing statement fails before the first byte (see
    :func:`api.exports.integrity.primed`). Counts rows into ``plan.rows``."""
    _begin_snapshot(session)
    try:
        raw: Any = session.connection().connection.driver_connection
        # The float and string spellings the statement relies on, whatever the server's defaults.
        raw.execute("SET LOCAL extra_float_digits = 1")
        raw.execute("SET LOCAL standard_conforming_strings = on")
        # JIT compiling this expression-heavy statement costs more (0.4 s measured on 10,000
        # participants) than it saves on a scan that runs once.
        raw.execute("SET LOCAL jit = off")
        sql = statement(plan, shape, raw)
        # The database fills the next block while the current one goes to the client.
        blocks = prefetched(copy_blocks(raw, sql, BLOCK), depth=2)
        try:
            pending = header(plan, shape)
            for block, rows in blocks:
                plan.rows += rows
                if pending:
                    block = pending + block
                    pending = b""
                yield bytes(block)
            if pending:
                yield pending
        finally:
            close = getattr(blocks, "close", None)
            if close is not None:
                close()  # the COPY has stopped before the session is rolled back
    finally:
        session.rollback()
