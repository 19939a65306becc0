"""The REDCap API methods Peerlens answers, over the same services as the REST routes.

A REDCap project is one Peerlens study: its URL is ``/studies/{id}/redcap/api/`` (REDCap clients
require a URL ending ``/api/``), the token is the user's Peerlens API token in REDCap's format (32
hexadecimal characters, ``peerlens users token EMAIL --redcap``), and role, site scoping and the
analysts' de-identification apply exactly as on the REST routes, because every method reads through
:func:`api.exports.service.plan_export` and writes through :func:`api.interop.service.import_redcap`
(validation, scoring, safety rules, audit).

Mapping: a record is a participant (``record_id`` = study code), an event is a wave
(``<wave>_arm_1``: Peerlens has one schedule, so one REDCap arm), a form is an instrument, a data
access group is a site. Randomisation arms are data in Peerlens, not event arms.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, select

import instruments
from api.auth.service import Actor
from api.errors import ApiError
from api.exports import service as exports
from api.exports.writers import SafeCsvWriter
from api.interop import redcap_export as rx
from api.interop.service import import_redcap
from api.studies.models import Site, Study, Wave

#: The metadata keys of REDCap's API, in the data dictionary's column order.
METADATA_KEYS = (
    "field_name",
    "form_name",
    "section_header",
    "field_type",
    "field_label",
    "select_choices_or_calculations",
    "field_note",
    "text_validation_type_or_show_slider_number",
    "text_validation_min",
    "text_validation_max",
    "identifier",
    "branching_logic",
    "required_field",
    "custom_alignment",
    "question_number",
    "matrix_group_name",
    "matrix_ranking",
    "field_annotation",
)

SUPPORTED = (
    "version",
    "project",
    "metadata",
    "instrument",
    "event",
    "arm",
    "formEventMapping",
    "exportFieldNames",
    "record",
)


class RedcapError(Exception):
    """A request REDCap would refuse: answered as ``{"error": msg}`` (or CSV/XML) with ``status``."""

    def __init__(self, msg: str, status: int = 400):
        super().__init__(msg)
        self.msg = msg
        self.status = status


@dataclass
class Answer:
    body: bytes
    media_type: str
    status: int = 200


def array(form: dict[str, str], key: str) -> list[str] | None:
    """A REDCap array parameter: ``key[0]=a&key[1]=b`` (as clients send it) or ``key=a,b``."""
    indexed = sorted(
        ((int(k[len(key) + 1 : -1]), v) for k, v in form.items() if k.startswith(f"{key}[") and k.endswith("]")),
        key=lambda kv: kv[0],
    )
    values = [v for _, v in indexed]
    if not values and form.get(key):
        values = [v.strip() for v in form[key].split(",")]
    return [v for v in values if v] or None


def error_body(msg: str, fmt: str) -> tuple[bytes, str]:
    """REDCap's error shape in the format the client asked for errors in."""
    if fmt == "json":
        return json.dumps({"error": msg}).encode(), "application/json"
    if fmt == "csv":
        return f"ERROR: {msg}".encode(), "text/csv"
    safe = msg.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f'<?xml version="1.0" encoding="UTF-8" ?>\n<hash><error>{safe}</error></hash>'.encode(), "text/xml"


def _rows_out(rows: list[dict[str, Any]], fmt: str, columns: list[str] | None = None, escape: bool = True) -> Answer:
    if fmt == "json":
        return Answer(json.dumps(rows).encode(), "application/json")
    if fmt == "csv":
        cols = columns or (list(rows[0]) if rows else [])
        buf = io.StringIO()
        w = SafeCsvWriter(buf, escape, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r.get(c) is None else str(r.get(c)) for c in cols])
        return Answer(buf.getvalue().encode(), "text/csv")
    raise RedcapError(f"format {fmt!r} is not supported: use json or csv")


def _waves(session: Session, study: Study) -> list[Wave]:
    return list(session.exec(select(Wave).where(Wave.study_id == study.id).order_by(Wave.offset_days, Wave.id)).all())


def _plan(session: Session, study: Study, actor: Actor, secret: str, escape: bool) -> exports.Plan:
    return exports.plan_export(
        session, study, actor, exports.ExportFilters(items=True, escape_formulas=escape), secret=secret
    )


def metadata(plan: exports.Plan, fields: list[str] | None, forms: list[str] | None) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(rx.data_dictionary_csv(plan)))
    next(reader)
    rows = [dict(zip(METADATA_KEYS, r, strict=True)) for r in reader]
    # The dictionary's CSV escaping is for spreadsheets; the API hands the values over as they are.
    rows = [{k: v[1:] if v.startswith("'") and v[1:2] in "=+-@" else v for k, v in r.items()} for r in rows]
    if fields:
        rows = [r for r in rows if r["field_name"] in fields]
    if forms:
        rows = [r for r in rows if r["form_name"] in forms or r["field_name"] == "record_id"]
    return rows


