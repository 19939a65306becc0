"""Importing a REDCap project (data dictionary + flat records export) into a Peerlens study.

Every answer goes through :func:`api.responses.service.submit_response` with ``mode="import"``, so
validation, scoring and the audit trail are those of any other submission. The whole import is
one transaction: with any error (a value outside an item's options, a record without a site…)
nothing is written and the report says what and where; ``dry_run`` always rolls back. What cannot
be mapped (events without a wave, columns that are no field, repeating instances) is skipped and
listed as a warning.

Examples
--------
>>> report = import_redcap(session, study, actor, dictionary_csv=dd_text, records_csv=records_text,
...                        event_map={"baseline_arm_1": "baseline"}, dry_run=True)  # doctest: +SKIP
>>> report.ok, report.counts["responses"]  # doctest: +SKIP
(True, 120)
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

import instruments
from api.audit.service import record
from api.auth.policy import ensure_can_write
from api.auth.service import Actor
from api.errors import ApiError
from api.inputguard import decode_upload, refuse_nul
from api.interop.models import StudyInstrument
from api.participants.models import Participant
from api.participants.service import enrol
from api.responses.service import submit_response
from api.studies import dates
from api.studies.models import Site, Study, Wave
from instruments.model import Instrument

log = logging.getLogger("peerlens.interop")

STRUCTURAL = {
    "redcap_event_name",
    "redcap_repeat_instrument",
    "redcap_repeat_instance",
    "redcap_data_access_group",
    "redcap_survey_identifier",
}
MAX_ISSUES = 500


@dataclass
class Issue:
    """One reported problem: ``row`` is the 1-based data row of the records file (header = row 0)."""

    kind: str
    msg: str
    row: int | None = None
    field: str | None = None
    record: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class ImportReport:
    dry_run: bool
    committed: bool = False
    counts: dict[str, int] = field(
        default_factory=lambda: {"rows": 0, "participants_created": 0, "responses": 0, "safety_alerts": 0}
    )
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    unmapped_events: dict[str, int] = field(default_factory=dict)
    unmapped_fields: list[str] = field(default_factory=list)
    instruments: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, issue: Issue) -> None:
        if len(self.errors) < MAX_ISSUES:
            self.errors.append(issue)

    def warn(self, issue: Issue) -> None:
        if len(self.warnings) < MAX_ISSUES:
            self.warnings.append(issue)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "committed": self.committed,
            "counts": self.counts,
            "instruments": self.instruments,
            "unmapped_events": self.unmapped_events,
            "unmapped_fields": self.unmapped_fields,
            "errors": [e.as_dict() for e in self.errors],
            "warnings": [w.as_dict() for w in self.warnings],
        }


def load_custom_instruments(engine) -> int:
    """Register every instrument imported from a REDCap dictionary (at application start-up)."""
    try:
        with Session(engine) as session:
            rows = session.exec(select(StudyInstrument)).all()
    except Exception as exc:  # noqa: BLE001 - an unmigrated database has no such table yet
        log.debug("imported instruments not loaded (%s)", type(exc).__name__)
        return 0
    n = 0
    for row in rows:
        try:
            insts, _ = instruments.from_redcap_dictionary(row.dictionary_csv)
            for inst in insts:
                if inst.code == row.code:
                    instruments.register(inst, replace=True)
                    n += 1
        except instruments.InstrumentError as exc:
            log.warning("imported instrument %s could not be registered (%s)", row.code, type(exc).__name__)
    return n


def _read_text(data: str | bytes, loc: str = "records") -> str:
    text = decode_upload(data, ["body", loc]) if isinstance(data, bytes) else data.lstrip("\ufeff")
    refuse_nul(text, ["body", loc])
    return text


def _form_rows(dictionary_csv: str) -> dict[str, str]:
    """Each form's dictionary CSV (header + its rows), to persist alongside the instrument."""
    rows = list(csv.reader(io.StringIO(dictionary_csv)))
    if not rows:
        return {}
    header, body = rows[0], rows[1:]
    keys = [h.strip().lower() for h in header]
    form_col = next((i for i, k in enumerate(keys) if k.startswith("form name") or k.startswith("form_name")), 1)
    out: dict[str, list] = {}
    for n, r in enumerate(body):
        if n == 0 or len(r) <= form_col:
            continue  # the record id row
        out.setdefault(r[form_col].strip(), []).append(r)
    texts = {}
    for form, rs in out.items():
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerow(body[0])  # from_redcap_dictionary skips the first (record id) row
        w.writerows(rs)
        texts[form] = buf.getvalue()
    return texts


