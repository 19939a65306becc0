"""A Peerlens study as REDCap files: the flat records CSV and the 18-column data dictionary.

Records: one row per participant × wave, ``record_id`` (the study code), ``redcap_event_name``
(``<wave>_arm_1``), ``redcap_data_access_group`` (the site code), then per instrument its fields,
``<form>_timestamp`` (completion time, UTC, ``YYYY-MM-DD HH:MM:SS``) and ``<form>_complete``
(2 = complete, 0 = partial, blank = not collected). Everything is a string, blank = no value, as REDCap writes.
The same role rules as every export apply (analysts: no identifier or flagged free-text fields,
dates de-identified), and cells that would start a spreadsheet formula are neutralised unless the
export asks for ``escape_formulas=false`` (e.g. a file going back into REDCap's importer).

Examples
--------
>>> event_name("m12")
'm12_arm_1'
>>> event_name("Month-6")
'month_6_arm_1'
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from sqlmodel import Session

from api.exports import service
from api.exports.service import Plan
from api.exports.writers import SafeCsvWriter

if TYPE_CHECKING:
    import pandas as pd
else:
    from api.lazyimport import pandas as pd

STRUCTURAL = ("record_id", "redcap_event_name", "redcap_data_access_group")


def event_name(wave_code: str, arm: int = 1) -> str:
    """REDCap's unique event name of a wave (``<slug>_arm_<n>``)."""
    slug = re.sub(r"[^a-z0-9]+", "_", wave_code.lower()).strip("_") or "event"
    return f"{slug}_arm_{arm}"


def _fields(plan: Plan) -> list[tuple[str, list[str]]]:
    out = []
    for code in plan.instruments:
        inst = service._get(code)
        if inst is None:
            continue
        out.append((code, [it.code for it in inst.items if (code, it.code) not in plan.dropped_items]))
    return out


def header(plan: Plan) -> list[str]:
    cols = list(STRUCTURAL)
    for form, items in _fields(plan):
        cols.extend(items)
        cols.extend([f"{form}_timestamp", f"{form}_complete"])
    return cols


def _text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    return str(v)


def _stamp(plan: Plan, completed_at, pid: int) -> str:
    try:
        ts = plan.dates.moment(pd.Timestamp(completed_at).tz_convert("UTC"), pid)
    except (ValueError, OverflowError):  # a time stored before the date policy (year 1, 9999)
        return ""
    return "" if ts is None else ts.strftime("%Y-%m-%d %H:%M:%S")


def _date_kinds(plan: Plan) -> dict[tuple[str, str], str]:
    """(instrument, item) -> ``date``/``datetime`` for answers the date policy applies to."""
    out = {}
    for code in plan.instruments:
        inst = service._get(code)
        for it in inst.items if inst is not None else ():
            if it.kind in ("date", "datetime"):
                out[(code, it.code)] = it.kind
    return out


def _text_codes(plan: Plan) -> dict[tuple[str, str], dict[str, str]]:
    """(instrument, item) -> {stored code: REDCap text code} for text-coded choices."""
    out = {}
    for code in plan.instruments:
        inst = service._get(code)
        for it in inst.items if inst is not None else ():
            if any(o.value is not None for o in it.options):
                out[(code, it.code)] = {_text(o.code): o.value for o in it.options if o.value is not None}
    return out


def iter_rows(session: Session, plan: Plan, batch_size: int = service.DEFAULT_BATCH) -> Iterator[list[list[str]]]:
    """Batches of REDCap rows (lists of strings), whole participants per batch."""
    cols = header(plan)
    index = {c: i for i, c in enumerate(cols)}
    forms = dict(_fields(plan))
    date_kinds = _date_kinds(plan)
    texts = _text_codes(plan)
    wave_order = {w.code: i for i, w in enumerate(plan.waves)}
    plan_with_context = plan
    service._begin_snapshot(session)
    try:
        for ids in service._participant_batches(session, plan, batch_size):
            people = service._participants(session, plan, ids).set_index("pid")
            rows: dict[tuple[int, str], list[str]] = {}
            for pid, wave, _offset, completed_at, code, answers, status in _answer_rows(
                session, plan_with_context, ids
            ):
                key = (pid, wave)
                row = rows.get(key)
                if row is None:
                    row = [""] * len(cols)
                    row[0] = people.at[pid, "participant"]
                    row[1] = event_name(wave)
                    row[2] = people.at[pid, "site"]
                    rows[key] = row
                for item in forms.get(code, ()):
                    if item in (answers or {}):
                        value = answers[item]
                        kind = date_kinds.get((code, item))
                        if kind is not None and value is not None and plan.dates.deidentified:
                            num, txt = plan.dates.answer(kind, value, people.at[pid, "enrolled_on"], int(pid))
                            value = int(num) if num is not None else txt
                        text = texts.get((code, item), {}).get(_text(value)) if texts else None
                        row[index[item]] = text if text is not None else _text(value)
                row[index[f"{code}_timestamp"]] = _stamp(plan, completed_at, int(pid))
                # REDCap's form status: 2 complete, 0 incomplete (a partial response, resumable).
                row[index[f"{code}_complete"]] = "2" if status == "complete" else "0"
            service._end_batch(session)
            ordered = sorted(rows.items(), key=lambda kv: (kv[0][0], wave_order.get(kv[0][1], 0)))
            plan.rows += len(ordered)
            yield [r for _, r in ordered]
    finally:
        session.rollback()