def _events(waves: list[Wave]) -> list[dict[str, Any]]:
    return [
        {
            "event_name": w.code,
            "arm_num": 1,
            "unique_event_name": rx.event_name(w.code),
            "custom_event_label": "",
            "event_id": w.id,
            "days_offset": w.offset_days,
            "offset_min": w.window_before_days,
            "offset_max": w.window_after_days,
        }
        for w in waves
    ]


def _form_event_mapping(plan: exports.Plan, waves: list[Wave]) -> list[dict[str, Any]]:
    shown = set(plan.instruments)
    return [
        {"arm_num": 1, "unique_event_name": rx.event_name(w.code), "form": code}
        for w in waves
        for code in w.instruments
        if code in shown
    ]


def _label_maps(plan: exports.Plan) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for code in plan.instruments:
        inst = exports._get(code)
        for it in inst.items if inst is not None else ():
            if it.options:
                out[it.code] = {rx._text(o.code): o.label for o in it.options}
                out[it.code].update({o.value: o.label for o in it.options if o.value is not None})
    return out


def records(
    session: Session, plan: exports.Plan, form: dict[str, str], waves: list[Wave]
) -> tuple[list[dict[str, str]], list[str]]:
    """Flat records (one row per record × event) and their columns, filtered as REDCap filters them."""
    header = rx.header(plan)
    want_fields = array(form, "fields")
    want_forms = array(form, "forms")
    want_events = array(form, "events")
    want_records = array(form, "records")
    known_forms = {c for c, _ in rx._fields(plan)}
    fields_of = dict(rx._fields(plan))
    for f in want_forms or ():
        if f not in known_forms:
            raise RedcapError(f"The following values in the parameter 'forms' are not valid: '{f}'")
    events = {rx.event_name(w.code) for w in waves}
    for e in want_events or ():
        if e not in events:
            raise RedcapError(f"The following values in the parameter 'events' are not valid: '{e}'")
    chosen: list[str] = []
    if want_fields or want_forms:
        allowed = set(want_fields or ())
        for f in want_fields or ():
            if f not in header and f != "record_id":
                raise RedcapError(f"The following values in the parameter 'fields' are not valid: '{f}'")
        for f in want_forms or ():
            allowed.update(fields_of.get(f, ()))
            allowed.add(f"{f}_complete")
        chosen = [c for c in header[3:] if c in allowed]
    else:
        chosen = [c for c in header[3:] if not c.endswith("_timestamp")]
    survey = form.get("exportSurveyFields", "false").lower() == "true"
    if survey and (want_fields or want_forms):
        stamps = {f"{f[:-9]}_timestamp" for f in chosen if f.endswith("_complete")}
        chosen = [c for c in header[3:] if c in set(chosen) | stamps]
    elif survey:
        chosen = list(header[3:])
    dag = form.get("exportDataAccessGroups", "false").lower() == "true"
    columns = ["record_id", "redcap_event_name"] + (["redcap_data_access_group"] if dag else []) + chosen
    labels = _label_maps(plan) if form.get("rawOrLabel", "raw") == "label" else {}
    index = {c: i for i, c in enumerate(header)}
    out = []
    for batch in rx.iter_rows(session, plan):
        for row in batch:
            if want_records and row[0] not in want_records:
                continue
            if want_events and row[1] not in want_events:
                continue
            rec = {c: row[index[c]] for c in columns}
            for c, m in labels.items():
                if c in rec and rec[c] in m:
                    rec[c] = m[rec[c]]
            out.append(rec)
    return out, columns


def _import(session: Session, study: Study, actor: Actor, form: dict[str, str], waves: list[Wave]) -> Answer:
    fmt = form.get("format", "xml")
    if form.get("type", "flat") != "flat":
        raise RedcapError("type=eav is not supported: send flat records")
    if form.get("overwriteBehavior", "normal") not in ("normal", "overwrite"):
        raise RedcapError("overwriteBehavior must be normal or overwrite")
    if form.get("overwriteBehavior") == "overwrite":
        raise RedcapError(
            "overwriteBehavior=overwrite is not supported: a stored answer is changed by an amendment with a reason "
            "(POST /participants/{id}/responses with amend=true)"
        )
    data = form.get("data", "")
    if fmt == "json":
        try:
            rows = json.loads(data or "[]")
        except ValueError:
            raise RedcapError("The data being imported is not formatted correctly (JSON)") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise RedcapError("The data being imported is not formatted correctly: a JSON list of records is needed")
        keys: list[str] = ["record_id"]
        for r in rows:
            keys.extend(k for k in r if k not in keys)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(keys)
        for r in rows:
            w.writerow(["" if r.get(k) is None else str(r.get(k)) for k in keys])
        text = buf.getvalue()
    elif fmt == "csv":
        text = data
    else:
        raise RedcapError(f"format {fmt!r} is not supported for imports: use json or csv")
    event_map = {rx.event_name(w.code): w.code for w in waves}
    sites = session.exec(select(Site.code).where(Site.study_id == study.id)).all()
    own = [s for s in sites if actor.sees_site(_site_id(session, study, s))]
    report = import_redcap(
        session,
        study,
        actor,
        records_csv=text,
        event_map=event_map,
        dry_run=False,
        default_site=own[0] if len(own) == 1 else None,
    )
    if not report.ok:
        first = report.errors[0]
        where = f" (row {first.row}, field {first.field})" if first.row is not None else ""
        raise RedcapError(
            f"{first.msg}{where}" + (f"; {len(report.errors) - 1} more" if len(report.errors) > 1 else "")
        )
    ids = _record_ids(text)
    returned = form.get("returnContent", "count")
    ret_fmt = form.get("returnFormat", "json")
    if returned == "ids":
        if ret_fmt == "csv":
            return _rows_out([{"id": i} for i in ids], "csv", ["id"])
        return Answer(json.dumps(ids).encode(), "application/json")
    if returned == "nothing":
        return Answer(b"", "text/plain")
    if ret_fmt == "csv":
        return Answer(f"count\n{len(ids)}\n".encode(), "text/csv")
    return Answer(json.dumps({"count": len(ids)}).encode(), "application/json")


