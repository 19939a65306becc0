"""File writers: DataFrame batches in, bytes out, one writer per format.

CSV, JSON and Parquet stream: each batch is encoded and handed on before the next is read, so
memory holds one batch (Parquet: one row group) at a time. Stata and SPSS files are written by
ReadStat, which needs the whole frame; batches are concatenated first (documented limitation).

Every writer takes the same :class:`~api.exports.dictionary.Column` list, so types are the same in
every format: codes never lose leading zeros, booleans are booleans (0/1 with No/Yes labels in
Stata/SPSS), times are UTC.

CSV cells are safe to open in a spreadsheet (OWASP "CSV injection"): a text cell that starts with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` so that Excel,
LibreOffice or Sheets show it as text instead of running it as a formula; a cell that is only a
number (``-3``, ``+1.5e3``) cannot carry a formula and is left alone. ``escape_formulas=False``
(``?escape_formulas=false``, ``peerlens export --keep-formulas``) writes cells verbatim, e.g. for
a file that goes on to another program rather than a person.

Examples
--------
>>> import pandas as pd
>>> from api.exports.dictionary import Column
>>> cols = [Column("participant", "code", "string"), Column("value", "score", "float")]
>>> b"".join(write_csv(iter([pd.DataFrame({"participant": ["007"], "value": [1.5]})]), cols)).decode()
'participant,value\\n"007",1.5\\n'
>>> [neutralise(v) for v in ("=HYPERLINK(\\"x\\")", "+44 7700", "-3", "@sum", "plain")]
['\\'=HYPERLINK("x")', "'+44 7700", '-3', "'@sum", 'plain']
"""

from __future__ import annotations

import csv
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from api.exports.dictionary import Column

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
else:
    from api.lazyimport import pandas as pd
    from api.lazyimport import pyarrow as pa

FORMATS = ("csv", "json", "parquet", "dta", "sav")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "parquet": "application/vnd.apache.parquet",
    "dta": "application/x-stata-dta",
    "sav": "application/x-spss-sav",
}


FORMULA_START = "=+-@\t\r"
_FORMULA = re.compile(r"^[=+\-@\t\r]")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
# The same two tests for Arrow's regex engine (RE2).
_FORMULA_RE2 = r"^[=+\-@\t\r]"
_NUMBER_RE2 = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def neutralise(value: Any) -> Any:
    """``value`` with a leading ``'`` when it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value and value[0] in FORMULA_START and not _NUMBER.match(value):
        return "'" + value
    return value


class SafeCsvWriter:
    """:func:`csv.writer` whose cells pass through :func:`neutralise` (unless ``escape`` is False)."""

    def __init__(self, fh, escape: bool = True, **kwargs):
        self._w = csv.writer(fh, **kwargs)
        # csv quotes a field holding the line terminator ("\n") but not a bare "\r", which
        # readers take for a line end: such rows are written fully quoted.
        self._quoted = csv.writer(fh, **{**kwargs, "quoting": csv.QUOTE_ALL})
        self.escape = escape

    def writerow(self, row) -> None:
        row = [neutralise(v) for v in row] if self.escape else list(row)
        quoted = any(isinstance(v, str) and "\r" in v for v in row)
        (self._quoted if quoted else self._w).writerow(row)

    def writerows(self, rows) -> None:
        for row in rows:
            self.writerow(row)


def _neutralise_table(table: pa.Table) -> pa.Table:
    """:func:`neutralise` over every string column of an Arrow table, in Arrow's C++ kernels."""
    import pyarrow.compute as pc

    for i, field in enumerate(table.schema):
        if not pa.types.is_string(field.type):
            continue
        col = table.column(i)
        formula = pc.match_substring_regex(col, _FORMULA_RE2)
        if not pc.any(formula).as_py():
            continue  # the common case: no cell starts like a formula, the number test is not needed
        risky = pc.and_not(formula, pc.match_substring_regex(col, _NUMBER_RE2))
        if pc.any(risky).as_py():
            prefixed = pc.binary_join_element_wise(pa.scalar("'"), col, "")
            table = table.set_column(i, field, pc.if_else(risky, prefixed, col))
    return table


