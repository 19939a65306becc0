"""A study as one CDISC ODM 1.3.2 file: the design and the data, for archiving and for other EDC systems.

The document is a ``Snapshot`` (the current value of every data point; the history of each stays
in the audit trail, ``GET /audit``). It holds the ``Study`` metadata (:mod:`api.interop.odm_design`),
``AdminData`` (sites and the users who entered data) and ``ClinicalData``: one ``SubjectData`` per
participant (``SubjectKey`` = study code), its enrolment record, then per wave each instrument's
answers, scores and response details. A response's ``FormData`` carries an ``AuditRecord`` (who,
where, when, ``SourceID`` = the mode of entry) whenever the reader sees times.

The same rules as every export apply, because the export reads through
:func:`api.exports.service.plan_export`: coordinators see their sites only; analysts get no
identifier item and no flagged free text, shifted or relative dates, and neutral arm letters while
blind; participants who withdrew consent for the use of their data, and records entered in error,
are left out. The file is streamed participant batch by participant batch, and audited with its
byte count and SHA-256 like every streamed export (its receipt names it ``shape: odm``).

Validated in the test suite against the ODM 1.3.2 schema (``ODM1-3-2.xsd``) as CDISC publishes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlmodel import Session

from api.exports import service
from api.exports.service import Plan
from api.interop import odm_design as d
from api.interop.odm_design import attrs, clean, number, oid

#: What a reader may ask for: the design only, or the design and the data.
CONTENTS = ("all", "metadata")


def _sites(session: Session, plan: Plan) -> list[d.SiteInfo]:
    from api.studies.models import Site

    rows = session.execute(select(Site.id, Site.code, Site.name).where(Site.id.in_(plan.site_ids)).order_by(Site.id))
    return [d.SiteInfo(int(i), c, n) for i, c, n in rows]


def _waves(session: Session, plan: Plan) -> list[d.WaveDef]:
    from api.studies.models import Wave

    rows = session.execute(
        select(Wave.code, Wave.offset_days, Wave.window_before_days, Wave.window_after_days, Wave.instruments)
        .where(Wave.id.in_(plan.wave_ids))
        .order_by(Wave.offset_days, Wave.code)
    )
    return [d.WaveDef(c, int(o), int(b or 0), int(a or 0), tuple(i or ())) for c, o, b, a, i in rows]


def _arms(session: Session, plan: Plan) -> list[tuple[str, str]]:
    """(code, decode) of each arm as the reader sees it: neutral letters and no names while blind."""
    from api.studies.models import Arm

    if plan.blind_arms is not None:
        labels = sorted(set(plan.blind_arms.values()))
        return [(label, f"arm {label}") for label in labels]
    rows = session.execute(select(Arm.code, Arm.name).where(Arm.study_id == plan.study_id).order_by(Arm.id))
    return [(c, n) for c, n in rows]


def _users(session: Session, plan: Plan) -> dict[int, str | None]:
    """The staff users who entered any exported response (their logins, shown to staff readers only)."""
    from api.auth.models import User
    from api.participants.models import Participant
    from api.responses.models import Response

    rows = session.execute(
        select(User.id, User.email)
        .where(
            User.id.in_(
                select(Response.entered_by)
                .join(Participant, Participant.id == Response.participant_id)
                .where(
                    Response.study_id == plan.study_id,
                    Response.entered_by.is_not(None),
                    Participant.site_id.in_(plan.site_ids),
                    Response.wave_id.in_(plan.wave_ids),
                    Response.instrument.in_(plan.instruments),
                )
            )
        )
        .order_by(User.id)
    )
    return {int(i): e for i, e in rows}


def _participants(session: Session, ids: list[int]) -> list[tuple]:
    from api.participants.models import Participant
    from api.studies.models import Arm, Site

    return list(
        session.execute(
            select(
                Participant.id,
                Participant.study_code,
                Site.code,
                Participant.arm_id,
                Arm.code,
                Participant.enrolled_on,
                Participant.status,
            )
            .join(Site, Site.id == Participant.site_id)
            .outerjoin(Arm, Arm.id == Participant.arm_id)
            .where(Participant.id.in_(ids))
            .order_by(Participant.id)
        ).all()
    )


def _responses(session: Session, plan: Plan, ids: list[int]) -> list[tuple]:
    from api.responses.models import Response
    from api.studies.models import Wave

    return list(
        session.execute(
            select(
                Response.id,
                Response.participant_id,
                Wave.code,
                Response.instrument,
                Response.instrument_version,
                Response.answers,
                Response.status,
                Response.mode,
                Response.entered_by,
                Response.completed_at,
                Response.out_of_window,
                Response.site_id,
            )
            .join(Wave, Wave.id == Response.wave_id)
            .where(
                Response.participant_id.in_(ids),
                Response.wave_id.in_(plan.wave_ids),
                Response.instrument.in_(plan.instruments),
            )
            .order_by(Response.participant_id, Wave.offset_days, Wave.code, Response.instrument)
        ).all()
    )


def _scores(session: Session, response_ids: list[int]) -> dict[int, list[tuple[str, float | None, str | None]]]:
    from api.responses.models import Score

    out: dict[int, list[tuple[str, float | None, str | None]]] = {}
    if not response_ids:
        return out
    rows = session.execute(
        select(Score.response_id, Score.scale, Score.value, Score.band).where(Score.response_id.in_(response_ids))
    )
    for rid, scale, value, band in rows:
        out.setdefault(int(rid), []).append((scale, value, band))
    return out


def _item(item_oid: str, value: object) -> str:
    return f"<ItemData{attrs(ItemOID=item_oid, Value=value)}/>"


def _moment(plan: Plan, when: datetime | None, pid: int) -> str | None:
    """A timestamp as this reader sees it, in ODM's datetime form in the study's time zone (None in the
    ``relative`` mode)."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seen = plan.dates.moment(when.astimezone(UTC), pid)
    if seen is None:
        return None
    # ODM wants the local clock at collection with its offset: the study's time zone.
    return seen.astimezone(ZoneInfo(plan.time_zone)).replace(microsecond=0).isoformat()


