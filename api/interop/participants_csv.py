"""Enrolment from a spreadsheet: a participants CSV, checked row by row, written in one transaction.

Columns (header names; order free): ``site``, ``enrolled_on``, ``consent_date``, ``consent_version``
(required); ``study_code`` (generated when empty), ``arm`` (empty = randomised, as a REST enrolment);
and the identifiers, which go to the identifier vault only: ``name``, ``email``, ``phone``,
``date_of_birth``, ``preferred_channel`` (``email``/``sms``/``none``), ``opt_out`` (true/false). Each
row is the body of ``POST /studies/{id}/participants`` and is checked by the same schema and the same
service (site access, plausible dates, randomisation, audit). A problem names its row (1 = the first
data row) and column; identifiers never appear in a message. One bad row and nothing is written; a dry
run checks everything (randomisation included) and writes nothing.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session, select

from api.audit.service import record
from api.auth.policy import ensure_can_write
from api.auth.service import Actor
from api.errors import ApiError
from api.interop.service import ImportReport, Issue
from api.participants.models import Participant
from api.participants.schemas import ParticipantCreate
from api.participants.service import enrol
from api.studies.models import Study

REQUIRED = ("site", "enrolled_on", "consent_date", "consent_version")
CONTACT = ("name", "email", "phone", "date_of_birth", "preferred_channel", "opt_out")
KNOWN = REQUIRED + ("study_code", "arm") + CONTACT
#: schema location -> CSV column
_COLUMN = {("consent", "date"): "consent_date", ("consent", "version"): "consent_version"}


def _column(loc: tuple) -> str:
    loc = tuple(str(x) for x in loc)
    if loc[:2] in _COLUMN:
        return _COLUMN[loc[:2]]
    if loc and loc[0] == "contact":
        return loc[1] if len(loc) > 1 else "preferred_channel"
    return loc[0] if loc else ""


def _body(row: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "site": row.get("site", ""),
        "enrolled_on": row.get("enrolled_on", ""),
        "consent": {"date": row.get("consent_date", ""), "version": row.get("consent_version", "")},
    }
    for key in ("study_code", "arm"):
        if row.get(key):
            body[key] = row[key]
    contact: dict[str, Any] = {k: row[k] for k in CONTACT if row.get(k)}
    if contact:
        if "opt_out" in contact:
            contact["opt_out"] = contact["opt_out"].strip().lower() in ("1", "true", "yes", "y")
        body["contact"] = contact
    return body


def import_participants(session: Session, study: Study, actor: Actor, text: str, *, dry_run: bool) -> ImportReport:
    """Check and enrol every row; the report's ``committed`` tells the caller to commit."""
    ensure_can_write(actor)
    report = ImportReport(dry_run=dry_run)
    report.counts = {"rows": 0, "participants_created": 0, "randomised": 0}
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [(h or "").strip() for h in (reader.fieldnames or [])]
    for col in REQUIRED:
        if col not in header:
            report.error(Issue("missing_column", f"the file needs a {col!r} column", row=0, field=col))
    for col in header:
        if col not in KNOWN:
            report.warn(Issue("unknown_column", f"column {col!r} is not read", row=0, field=col))
    if not report.ok:
        return report
    taken = set(session.exec(select(Participant.study_code).where(Participant.study_id == study.id)).all())
    seen: dict[str, int] = {}
    for n, raw in enumerate(reader, start=1):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k}
        if not any(row.values()):
            continue
        report.counts["rows"] += 1
        code = row.get("study_code", "")
        if code and (code in taken or code in seen):
            where = f"row {seen[code]}" if code in seen else "the study"
            report.error(
                Issue("duplicate_study_code", f"study code already used in {where}", row=n, field="study_code")
            )
            continue
        if code:
            seen[code] = n
        try:
            body = ParticipantCreate.model_validate(_body(row))
        except ValidationError as exc:
            for e in exc.errors():
                # The message names the rule, never the value (which may be an identifier).
                report.error(Issue(e["type"], e["msg"], row=n, field=_column(e["loc"])))
            continue
        try:
            with session.begin_nested():
                p = enrol(
                    session,
                    study=study,
                    site_code=body.site,
                    enrolled_on=body.enrolled_on,
                    consent_date=body.consent.date,
                    consent_version=body.consent.version,
                    actor=actor,
                    arm_code=body.arm,
                    study_code=body.study_code,
                    contact=body.contact,
                )
            report.counts["participants_created"] += 1
            report.counts["randomised"] += int(body.arm is None and bool(p.randomised))
        except ApiError as exc:
            for err in exc.errors:
                loc = tuple(err.get("loc") or ())
                report.error(Issue(err.get("type", "error"), err.get("msg", ""), row=n, field=_column(loc[1:] or loc)))
    if report.ok and not dry_run:
        record(
            session,
            actor,
            "import",
            "study",
            study.id,
            study_id=study.id,
            after={"format": "participants_csv", **report.counts},
        )
        session.flush()
        report.committed = True
    else:
        session.rollback()
    return report