def _resolve_instruments(
    session: Session, study: Study, dictionary_csv: str | None, report: ImportReport
) -> tuple[dict[str, Instrument], dict[str, str], list[str]]:
    """(form → instrument, form → dictionary text to persist, codes registered by this call)."""
    forms: dict[str, Instrument] = {}
    persist: dict[str, str] = {}
    registered: list[str] = []
    if not dictionary_csv:
        return forms, persist, registered
    try:
        insts, problems = instruments.from_redcap_dictionary(dictionary_csv)
    except instruments.InstrumentError as exc:
        report.error(Issue("invalid_dictionary", str(exc), field="dictionary"))
        return forms, persist, registered
    for p in problems:
        if p.rule in ("record_id", "checkbox_expanded"):
            continue
        report.warn(Issue(p.rule, p.msg, field=p.loc))
    texts = _form_rows(dictionary_csv)
    mine = {r.code for r in session.exec(select(StudyInstrument).where(StudyInstrument.study_id == study.id)).all()}
    for inst in insts:
        existing = None
        try:
            existing = instruments.get(inst.code)
        except instruments.InstrumentError:
            pass
        custom = session.exec(select(StudyInstrument).where(StudyInstrument.code == inst.code)).first()
        imported = existing is not None and existing.notes.get("source") == "redcap_dictionary"
        if existing is not None and not imported and inst.code not in mine:
            # A built-in instrument (phq9, gad7…): its definition, scoring and citation stay ours.
            known = {i.code for i in existing.items}
            for it in inst.items:
                if it.code not in known:
                    report.warn(
                        Issue(
                            "field_not_in_instrument",
                            f"field is not an item of the built-in instrument {inst.code}",
                            field=it.code,
                        )
                    )
            forms[inst.code] = existing
            report.instruments[inst.code] = "built-in"
            continue
        if custom is not None and custom.study_id != study.id:
            if existing == inst:
                forms[inst.code] = existing  # the same form imported by another study: share it
                report.instruments[inst.code] = "shared"
                continue
            report.error(
                Issue("form_in_use", "an instrument with this code was imported by another study", field=inst.code)
            )
            continue
        forms[inst.code] = inst
        instruments.register(inst, replace=True)
        registered.append(inst.code)
        persist[inst.code] = texts.get(inst.code, "")
        report.instruments[inst.code] = "imported"
    return forms, persist, registered


def _value(item, raw: str) -> tuple[Any, bool]:
    """(value, ok) of one REDCap cell for an item."""
    if item.options:
        for opt in item.options:
            if opt.value is not None and raw == opt.value:
                return opt.code, True  # a text-coded REDCap choice
        try:
            f = float(raw)
        except ValueError:
            return None, False
        v: Any = int(f) if f.is_integer() else f
        return v, v in item.option_codes()
    if item.kind in ("integer", "number"):
        try:
            f = float(raw)
        except ValueError:
            return None, False
        return (int(f) if item.kind == "integer" and f.is_integer() else f), not (
            item.kind == "integer" and not f.is_integer()
        )
    return raw, True