class _Codes:
    """Per instrument: the answer items this reader sees, their kinds and text codes."""

    def __init__(self, plan: Plan):
        self.items: dict[str, list] = {c: d.visible_items(plan, c) for c in plan.instruments}
        self.scales: dict[str, list[tuple[str, bool]]] = {}
        # Forms in the order the wave lists its instruments (as the design's FormRefs).
        self.form_order = {(w.code, c): n for w in plan.waves for n, c in enumerate(w.instruments)}
        self.text: dict[tuple[str, str], dict[str, str]] = {}
        for code, items in self.items.items():
            inst = service._get(code)
            self.scales[code] = [(sc.code, bool(sc.bands)) for sc in inst.scales] if inst is not None else []
            for it in items:
                if any(o.value is not None for o in it.options):
                    self.text[(code, it.code)] = {number(o.code): o.value for o in it.options if o.value is not None}


def _value(plan: Plan, codes: _Codes, code: str, it, raw: Any, enrolled_on: date, pid: int) -> str | None:
    if raw is None or raw == "" or raw == []:
        return None
    if it.kind in ("date", "datetime") and plan.dates.deidentified:
        num, txt = plan.dates.answer(it.kind, raw, enrolled_on, pid)
        return number(num) if num is not None else txt
    if isinstance(raw, list):
        return ",".join(number(x) if isinstance(x, int | float) else str(x) for x in raw)
    if isinstance(raw, bool):
        return "1" if raw else "0"
    if isinstance(raw, int | float):
        text = number(raw)
        return codes.text.get((code, it.code), {}).get(text, text)
    return str(raw)


