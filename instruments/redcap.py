"""Build custom instruments from a REDCap data dictionary (the 18-column metadata CSV).

Each ``Form Name`` becomes one :class:`~instruments.model.Instrument`. What a definition cannot hold
(calculated fields, files, descriptive text, SQL fields, slider labels, branching logic, action tags…)
is listed in the returned report as :class:`~instruments.model.Problem` rows, never dropped silently.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import IO

from .loader import check_references
from .model import Instrument, InstrumentError, Item, Option, Problem

# Normalised header prefix (lower case) -> API metadata key. Prefixes, because REDCap's UI headers are long
# ("Choices, Calculations, OR Slider Labels") and exports from other tools shorten them.
_HEADERS = [
    ("variable / field name", "field_name"),
    ("field_name", "field_name"),
    ("form name", "form_name"),
    ("form_name", "form_name"),
    ("section header", "section_header"),
    ("section_header", "section_header"),
    ("field type", "field_type"),
    ("field_type", "field_type"),
    ("field label", "field_label"),
    ("field_label", "field_label"),
    ("choices", "choices"),
    ("select_choices", "choices"),
    ("field note", "field_note"),
    ("field_note", "field_note"),
    ("text validation type", "validation"),
    ("text_validation_type", "validation"),
    ("text validation min", "min"),
    ("text_validation_min", "min"),
    ("text validation max", "max"),
    ("text_validation_max", "max"),
    ("identifier", "identifier"),
    ("branching logic", "branching"),
    ("branching_logic", "branching"),
    ("required field", "required"),
    ("required_field", "required"),
    ("custom alignment", "alignment"),
    ("custom_alignment", "alignment"),
    ("question number", "question_number"),
    ("question_number", "question_number"),
    ("matrix group name", "matrix_group"),
    ("matrix_group_name", "matrix_group"),
    ("matrix ranking", "matrix_ranking"),
    ("matrix_ranking", "matrix_ranking"),
    ("field annotation", "annotation"),
    ("field_annotation", "annotation"),
]
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TAG = re.compile(r"<[^>]+>")
_UNSUPPORTED = {
    "calc": "calculated field (REDCap expression); score it with a scale instead",
    "file": "file upload",
    "descriptive": "descriptive text (no data)",
    "sql": "SQL-driven choice list",
}
_INTEGER = {"integer"}
_NUMBER = {
    "number",
    "number_1dp",
    "number_2dp",
    "number_3dp",
    "number_4dp",
    "number_comma_decimal",
    "number_1dp_comma_decimal",
    "number_2dp_comma_decimal",
}


def _read(source: str | Path | IO[str]) -> str:
    if hasattr(source, "read"):
        text = source.read()
        return text.decode("utf-8-sig") if isinstance(text, bytes) else text
    if isinstance(source, Path):
        return source.read_text(encoding="utf-8-sig")
    if "\n" not in source and Path(source).is_file():
        return Path(source).read_text(encoding="utf-8-sig")
    return source


def _key(header: str) -> str | None:
    h = (header or "").strip().lower().lstrip("\ufeff")
    for prefix, key in _HEADERS:
        if h.startswith(prefix):
            return key
    return None


def _number(text: str) -> int | float | None:
    try:
        f = float(text)
    except ValueError:
        return None
    return int(f) if f.is_integer() and re.fullmatch(r"-?\d+", text.strip()) else f


def _clean(label: str) -> str:
    return re.sub(r"\s+", " ", _TAG.sub(" ", label or "")).strip()


def _choices(raw: str) -> list[tuple[str, str]]:
    out = []
    for part in (raw or "").split("|"):
        part = part.strip()
        if not part:
            continue
        code, _, label = part.partition(",")
        out.append((code.strip(), _clean(label.strip()) or code.strip()))
    return out


def _checkbox_suffix(code: str) -> str:
    # REDCap's export column for option `code` of checkbox `q` is q___<code>, non-alphanumerics -> "_".
    return re.sub(r"[^a-z0-9]", "_", code.lower())


def from_redcap_dictionary(
    source: str | Path | IO[str], *, version: str = "1", skip_record_id: bool = True
) -> tuple[list[Instrument], list[Problem]]:
    """Turn a REDCap data dictionary into instrument definitions, one per ``Form Name``.

    Parameters
    ----------
    source : path, file-like or str
        The data dictionary CSV (UI headers or API metadata keys).
    version : str
        Version given to every imported instrument.
    skip_record_id : bool
        The first row of a REDCap dictionary is the record ID field; it identifies the record, is not
        an answer and is left out (reported with rule ``record_id``).

    Returns
    -------
    (instruments, report)
        ``report`` lists every field or feature that could not be represented, as
        ``Problem(loc=field_name, rule=..., msg=...)``. Rules: ``record_id``, ``unsupported_field_type``,
        ``non_numeric_choice``, ``text_coded_choice``, ``slider_labels_kept``, ``slider_limits_invalid``,
        ``field_note_kept``, ``autocomplete_ignored``, ``branching_logic_not_enforced``,
        ``action_tags_ignored``, ``validation_bound_not_literal``, ``checkbox_expanded``,
        ``invalid_field_name``, ``unknown_field_type``, ``section_header_dropped``, ``matrix_ranking_ignored``.

    Examples
    --------
    >>> csv_text = ('Variable / Field Name,Form Name,Field Type,Field Label,Choices\\n'
    ...             'record_id,intake,text,Record ID,\\n'
    ...             'mood,intake,radio,How is your mood?,"1, Good | 2, Bad"\\n'
    ...             'bmi,intake,calc,BMI,[weight]/([height]^2)\\n')
    >>> insts, report = from_redcap_dictionary(csv_text)
    >>> [i.code for i in insts[0].items], sorted(p.rule for p in report)
    (['mood'], ['record_id', 'unsupported_field_type'])
    """
    text = _read(source)
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise InstrumentError("empty data dictionary") from None
    keys = [_key(h) for h in header]
    if "field_name" not in keys or "form_name" not in keys or "field_type" not in keys:
        raise InstrumentError("not a REDCap data dictionary: need Variable / Field Name, Form Name and Field Type")
    forms: dict[str, list[Item]] = {}
    report: list[Problem] = []
    first = True
    for raw_row in reader:
        if not any(c.strip() for c in raw_row):
            continue
        row = {k: (raw_row[i].strip() if i < len(raw_row) else "") for i, k in enumerate(keys) if k}
        name, form, ftype = row.get("field_name", ""), row.get("form_name", ""), row.get("field_type", "").lower()
        if first and skip_record_id:
            first = False
            report.append(Problem(name, "record_id", "first field is the record ID; not imported as an item"))
            forms.setdefault(form, [])
            continue
        first = False
        if not _NAME.match(name) or not _NAME.match(form):
            report.append(
                Problem(
                    name or "?", "invalid_field_name", f"field/form name {name!r}/{form!r} must match ^[a-z][a-z0-9_]*$"
                )
            )
            continue
        forms.setdefault(form, [])
        label = _clean(row.get("field_label", "")) or name
        common = dict(
            text=label,
            identifier=row.get("identifier", "").lower() == "y",
            required=row.get("required", "").lower() == "y",
            label=name,
        )
        notes = []
        note = _clean(row.get("field_note", ""))
        if note:
            # Kept with the item (shown under the question on the form, and in the data dictionary).
            notes.append(f"Field note: {note}")
            report.append(Problem(name, "field_note_kept", f"field note {note!r} kept as the item's note"))
        if row.get("validation", "").lower() == "autocomplete":
            report.append(
                Problem(name, "autocomplete_ignored", "autocomplete is a REDCap display option; shown as a plain list")
            )
        branching = row.get("branching", "")
        if notes:
            common["notes"] = " ".join(notes)
        if branching:
            common["notes"] = " ".join(notes + [f"REDCap branching logic: {branching}"])
            report.append(
                Problem(
                    name,
                    "branching_logic_not_enforced",
                    f"shown only if {branching!r} in REDCap; kept as a note, not enforced",
                )
            )
        if "@" in row.get("annotation", ""):
            report.append(Problem(name, "action_tags_ignored", f"field annotation {row['annotation']!r} not applied"))
        if row.get("section_header"):
            report.append(Problem(name, "section_header_dropped", "section header text not kept"))
        if row.get("matrix_ranking", "").lower() == "y":
            report.append(Problem(name, "matrix_ranking_ignored", "matrix ranking is not enforced"))
        if ftype in _UNSUPPORTED:
            report.append(Problem(name, "unsupported_field_type", f"{ftype}: {_UNSUPPORTED[ftype]}; not imported"))
            continue
        if ftype in ("radio", "dropdown"):
            choices = _choices(row.get("choices", ""))
            if not choices:
                report.append(Problem(name, "non_numeric_choice", "no choices; field not imported"))
                continue
            if all(_number(code) is not None for code, _ in choices):
                opts = [Option(_number(code), lab) for code, lab in choices]
            else:
                # Text codes (ISO country codes, "adult"/"ped"): stored as their position 1..n, the
                # REDCap code kept on the option and written back to REDCap files and the REDCap API.
                opts = [Option(i, lab, value=code) for i, (code, lab) in enumerate(choices, start=1)]
                report.append(
                    Problem(
                        name,
                        "text_coded_choice",
                        "choice codes are text: stored as 1..n with value labels, written back to REDCap as the "
                        "text codes",
                    )
                )
            forms[form].append(Item(code=name, options=tuple(opts), kind="choice", **common))
        elif ftype == "checkbox":
            choices = _choices(row.get("choices", ""))
            if not choices:
                report.append(Problem(name, "non_numeric_choice", "checkbox without choices; not imported"))
                continue
            for code, lab in choices:
                sub = dict(common, label=f"{name}: {lab}", text=f"{label}: {lab}")
                forms[form].append(
                    Item(
                        code=f"{name}___{_checkbox_suffix(code)}",
                        kind="choice",
                        options=(Option(0, "Unchecked"), Option(1, "Checked")),
                        **sub,
                    )
                )
            report.append(
                Problem(
                    name,
                    "checkbox_expanded",
                    f"checkbox stored as one 0/1 item per option ({name}___<code>), as REDCap exports it",
                )
            )
        elif ftype == "yesno":
            forms[form].append(Item(code=name, kind="choice", options=(Option(1, "Yes"), Option(0, "No")), **common))
        elif ftype == "truefalse":
            forms[form].append(
                Item(code=name, kind="choice", options=(Option(1, "True"), Option(0, "False")), **common)
            )
        elif ftype == "slider":
            # REDCap's slider runs 0-100 unless Text Validation Min/Max set other limits (e.g. -10 to 10).
            lo = _number(row.get("min", "")) if row.get("min") else None
            hi = _number(row.get("max", "")) if row.get("max") else None
            lo = 0 if lo is None else lo
            hi = 100 if hi is None else hi
            if lo >= hi:
                report.append(Problem(name, "slider_limits_invalid", f"slider limits {lo} to {hi}; 0-100 used"))
                lo, hi = 0, 100
            slider = dict(common)
            if row.get("choices"):
                labels = " | ".join(part.strip() for part in row["choices"].split("|"))
                before = str(common.get("notes") or "")
                slider["notes"] = " ".join(filter(None, [before, f"Slider labels: {labels}"]))
                report.append(
                    Problem(
                        name,
                        "slider_labels_kept",
                        f"slider labels {row['choices']!r} kept as the item's note; stored as an integer {lo} to {hi}",
                    )
                )
            forms[form].append(Item(code=name, kind="integer", min=lo, max=hi, **slider))
        elif ftype in ("text", "notes"):
            validation = row.get("validation", "").lower()
            lo, hi = None, None
            for key in ("min", "max"):
                bound = row.get(key, "")
                if bound:
                    num = _number(bound)
                    if num is None:
                        report.append(
                            Problem(
                                name, "validation_bound_not_literal", f"{key} {bound!r} is not a number; not enforced"
                            )
                        )
                    elif key == "min":
                        lo = num
                    else:
                        hi = num
            if ftype == "notes":
                kind = "text"
            elif validation in _INTEGER:
                kind = "integer"
            elif validation in _NUMBER:
                kind = "number"
            elif validation.startswith("datetime"):
                kind = "datetime"
            elif validation.startswith("date"):
                kind = "date"
            elif validation.startswith("time"):
                kind = "time"
            else:
                kind = "text"
            numeric = kind in ("integer", "number")
            forms[form].append(
                Item(code=name, kind=kind, min=lo if numeric else None, max=hi if numeric else None, **common)
            )
        else:
            report.append(Problem(name, "unknown_field_type", f"field type {ftype!r} not recognised; not imported"))
            continue
    instruments = []
    for form, items in forms.items():
        if not items:
            continue
        inst = Instrument(
            code=form,
            name=form.replace("_", " ").capitalize(),
            version=version,
            citation="Custom instrument imported from a REDCap data dictionary.",
            licence="Study-specific instrument; the study holds the rights to its wording.",
            items=tuple(items),
            scales=(),
            wording_shipped=True,
            notes={"source": "redcap_dictionary", "identifiers": [i.code for i in items if i.identifier]},
        )
        check_references(inst, where=form)
        instruments.append(inst)
    return instruments, report
