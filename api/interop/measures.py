"""Clinical measures from a CSV of results (a lab's extract, a records search), after the fact.

One row per measurement: ``participant`` (study code), ``wave``, ``instrument`` (``hba1c``,
``anthropometry``, ``blood_pressure``, ``six_mwt`` or any instrument of the study), ``measured_at``
(the date or date-time of the measurement, not of the import) and one column per item given
(``hba1c_pct`` or ``hba1c_mmol``, ``weight_kg``, …; an empty cell is not given). Every row goes
through :func:`api.responses.service.submit_response` — plausibility, one unit per measure,
scoring, window flags, safety rules and audit — in one transaction: any failing row and nothing
is written; a dry run reports and writes nothing.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

import instruments
from api.audit.service import record
from api.auth.policy import ensure_can_write, sees_site
from api.auth.service import Actor
from api.errors import ApiError
from api.interop.service import ImportReport, Issue
from api.participants.models import Participant
from api.responses.service import submit_response
from api.studies import dates
from api.studies.models import Study

FIXED = ("participant", "wave", "instrument", "measured_at")


def _when(raw: str, tz: ZoneInfo) -> datetime | None:
    """A date (noon, study time) or an ISO date-time (UTC unless it says otherwise)."""
    raw = raw.strip()
    try:
        if len(raw) == 10:
            return dates.on_day(datetime.strptime(raw, "%Y-%m-%d").date(), time(12), tz)
        d = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _number(raw: str) -> float | int | str:
    try:
        f = float(raw)
    except ValueError:
        return raw  # left to the instrument's validation, which names the item
    return int(f) if f.is_integer() and "." not in raw else f


def import_measures(session: Session, study: Study, actor: Actor, text: str, *, dry_run: bool) -> ImportReport:
    """Validate and store every row of ``text``; roll back on any error or on ``dry_run``.

    Returns the report; ``committed`` is set when the caller should commit.
    """
    ensure_can_write(actor)
    actor = dataclasses.replace(actor, source="import")
    report = ImportReport(dry_run=dry_run)
    report.counts = {"rows": 0, "responses": 0, "safety_alerts": 0}
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in FIXED if c not in header]
    if missing:
        for c in missing:
            report.error(Issue("missing_column", f"the file needs a {c!r} column", row=0, field=c))
        return report
    tz = ZoneInfo(study.time_zone)
    people = {p.study_code: p for p in session.exec(select(Participant).where(Participant.study_id == study.id)).all()}
    for n, raw_row in enumerate(reader, start=1):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw_row.items()}
        report.counts["rows"] += 1
        p = people.get(row["participant"])
        if p is None or not sees_site(actor, p.site_id):
            report.error(Issue("unknown_participant", "no such participant in this study", row=n, field="participant"))
            continue
        when = _when(row["measured_at"], tz)
        if when is None:
            report.error(
                Issue("invalid_date", "measured_at must be YYYY-MM-DD or an ISO date-time", row=n, field="measured_at")
            )
            continue
        try:
            inst = instruments.get(row["instrument"])
        except instruments.InstrumentError:
            report.error(Issue("unknown_instrument", "no such instrument", row=n, field="instrument"))
            continue
        known = {it.code for it in inst.items}
        extra = [c for c in row if c not in FIXED and row[c] and c not in known]
        for c in extra:
            report.error(Issue("unknown_item", f"{c} is not an item of {inst.code}", row=n, field=c))
        answers = {c: _number(v) for c, v in row.items() if c in known and v != ""}
        if extra:
            continue
        try:
            # A savepoint per row: a refused row leaves nothing behind while the others go on.
            with session.begin_nested():
                resp = submit_response(
                    session,
                    participant=p,
                    wave_code=row["wave"],
                    instrument_code=inst.code,
                    answers=answers,
                    completed_at=when,
                    mode="import",
                    actor=actor,
                )
            report.counts["responses"] += 1
            report.counts["safety_alerts"] += len(getattr(resp, "alerts_raised", None) or ())
        except ApiError as exc:
            for e in exc.errors:
                loc = e.get("loc") or []
                field = str(loc[-1]) if loc else "instrument"
                report.error(Issue(e.get("type", "error"), e.get("msg", ""), row=n, field=field))
    if report.ok and not dry_run:
        record(
            session,
            actor,
            "import",
            "study",
            study.id,
            study_id=study.id,
            after={"format": "measures_csv", **report.counts},
        )
        session.flush()
        report.committed = True
    else:
        session.rollback()
    return report