def _subject(plan: Plan, codes: _Codes, person: tuple, responses: list[tuple], scores: dict) -> str:
    pid, study_code, site, arm_id, arm_code, enrolled_on, status = person
    pid = int(pid)
    arm = plan.blind_arms.get(int(arm_id)) if plan.blind_arms is not None and arm_id is not None else arm_code
    out = [f"<SubjectData{attrs(SubjectKey=study_code)}>", f'<SiteRef LocationOID="LOC.{clean(oid(site))}"/>']
    enrolment = [_item("I.ENROLMENT.SITE", site)]
    if arm is not None:
        enrolment.append(_item("I.ENROLMENT.ARM", arm))
    if plan.dates.mode != "relative":
        seen = plan.dates.date(enrolled_on, pid)
        if seen is not None:
            enrolment.append(_item("I.ENROLMENT.ENROLLED_ON", seen.isoformat()))
    enrolment.append(_item("I.ENROLMENT.STATUS", status))
    out.append(
        '<StudyEventData StudyEventOID="SE.ENROLMENT"><FormData FormOID="F.ENROLMENT">'
        f'<ItemGroupData ItemGroupOID="IG.ENROLMENT">{"".join(enrolment)}</ItemGroupData></FormData></StudyEventData>'
    )
    current_wave = None
    for (
        rid,
        _pid,
        wave,
        code,
        version,
        answers,
        rstatus,
        mode,
        entered_by,
        completed_at,
        out_of_window,
        _site,
    ) in responses:
        if wave != current_wave:
            if current_wave is not None:
                out.append("</StudyEventData>")
            out.append(f"<StudyEventData{attrs(StudyEventOID=f'SE.{oid(wave)}')}>")
            current_wave = wave
        out.append(f"<FormData{attrs(FormOID=f'F.{oid(code)}')}>")
        when = _moment(plan, completed_at, pid)
        if when is not None:
            user = f"USR.{entered_by}" if entered_by is not None else d.UNNAMED_USERS.get(mode, "USR.SYSTEM")
            out.append(
                f'<AuditRecord><UserRef UserOID="{user}"/><LocationRef LocationOID="LOC.{clean(oid(site))}"/>'
                f"<DateTimeStamp>{when}</DateTimeStamp><SourceID>{clean(mode)}</SourceID></AuditRecord>"
            )
        values = []
        for it in codes.items.get(code, ()):
            v = _value(plan, codes, code, it, (answers or {}).get(it.code), enrolled_on, pid)
            if v is not None:
                values.append(_item(d.item_oid(code, it.code), v))
        if values:
            out.append(f'<ItemGroupData ItemGroupOID="IG.{clean(oid(code))}">{"".join(values)}</ItemGroupData>')
        score_items = []
        stored = {scale: (value, band) for scale, value, band in scores.get(int(rid), ())}
        for scale, banded in codes.scales.get(code, ()):  # in the order of the design's ItemRefs
            value, band = stored.get(scale, (None, None))
            if value is not None:
                score_items.append(_item(d.score_oid(code, scale), number(value)))
            if band and banded:
                score_items.append(_item(d.band_oid(code, scale), band))
        if score_items:
            out.append(
                f'<ItemGroupData ItemGroupOID="IG.{clean(oid(code))}.SCORES">{"".join(score_items)}</ItemGroupData>'
            )
        details = [_item("I.RESPONSE.STATUS", rstatus), _item("I.RESPONSE.MODE", mode)]
        if when is not None:
            details.append(_item("I.RESPONSE.COMPLETED_AT", when))
        details.append(_item("I.RESPONSE.INSTRUMENT_VERSION", version))
        details.append(_item("I.RESPONSE.OUT_OF_WINDOW", "true" if out_of_window else "false"))
        out.append(f'<ItemGroupData ItemGroupOID="IG.{clean(oid(code))}.RESPONSE">{"".join(details)}</ItemGroupData>')
        out.append("</FormData>")
    if current_wave is not None:
        out.append("</StudyEventData>")
    out.append("</SubjectData>")
    return "".join(out)


