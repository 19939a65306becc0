"""Column specifications of each export shape and the data dictionary built from them.

One :class:`Column` list drives everything about a file: the order and types of its columns, the
Parquet schema (with the dictionary in its metadata), Stata/SPSS variable and value labels, and the
JSON/CSV data dictionary served beside the export. Labels, options, citations and licences come
from the instrument definitions, so the dictionary cannot drift from what was collected.

Examples
--------
>>> cols = long_columns(context_items=[])
>>> [c.name for c in cols][:3]
['participant', 'site', 'arm']
>>> dictionary_csv(cols[:1]).splitlines()[0].split(",")[:3]
['name', 'label', 'type']
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import instruments

# The long frame's column spec is the analysis library's: the export is exactly what it consumes
# (``analysis`` loads its model stack lazily, so this import stays light).
from analysis.frame import LONG_COLUMNS
from instruments.model import Instrument, Item

#: Column kinds and their meaning in every format.
KINDS = ("string", "int", "float", "bool", "datetime")


@dataclass(frozen=True)
class Column:
    """One column of an export and its dictionary entry.

    ``values`` maps allowed codes (or strings) to labels; ``instrument`` names the instrument the
    column comes from (citation and licence are looked up from it).
    """

    name: str
    label: str
    kind: str
    unit: str | None = None
    values: tuple[tuple[Any, str], ...] = ()
    instrument: str | None = None
    range: tuple[float, float] | None = None
    notes: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def entry(self) -> dict[str, Any]:
        """The JSON dictionary entry of this column."""
        inst = _instrument(self.instrument)
        return {
            "name": self.name,
            "label": self.label,
            "type": self.kind,
            "unit": self.unit,
            "values": [{"code": c, "label": lab} for c, lab in self.values],
            "range": list(self.range) if self.range else None,
            "instrument": self.instrument,
            "instrument_name": inst.name if inst else None,
            "citation": inst.citation if inst else None,
            "licence": inst.licence if inst else None,
            "notes": self.notes,
        }


def _instrument(code: str | None) -> Instrument | None:
    if not code:
        return None
    try:
        return instruments.get(code)
    except instruments.InstrumentError:
        return None


_KIND = {"string": "string", "int": "int", "float": "float", "bool": "bool", "datetime": "datetime"}
_UNITS = {
    "wave_offset": "days",
    "days": "days",
    "status_days": "days",
    "intervention_stopped_days": "days",
    "follow_up_stopped_days": "days",
    "due_offset": "days",
    "completed_at": "UTC date-time",
    "items_answered": "items",
}
_VALUES = {
    "arm_kind": (("intervention", "Intervention"), ("active_comparator", "Active comparator"), ("control", "Control")),
    "status": (
        ("active", "Active"),
        ("withdrawn", "Withdrawn"),
        ("lost_to_follow_up", "Lost to follow-up"),
        ("completed", "Completed"),
    ),
}
_BOOL_VALUES = ((False, "No"), (True, "Yes"))


def _base(name: str) -> Column:
    kind, description = LONG_COLUMNS[name]
    return Column(
        name,
        description,
        _KIND[kind],
        unit=_UNITS.get(name),
        values=_BOOL_VALUES if kind == "bool" else _VALUES.get(name, ()),
    )


def item_label(item: Item) -> str:
    """Short label of an item (the wording may be absent for licensed instruments)."""
    return item.label or item.text or item.code


def context_columns(context_items: list[Item]) -> list[Column]:
    """``context_*`` columns: answer labels as strings (the analysis layer's convention)."""
    out = []
    for it in context_items:
        name = it.code if it.code.startswith("context_") else f"context_{it.code}"
        out.append(
            Column(
                name,
                item_label(it),
                "string",
                values=tuple((o.label, o.label) for o in it.options),
                instrument="context",
                notes="baseline context answer, as its label",
                # Stata and SPSS files get the option codes with value labels instead (as REDCap's do).
                extra={"codes": tuple((o.code, o.label) for o in it.options)} if it.options else {},
            )
        )
    return out


LONG_ORDER = list(LONG_COLUMNS)


def long_columns(context_items: list[Item]) -> list[Column]:
    """Columns of the ``long`` shape: :data:`analysis.frame.LONG_COLUMNS` then ``context_*``."""
    return [_base(n) for n in LONG_ORDER] + context_columns(context_items)


def identifier_columns() -> list[Column]:
    """Contact-vault columns added to coordinator exports with ``identifiers=true``."""
    return [
        Column("contact_name", "Name (identifier)", "string"),
        Column("contact_email", "Email (identifier)", "string"),
        Column("contact_phone", "Phone (identifier)", "string"),
        Column("contact_date_of_birth", "Date of birth (identifier)", "string", unit="ISO date"),
    ]


def item_column(inst: Instrument, item: Item, name: str | None = None) -> Column:
    """A column holding one item's answers (numeric codes with value labels, or text)."""
    if item.kind in ("text", "date", "datetime", "time"):
        kind = "string"
    elif item.kind in ("integer",) and not item.options:
        kind = "float"
    else:
        kind = "float"
    rng = (item.min, item.max) if item.min is not None or item.max is not None else None
    unit = item.unit or {"date": "ISO date (de-identified: days since enrolment)", "datetime": "ISO date-time"}.get(
        item.kind
    )
    return Column(
        name or item.code,
        # The unit travels in the label too: Stata and SPSS files have no other place for it.
        f"{item_label(item)} ({item.unit})" if item.unit else item_label(item),
        kind,
        unit=unit,
        values=tuple((o.code, o.label + (" (missing)" if o.missing else "")) for o in item.options),
        instrument=inst.code,
        range=rng,
        notes="reverse-scored" if item.reverse else None,
    )


def scale_column(inst: Instrument, scale) -> Column:
    bands = "; ".join(f"{b.label}: {b.min}-{b.max}" for b in scale.bands) or None
    return Column(
        scale.code,
        f"{scale.label} ({scale.unit})" if scale.unit else scale.label,
        "float",
        unit=scale.unit or "points",
        instrument=inst.code,
        range=tuple(scale.range),
        notes=f"bands: {bands}" if bands else None,
    )


WIDE_FIXED = (
    "participant",
    "site",
    "arm",
    "arm_kind",
    "wave",
    "wave_offset",
    "days",
    "completed_at",
    "out_of_window",
    "status",
    "status_days",
    "intervention_stopped_days",
    "follow_up_stopped_days",
    "due_offset",
)


def wide_columns(
    context_items: list[Item], scales: list[tuple[Instrument, Any]], items: list[tuple[Instrument, Item]]
) -> list[Column]:
    """Columns of the ``wide`` shape: one row per participant × wave, a column per scale (and item)."""
    fixed = []
    for n in WIDE_FIXED:
        c = _base(n)
        if n == "days":
            c = Column(n, "days from enrolment to the first completion at this wave", "float", unit="days")
        elif n == "completed_at":
            c = Column(n, "first completion at this wave (UTC)", "datetime", unit="UTC date-time")
        elif n == "out_of_window":
            c = Column(n, "any questionnaire of this wave completed outside its window", "bool", values=_BOOL_VALUES)
        fixed.append(c)
    return (
        fixed
        + context_columns(context_items)
        + [scale_column(i, s) for i, s in scales]
        + [item_column(i, it) for i, it in items]
    )


ITEMS_COLUMNS = (
    Column("participant", "pseudonymous participant code", "string"),
    Column("site", "site code", "string"),
    Column("arm", "arm code", "string"),
    Column("wave", "wave code", "string"),
    Column("wave_offset", "planned days from enrolment to the wave", "int", unit="days"),
    Column("days", "days from enrolment to completion of the questionnaire", "float", unit="days"),
    Column("instrument", "instrument code", "string"),
    Column("item", "item code", "string"),
    Column("value", "numeric answer (option code or number); empty for text answers", "float"),
    Column("value_text", "text or date answer (de-identified dates: days since enrolment)", "string"),
    Column("label", "label of the chosen option", "string"),
)


def items_columns() -> list[Column]:
    return list(ITEMS_COLUMNS)


def dictionary_json(
    columns: list[Column],
    *,
    shape: str,
    study_id: int,
    deidentified: bool,
    date_mode: str,
    instruments_used: list[str],
    blinded: bool = False,
) -> dict[str, Any]:
    """The JSON data dictionary of an export."""
    insts = []
    for code in instruments_used:
        inst = _instrument(code)
        if inst is not None:
            insts.append(
                {
                    "code": inst.code,
                    "name": inst.name,
                    "version": str(inst.version),
                    "citation": inst.citation,
                    "licence": inst.licence,
                    # The long shape holds every scale in one ``value`` column: its unit is here.
                    "scales": [{"code": sc.code, "label": sc.label, "unit": sc.unit or "points"} for sc in inst.scales],
                }
            )
    from api.release import version

    return {
        "study_id": study_id,
        "shape": shape,
        # The release that wrote the file (CHANGELOG.md says what changed between releases).
        "peerlens_version": version(),
        "deidentified": deidentified,
        # Blinded analysis: arms are neutral labels until an admin unblinds the study.
        "arms": "blinded: neutral labels" if blinded else "arm codes",
        "dates": {
            "shift": "shifted back 0-364 days per participant (same shift for all of a participant's dates)",
            "relative": "days since enrolment (calendar dates left empty)",
        }.get(date_mode, "calendar"),
        "columns": [c.entry() for c in columns],
        "instruments": insts,
    }


DICTIONARY_CSV_FIELDS = (
    "name",
    "label",
    "type",
    "unit",
    "values",
    "range",
    "instrument",
    "instrument_name",
    "citation",
    "licence",
    "notes",
)


def dictionary_csv(columns: list[Column], *, escape_formulas: bool = True) -> str:
    """The data dictionary as CSV; allowed values flattened as ``code=label | code=label``; labels
    that would start a spreadsheet formula are neutralised (see :mod:`api.exports.writers`)."""
    from api.exports.writers import SafeCsvWriter

    buf = io.StringIO()
    w = SafeCsvWriter(buf, escape=escape_formulas, lineterminator="\n")
    w.writerow(DICTIONARY_CSV_FIELDS)
    for c in columns:
        e = c.entry()
        e["values"] = " | ".join(f"{v['code']}={v['label']}" for v in e["values"])
        e["range"] = "" if e["range"] is None else f"{e['range'][0]}-{e['range'][1]}"
        w.writerow(["" if e[k] is None else e[k] for k in DICTIONARY_CSV_FIELDS])
    return buf.getvalue()


def dictionary_bytes(dictionary: dict[str, Any]) -> bytes:
    return json.dumps(dictionary, ensure_ascii=False, default=str).encode()