def conform(df: pd.DataFrame, columns: list[Column]) -> pd.DataFrame:
    """The batch with exactly ``columns``, in order, with their types (missing columns are empty)."""
    names = tuple(f"{c.name}:{c.kind}" for c in columns)
    if df.attrs.get("conformed") == names:
        return df  # already typed by the service
    out = {}
    n = len(df)
    for c in columns:
        s = df[c.name] if c.name in df.columns else pd.Series([None] * n, index=df.index, dtype=object)
        if c.kind == "string":
            if not (pd.api.types.is_object_dtype(s.dtype) or pd.api.types.is_string_dtype(s.dtype)):
                s = s.astype(str).where(s.notna(), None)  # codes stay text, never numbers
            s = s.astype(object).where(s.notna(), None)
        elif c.kind == "int":
            s = pd.to_numeric(s, errors="coerce").astype("Int64")
        elif c.kind == "float":
            s = pd.to_numeric(s, errors="coerce").astype("float64")
        elif c.kind == "bool":
            s = s.astype("boolean")
        elif c.kind == "datetime":
            s = pd.to_datetime(s, utc=True)
        out[c.name] = s
    result = pd.DataFrame(out, index=df.index).reset_index(drop=True)
    result.attrs["conformed"] = names
    return result


def write_csv(
    batches: Iterable[pd.DataFrame], columns: list[Column], *, escape_formulas: bool = True
) -> Iterator[bytes]:
    """UTF-8 CSV, header once, blank = missing, ISO 8601 UTC times, ``true``/``false``; text cells
    that would start a formula are neutralised unless ``escape_formulas`` is False."""
    import pyarrow.csv as pacsv

    yield (",".join(_quote(neutralise(c.name) if escape_formulas else c.name) for c in columns) + "\n").encode()
    # Arrow's CSV writer (C++) instead of DataFrame.to_csv: same text, several times faster.
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    schema = pa.schema(
        [pa.field(c.name, pa.string() if c.kind == "datetime" else _arrow_type(c.kind)) for c in columns]
    )
    times = [c.name for c in columns if c.kind == "datetime"]
    for df in batches:
        if len(df):
            df = conform(df, columns)
            if times:
                df = df.assign(**{name: df[name].dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(object) for name in times})
            table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
            del df
            if escape_formulas:
                table = _neutralise_table(table)
            sink = pa.BufferOutputStream()
            pacsv.write_csv(table, sink, options)
            del table
            yield sink.getvalue().to_pybytes()


def _quote(name: str) -> str:
    return f'"{name}"' if any(ch in name for ch in ',"\n') else name


def write_json(batches: Iterable[pd.DataFrame], columns: list[Column]) -> Iterator[bytes]:
    """A JSON array of row objects (``null`` = missing), streamed batch by batch."""
    yield b"["
    first = True
    for df in batches:
        if not len(df):
            continue
        df = conform(df, columns)
        for c in columns:
            if c.kind == "datetime":
                df[c.name] = df[c.name].dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(object)
        text = df.to_json(orient="records", force_ascii=False, double_precision=15)
        body = text[1:-1]
        if body:
            yield (b"" if first else b",") + body.encode()
            first = False
    yield b"]"


def _arrow_type(kind: str) -> pa.DataType:
    """The Arrow type of a dictionary column kind (built on use: pyarrow loads with the first export)."""
    if kind == "string":
        return pa.string()
    if kind == "int":
        return pa.int64()
    if kind == "float":
        return pa.float64()
    if kind == "bool":
        return pa.bool_()
    if kind == "datetime":
        return pa.timestamp("us", tz="UTC")
    raise KeyError(kind)


def arrow_schema(columns: list[Column], dictionary: dict[str, Any] | None = None) -> pa.Schema:
    """Arrow schema with each field's label (and the whole data dictionary) as metadata."""
    fields = [
        pa.field(c.name, _arrow_type(c.kind), metadata={"label": c.label, **({"unit": c.unit} if c.unit else {})})
        for c in columns
    ]
    meta = {"peerlens.dictionary": json.dumps(dictionary, default=str)} if dictionary is not None else None
    return pa.schema(fields, metadata=meta)