def _record_ids(text: str) -> list[str]:
    reader = csv.reader(io.StringIO(text))
    next(reader, None)
    return list(dict.fromkeys(r[0] for r in reader if r and r[0]))


def sees_study(session: Session, actor: Actor, study: Study) -> bool:
    """Whether a site-scoped actor covers any site of ``study`` (else the project does not exist for them)."""
    ids = set(session.exec(select(Site.id).where(Site.study_id == study.id)).all())
    return bool(ids & set(actor.site_ids or ()))


def _site_id(session: Session, study: Study, code: str) -> int | None:
    return session.exec(select(Site.id).where(Site.study_id == study.id, Site.code == code)).first()


def handle(session: Session, study: Study, actor: Actor, form: dict[str, str], *, secret: str) -> Answer:
    """Answer one REDCap API request (``form`` is the decoded form body without the token)."""
    content = form.get("content", "")
    fmt = form.get("format", "xml")
    if content not in SUPPORTED:
        raise RedcapError(
            f"content {content!r} is not supported; Peerlens answers: {', '.join(SUPPORTED)} (README, "
            '"Using existing clients")'
        )
    escape = form.get("escapeFormulas", "true").lower() != "false"
    if content == "version":
        from api.release import version

        return Answer(version().encode(), "text/plain")
    waves = _waves(session, study)
    # REDCap tells a record import from an export by the ``data`` parameter (clients send no action).
    if content == "record" and ("data" in form or form.get("action") == "import"):
        return _import(session, study, actor, form, waves)
    if content == "record" and form.get("action", "export") != "export":
        raise RedcapError(f"action {form.get('action')!r} is not supported for records")
    if content == "record" and form.get("type", "flat") != "flat":
        raise RedcapError("type=eav is not supported: ask for flat records")
    plan = _plan(session, study, actor, secret, escape)
    if content == "project":
        info = {
            "project_id": study.id,
            "project_title": study.title,
            "creation_time": study.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            "in_production": 1 if study.status not in ("planning",) else 0,
            "project_language": "English",
            "purpose": 2,
            "is_longitudinal": 1,
            "has_repeating_instruments_or_events": 0,
            "surveys_enabled": 1,
            "record_autonumbering_enabled": 0,
            "randomization_enabled": 1,
            "project_notes": "",
            "display_today_now_button": 1,
        }
        return _rows_out([info], fmt) if fmt == "csv" else Answer(json.dumps(info).encode(), "application/json")
    if content == "metadata":
        return _rows_out(metadata(plan, array(form, "fields"), array(form, "forms")), fmt, list(METADATA_KEYS), escape)
    if content == "instrument":
        rows = []
        for code in plan.instruments:
            inst = instruments.get(code)
            rows.append({"instrument_name": code, "instrument_label": inst.name})
        return _rows_out(rows, fmt, ["instrument_name", "instrument_label"], escape)
    if content == "event":
        return _rows_out(_events(waves), fmt)
    if content == "arm":
        return _rows_out([{"arm_num": 1, "name": "Arm 1"}], fmt, ["arm_num", "name"])
    if content == "formEventMapping":
        return _rows_out(_form_event_mapping(plan, waves), fmt, ["arm_num", "unique_event_name", "form"])
    if content == "exportFieldNames":
        names = [r["field_name"] for r in metadata(plan, [form["field"]] if form.get("field") else None, None)]
        if form.get("field") and not names:
            raise RedcapError(f"The field {form['field']!r} does not exist")
        rows = [{"original_field_name": n, "choice_value": "", "export_field_name": n} for n in names]
        return _rows_out(rows, fmt, ["original_field_name", "choice_value", "export_field_name"])
    rows, columns = records(session, plan, form, waves)
    return _rows_out(rows, fmt, columns, escape)


def api_error(exc: ApiError) -> RedcapError:
    """A Peerlens error (403 role, 404, 422) as REDCap states it."""
    first = exc.errors[0] if exc.errors else {}
    status = 403 if exc.status_code in (401, 403) else 400
    return RedcapError(str(first.get("msg", "the request was refused")), status)