def _answer_rows(session: Session, plan: Plan, ids: list[int]):
    # Context answers are a form like any other in REDCap; the long/wide exports fold them into
    # context_* columns instead.
    from sqlalchemy import select

    from api.responses.models import Response
    from api.studies.models import Wave

    return session.execute(
        select(
            Response.participant_id,
            Wave.code,
            Wave.offset_days,
            Response.completed_at,
            Response.instrument,
            Response.answers,
            Response.status,
        )
        .join(Wave, Wave.id == Response.wave_id)
        .where(
            Response.participant_id.in_(ids),
            Response.wave_id.in_(plan.wave_ids),
            Response.instrument.in_(plan.instruments),
        )
        .order_by(Response.participant_id, Wave.offset_days, Response.instrument)
    ).all()


def csv_chunks(
    session: Session, plan: Plan, progress: Callable[[list[list[str]]], object] | None = None
) -> Iterator[bytes]:
    """The records CSV in pieces: the header, then one piece per batch of participants (each batch
    also passed to ``progress``, e.g. a progress bar)."""
    escape = plan.filters.escape_formulas
    buf = io.StringIO()
    SafeCsvWriter(buf, escape, lineterminator="\n").writerow(header(plan))
    yield buf.getvalue().encode()
    for batch in iter_rows(session, plan):
        buf = io.StringIO()
        SafeCsvWriter(buf, escape, lineterminator="\n").writerows(batch)
        yield buf.getvalue().encode()
        if progress is not None:
            progress(batch)


def stream_records(engine, plan: Plan) -> Iterator[bytes]:
    """The records CSV, streamed; audited (``shape: redcap``) when it ends."""
    return service.audited_stream(engine, plan, lambda session: csv_chunks(session, plan), shape="redcap", fmt="csv")


def records_csv(session: Session, plan: Plan) -> str:
    """The whole records CSV as one string (tests, CLI)."""
    buf = io.StringIO()
    w = SafeCsvWriter(buf, plan.filters.escape_formulas, lineterminator="\n")
    w.writerow(header(plan))
    for batch in iter_rows(session, plan):
        w.writerows(batch)
    return buf.getvalue()


DD_HEADER = (
    "Variable / Field Name",
    "Form Name",
    "Section Header",
    "Field Type",
    "Field Label",
    "Choices, Calculations, OR Slider Labels",
    "Field Note",
    "Text Validation Type OR Show Slider Number",
    "Text Validation Min",
    "Text Validation Max",
    "Identifier?",
    "Branching Logic (Show field only if...)",
    "Required Field?",
    "Custom Alignment",
    "Question Number (surveys only)",
    "Matrix Group Name",
    "Matrix Ranking?",
    "Field Annotation",
)


def _num(v) -> str:
    return "" if v is None else _text(float(v))


def data_dictionary_csv(plan: Plan) -> str:
    """The REDCap data dictionary of the plan's instruments (record id field first)."""
    buf = io.StringIO()
    w = SafeCsvWriter(buf, plan.filters.escape_formulas, lineterminator="\n")
    w.writerow(DD_HEADER)
    first_form = next((c for c, _ in _fields(plan)), "record")
    w.writerow(["record_id", first_form, "", "text", "Record ID"] + [""] * 13)
    for code, items in _fields(plan):
        inst = service._get(code)
        for item_code in items:
            it = inst.item(item_code)
            label = it.text or it.label or it.code
            choices, ftype, validation, lo, hi = "", "text", "", "", ""
            if it.options:
                ftype = "radio"
                choices = " | ".join(
                    f"{o.value if o.value is not None else _text(o.code)}, {o.label}" for o in it.options
                )
            elif it.kind == "integer":
                validation, lo, hi = "integer", _num(it.min), _num(it.max)
            elif it.kind == "number":
                validation, lo, hi = "number", _num(it.min), _num(it.max)
            elif it.kind == "date":
                validation = "date_ymd"
            elif it.kind == "datetime":
                validation = "datetime_ymd"
            w.writerow(
                [
                    it.code,
                    code,
                    "",
                    ftype,
                    label,
                    choices,
                    "",
                    validation,
                    lo,
                    hi,
                    "y" if it.identifier else "",
                    "",
                    "y" if it.required else "",
                    "",
                    "",
                    "",
                    "",
                    "",
                ]
            )
    return buf.getvalue()