def _timestamp(raw: str) -> datetime | None:
    raw = (raw or "").strip()
    if not raw or raw == "[not completed]":
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(raw, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    try:
        d = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        return d if d.tzinfo else d.replace(tzinfo=UTC)
    except ValueError:
        return None


def import_redcap(
    session: Session,
    study: Study,
    actor: Actor,
    *,
    records_csv: str | bytes,
    event_map: dict[str, str],
    dictionary_csv: str | bytes | None = None,
    dry_run: bool = False,
    default_site: str | None = None,
) -> ImportReport:
    """Import a REDCap flat records export (and optionally its data dictionary) into ``study``.

    Parameters
    ----------
    records_csv : str or bytes
        REDCap flat CSV: the record id first, ``redcap_event_name`` for longitudinal projects,
        ``redcap_repeat_instrument/instance``, ``redcap_data_access_group`` (a site code),
        fields, ``<form>_timestamp`` and ``<form>_complete``.
    event_map : dict
        ``unique_event_name → wave code``; ``"*"`` maps every event (or a project without events).
    dictionary_csv : str or bytes, optional
        The 18-column data dictionary; forms that are not built-in instruments are imported as
        study instruments. Without it every form must be a known instrument.
    dry_run : bool
        Validate, score and report, then roll back.
    default_site : str, optional
        Site code for new records without ``redcap_data_access_group``.

    Returns
    -------
    ImportReport
        Committed only when ``ok`` and not ``dry_run``; the caller commits.
    """
    ensure_can_write(actor)
    actor = dataclasses.replace(actor, source="import")
    report = ImportReport(dry_run=dry_run)
    records_text = _read_text(records_csv)
    dict_text = _read_text(dictionary_csv, "dictionary") if dictionary_csv else None
    forms, persist, registered = _resolve_instruments(session, study, dict_text, report)
    try:
        _import_rows(session, study, actor, records_text, event_map, forms, default_site, report)
        if report.ok:
            for code, text in persist.items():
                if not session.exec(select(StudyInstrument).where(StudyInstrument.code == code)).first():
                    session.add(StudyInstrument(study_id=study.id, code=code, dictionary_csv=text))
                    record(
                        session,
                        actor,
                        "create",
                        "study_instrument",
                        code,
                        study_id=study.id,
                        after={"code": code, "source": "redcap_dictionary"},
                    )
            record(
                session,
                actor,
                "import",
                "study",
                study.id,
                study_id=study.id,
                after={
                    "format": "redcap",
                    "event_map": event_map,
                    **report.counts,
                    "warnings": len(report.warnings),
                    "unmapped_events": report.unmapped_events,
                    "unmapped_fields": report.unmapped_fields,
                },
            )
            session.flush()
    except ApiError as exc:
        report.error(Issue(exc.errors[0].get("type", "error"), exc.errors[0].get("msg", "")))
    if dry_run or not report.ok:
        session.rollback()
        for code in registered:
            if code not in {r for r in _persisted_codes(session)}:
                instruments.unregister(code)
    else:
        report.committed = True
    return report


def _persisted_codes(session: Session) -> set[str]:
    return set(session.exec(select(StudyInstrument.code)).all())


def _import_rows(
    session: Session,
    study: Study,
    actor: Actor,
    text: str,
    event_map: dict[str, str],
    forms: dict[str, Instrument],
    default_site: str | None,
    report: ImportReport,
) -> None:
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        report.error(Issue("empty_file", "the records file is empty", field="records"))
        return
    if not header or not header[0]:
        report.error(Issue("no_record_id", "the first column must be the record id", field="records"))
        return
    waves = {w.code: w for w in session.exec(select(Wave).where(Wave.study_id == study.id)).all()}
    for ev, wave in event_map.items():
        if wave not in waves:
            report.error(
                Issue(
                    "unknown_wave", f"event {ev!r} is mapped to wave {wave!r}, which the study lacks", field="event_map"
                )
            )
    if not report.ok:
        return
    # Forms: from the dictionary, else every known instrument whose items appear in the header.
    if not forms:
        for code in instruments.codes():
            inst = instruments.get(code)
            if any(it.code in header for it in inst.items):
                forms[code] = inst
    field_form: dict[str, str] = {}
    for code, inst in forms.items():
        for it in inst.items:
            field_form.setdefault(it.code, code)
    rid = header[0]
    for col in header[1:]:
        if col in STRUCTURAL or col in field_form:
            continue
        if col.endswith("_complete") and col[:-9] in forms or col.endswith("_timestamp") and col[:-10] in forms:
            continue
        report.unmapped_fields.append(col)
    sites = {s.code: s for s in session.exec(select(Site).where(Site.study_id == study.id)).all()}
    people = {p.study_code: p for p in session.exec(select(Participant).where(Participant.study_id == study.id)).all()}
    tz = ZoneInfo(study.time_zone)
    # (record, wave, form) -> (first row, answers, completed_at)
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    record_rows: dict[str, dict[str, Any]] = {}
    for n, cells in enumerate(reader, start=1):
        if not any(c.strip() for c in cells):
            continue
        report.counts["rows"] += 1
        row = {header[i]: (cells[i].strip() if i < len(cells) else "") for i in range(len(header))}
        rec = row[rid]
        if not rec:
            report.error(Issue("missing_record_id", "row has no record id", row=n, field=rid))
            continue
        event = row.get("redcap_event_name", "")
        wave = event_map.get(event) or event_map.get("*")
        if wave is None:
            report.unmapped_events[event] = report.unmapped_events.get(event, 0) + 1
            continue
        if row.get("redcap_repeat_instrument") or row.get("redcap_repeat_instance"):
            report.warn(
                Issue(
                    "repeating_instance_skipped",
                    "repeating instruments/events have no Peerlens equivalent; row skipped",
                    row=n,
                    field="redcap_repeat_instance",
                    record=rec,
                )
            )
            continue
        info = record_rows.setdefault(rec, {"row": n, "dag": row.get("redcap_data_access_group", ""), "stamps": []})
        for code, inst in forms.items():
            answers: dict[str, Any] = {}
            bad = False
            for it in inst.items:
                raw = row.get(it.code, "")
                if raw == "":
                    continue
                v, ok = _value(it, raw)
                if not ok:
                    report.error(
                        Issue(
                            "invalid_value",
                            f"value not allowed for item {it.code} of {code}",
                            row=n,
                            field=it.code,
                            record=rec,
                        )
                    )
                    bad = True
                    continue
                answers[it.code] = v
            complete = row.get(f"{code}_complete", "")
            if not answers and complete in ("", "0"):
                continue  # the form was not filled at this event
            if bad:
                continue
            stamp = _timestamp(row.get(f"{code}_timestamp", ""))
            if stamp is not None and not dates.plausible(stamp):
                # Refused here, before it dates an enrolment (date arithmetic on year 1 overflows).
                report.error(
                    Issue(
                        "date_implausible",
                        "timestamp is before 1900 or more than a year in the future",
                        row=n,
                        field=f"{code}_timestamp",
                        record=rec,
                    )
                )
                continue
            if stamp is not None:
                info["stamps"].append((waves[wave].offset_days, stamp, f"{code}_timestamp"))
            key = (rec, wave, code)
            if key in groups:
                report.warn(
                    Issue(
                        "duplicate_form",
                        "form already imported for this record and wave; row skipped",
                        row=n,
                        field=code,
                        record=rec,
                    )
                )
                continue
            groups[key] = {"row": n, "answers": answers, "completed_at": stamp}
    if not report.ok:
        return
    for rec, info in record_rows.items():
        if rec in people:
            continue
        site_code = info["dag"] if info["dag"] in sites else default_site
        if site_code not in sites:
            report.error(
                Issue(
                    "unknown_site",
                    "new record needs redcap_data_access_group or default_site naming a site of the study",
                    row=info["row"],
                    field="redcap_data_access_group",
                    record=rec,
                )
            )
            continue
        dated_by = rid
        if info["stamps"]:
            offset, stamp, dated_by = min(info["stamps"], key=lambda s: s[1])
            enrolled_on = dates.add_days(stamp.astimezone(tz).date(), -offset)
        else:
            enrolled_on = datetime.now(UTC).astimezone(tz).date()
        try:
            p = enrol(
                session,
                study=study,
                site_code=site_code,
                enrolled_on=enrolled_on,
                consent_date=enrolled_on,
                consent_version="redcap-import",
                actor=actor,
                study_code=rec[:40],
            )
        except ApiError as exc:
            report.error(
                Issue(
                    exc.errors[0].get("type", "error"),
                    exc.errors[0].get("msg", ""),
                    row=info["row"],
                    # a date out of range comes from the timestamp that dated the enrolment
                    field=dated_by if exc.errors[0].get("type") in dates.ERROR_TYPES else rid,
                    record=rec,
                )
            )
            continue
        people[rec] = p
        report.counts["participants_created"] += 1
    if not report.ok:
        return
    assumed = 0
    for (rec, wave_code, code), g in groups.items():
        wave = waves[wave_code]
        p = people[rec]
        if code not in wave.instruments:
            wave.instruments = list(wave.instruments) + [code]
            session.add(wave)
            session.flush()
            record(
                session,
                actor,
                "update",
                "wave",
                wave.id,
                study_id=study.id,
                before={"instruments": [c for c in wave.instruments if c != code]},
                after={"instruments": list(wave.instruments)},
                reason="REDCap import",
            )
            report.warn(Issue("form_added_to_wave", f"form {code} added to wave {wave_code}", field=code))
        completed_at = g["completed_at"]
        if completed_at is None:
            assumed += 1
            due = dates.add_days(p.enrolled_on, wave.offset_days)
            completed_at = dates.on_day(due, time(12), tz)
        try:
            resp = submit_response(
                session,
                participant=p,
                wave_code=wave_code,
                instrument_code=code,
                answers=g["answers"],
                completed_at=completed_at,
                mode="import",
                actor=actor,
            )
            report.counts["responses"] += 1
            # Alerts raised by imported answers: the importer is told, and the safety contacts too.
            report.counts["safety_alerts"] += len(getattr(resp, "alerts_raised", None) or ())
        except ApiError as exc:
            for e in exc.errors:
                loc = e.get("loc") or []
                report.error(
                    Issue(
                        e.get("type", "error"),
                        e.get("msg", ""),
                        row=g["row"],
                        # the completion time of an imported form is its <form>_timestamp column
                        field=f"{code}_timestamp" if loc[-1:] == ["completed_at"] else str(loc[-1]) if loc else code,
                        record=rec,
                    )
                )
    if assumed:
        report.warn(
            Issue(
                "completed_at_assumed",
                f"{assumed} form(s) without <form>_timestamp were dated at noon of the wave's due date",
            )
        )