def chunks(session: Session, plan: Plan, *, content: str = "all", file_oid: str | None = None) -> Iterator[bytes]:
    """The ODM document in pieces: the design and admin data, then one piece per participant batch."""
    from api.release import version

    if content not in CONTENTS:
        raise ValueError(f"content must be one of {CONTENTS}")
    service._begin_snapshot(session)
    try:
        sites, waves, arms = _sites(session, plan), _waves(session, plan), _arms(session, plan)
        users = _users(session, plan) if content == "all" else {}
        now = datetime.now(UTC).replace(microsecond=0)
        granularity = "Metadata" if content == "metadata" else ("All" if not _subset(plan) else None)
        head = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<ODM xmlns="{d.NS}"'
            + attrs(
                Description=_description(plan),
                FileType="Snapshot",
                Granularity=granularity,
                FileOID=file_oid or f"PEERLENS.ST{plan.study_id}.{now.strftime('%Y%m%dT%H%M%SZ')}",
                CreationDateTime=now.isoformat(),
                ODMVersion="1.3.2",
                Originator="Peerlens",
                SourceSystem="Peerlens",
                SourceSystemVersion=version(),
            )
            + ">"
        )
        design = head + "".join(d.study_xml(plan, waves, sites, arms))
        if content == "metadata":
            yield (design + "</ODM>\n").encode()
            return
        # The first participant batch is read before anything is yielded, so that (with
        # integrity.primed) a failing query is an error status, not a truncated 200.
        pieces = _subjects(session, plan)
        first = next(pieces, "")
        yield (
            design
            + "".join(d.admin_xml(plan, sites, users))
            + f"<ClinicalData{attrs(StudyOID=f'ST.{plan.study_id}', MetaDataVersionOID=d.MDV)}>"
            + first
        ).encode()
        for piece in pieces:
            yield piece.encode()
        yield b"</ClinicalData></ODM>\n"
    finally:
        session.rollback()


def _subjects(session: Session, plan: Plan) -> Iterator[str]:
    """The ``SubjectData`` elements, one string per participant batch."""
    codes = _Codes(plan)
    wave_order = {w.code: n for n, w in enumerate(plan.waves)}
    for ids in service._participant_batches(session, plan, service.DEFAULT_BATCH):
        people = _participants(session, ids)
        responses = _responses(session, plan, ids)
        scores = _scores(session, [int(r[0]) for r in responses])
        by_person: dict[int, list[tuple]] = {}
        for r in sorted(responses, key=lambda r: (int(r[1]), wave_order[r[2]], codes.form_order.get((r[2], r[3]), 99))):
            by_person.setdefault(int(r[1]), []).append(r)
        piece = "".join(_subject(plan, codes, p, by_person.get(int(p[0]), []), scores) for p in people)
        plan.rows += len(people)
        service._end_batch(session)
        yield piece


def _subset(plan: Plan) -> dict[str, list[str]]:
    """The wave, instrument and site filters the export was asked for (empty: the whole study)."""
    f = plan.filters
    return {k: v for k, v in (("waves", f.waves), ("instruments", f.instruments), ("sites", f.sites)) if v}


def _description(plan: Plan) -> str:
    bits = [f"Peerlens study {plan.study_id}"]
    subset = _subset(plan)
    if subset:
        bits.append("subset: " + "; ".join(f"{k} {','.join(v)}" for k, v in subset.items()))
    if plan.deidentified and plan.dates.deidentified:
        bits.append(f"de-identified (dates: {plan.dates.mode})")
    if plan.blind_arms is not None:
        bits.append("arms blinded")
    return "; ".join(bits)


def stream(engine, plan: Plan, *, content: str = "all") -> Iterator[bytes]:
    """The ODM file, streamed; audited (``shape: odm``) with its byte count and SHA-256 when it ends."""
    return service.audited_stream(
        engine, plan, lambda session: chunks(session, plan, content=content), shape="odm", fmt="xml"
    )


def odm_bytes(session: Session, plan: Plan, *, content: str = "all") -> bytes:
    """The whole ODM file at once (tests, the CLI)."""
    return b"".join(chunks(session, plan, content=content))
