"""The ``items`` and ``wide`` shapes as DataFrame batches (every format, every database).

``items``: one row per answered item (for psychometrics). ``wide``: one row per participant ×
wave, a column per scale and, with ``items=true``, per item. Both reuse the participant columns
and batching of :mod:`api.exports.frames`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlmodel import Session

from api.auth.service import Actor
from api.exports import dictionary as dd
from api.exports.frames import _iter, _long_batch, _response_filter, dd_conform
from api.exports.plan import DEFAULT_BATCH, ExportFilters, Plan, _get, columns, plan_export, wide_item_names
from api.responses.models import Response
from api.studies.models import Study, Wave

if TYPE_CHECKING:
    import pandas as pd
else:
    from api.lazyimport import pandas as pd


def _answers_rows(session: Session, plan: Plan, ids: list[int]) -> list:
    return list(
        session.execute(
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
    )


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