class _Chunks:
    """A write-only file object that keeps what was written until :meth:`take` hands it on."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.pos = 0
        self.closed = False

    def write(self, data) -> int:
        b = bytes(data)
        self.parts.append(b)
        self.pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def write_parquet(
    batches: Iterable[pd.DataFrame], columns: list[Column], dictionary: dict[str, Any] | None = None
) -> Iterator[bytes]:
    """Parquet, one row group per batch, streamed as each row group is finished."""
    import pyarrow.parquet as pq  # only Parquet exports need it; keeps it out of start-up

    schema = arrow_schema(columns, dictionary)
    sink = _Chunks()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, compression="zstd")
    try:
        for df in batches:
            if not len(df):
                continue
            table = pa.Table.from_pandas(conform(df, columns), schema=schema, preserve_index=False)
            writer.write_table(table)
            chunk = sink.take()
            if chunk:
                yield chunk
    finally:
        writer.close()
    yield sink.take()


def _stat_frame(batches: Iterable[pd.DataFrame], columns: list[Column]) -> tuple[pd.DataFrame, dict, list]:
    frames = [conform(df, columns) for df in batches if len(df)]
    df = pd.concat(frames, ignore_index=True) if frames else conform(pd.DataFrame(), columns)
    value_labels: dict[str, dict] = {}
    for c in columns:
        if c.kind == "bool":
            df[c.name] = df[c.name].astype("float64")
            value_labels[c.name] = {0: "No", 1: "Yes"}
        elif c.kind == "int":
            df[c.name] = df[c.name].astype("float64")
        elif c.kind == "datetime":
            df[c.name] = df[c.name].dt.tz_convert("UTC").dt.tz_localize(None)
        elif c.kind == "string" and c.extra.get("codes"):
            # A categorical answer kept as its label in CSV/Parquet: a labelled numeric code here.
            codes = {label: float(code) for code, label in c.extra["codes"]}
            df[c.name] = df[c.name].map(codes).astype("float64")
            value_labels[c.name] = {code: label for code, label in c.extra["codes"]}
        elif c.kind == "string":
            df[c.name] = df[c.name].fillna("").astype(object)
        if (
            c.kind == "float"
            and c.values
            and all(isinstance(code, (int, float)) and not isinstance(code, bool) for code, _ in c.values)
        ):
            value_labels[c.name] = {code: label for code, label in c.values}
    labels = [c.label[:80] for c in columns]
    return df, value_labels, labels


def write_stat(
    batches: Iterable[pd.DataFrame],
    columns: list[Column],
    fmt: str,
    chunk_size: int = 1 << 20,
    dictionary: dict[str, Any] | None = None,
) -> Iterator[bytes]:
    """Stata 15 ``.dta`` or SPSS ``.sav`` with variable and value labels (via ReadStat); the file
    label names the Peerlens release, study and shape when ``dictionary`` is given."""
    import pyreadstat

    df, value_labels, labels = _stat_frame(batches, columns)
    file_label = ""
    if dictionary is not None:
        file_label = (
            f"Peerlens {dictionary.get('peerlens_version')} {dictionary.get('shape')} export, "
            f"study {dictionary.get('study_id')}"
        )[:80]
    fd, path = tempfile.mkstemp(suffix="." + fmt)
    os.close(fd)
    try:
        if fmt == "dta":
            pyreadstat.write_dta(
                df,
                path,
                file_label=file_label,
                column_labels=labels,
                variable_value_labels=value_labels,
                version=15,
            )
        else:
            pyreadstat.write_sav(
                df, path, file_label=file_label, column_labels=labels, variable_value_labels=value_labels
            )
        del df
        with open(path, "rb") as fh:
            while True:
                block = fh.read(chunk_size)
                if not block:
                    break
                yield block
    finally:
        os.unlink(path)


def write(
    fmt: str,
    batches: Iterable[pd.DataFrame],
    columns: list[Column],
    dictionary: dict[str, Any] | None = None,
    *,
    escape_formulas: bool = True,
) -> Iterator[bytes]:
    """Dispatch on ``fmt`` (one of :data:`FORMATS`); ``escape_formulas`` applies to CSV only."""
    if fmt == "csv":
        return write_csv(batches, columns, escape_formulas=escape_formulas)
    if fmt == "json":
        return write_json(batches, columns)
    if fmt == "parquet":
        return write_parquet(batches, columns, dictionary)
    if fmt in ("dta", "sav"):
        return write_stat(batches, columns, fmt, dictionary=dictionary)
    raise ValueError(f"format must be one of {FORMATS}")
