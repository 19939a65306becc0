"""The study design as CDISC ODM 1.3.2 metadata: ``Study`` (with ``MetaDataVersion``) and ``AdminData``.

Mapping (the same one :mod:`api.interop.odm` writes the data with):

=====================  ====================================================================
Peerlens               ODM
=====================  ====================================================================
study                  ``Study OID="ST.<id>"``, one ``MetaDataVersion OID="MDV.1"``
enrolment record       ``StudyEventDef SE.ENROLMENT`` (Common) → ``FormDef F.ENROLMENT``:
                       site, arm, enrolment date, status
wave                   ``StudyEventDef SE.<wave>`` (Scheduled), ordered by offset in ``Protocol``
instrument             ``FormDef F.<code>`` with three item groups: answers ``IG.<code>``,
                       scores ``IG.<code>.SCORES`` (each score an ``ItemRef`` with a
                       ``MethodDef`` of Type ``Computation``), and ``IG.<code>.RESPONSE``
                       (status, mode, completion time, instrument version, out of window)
item                   ``ItemDef I.<code>.<item>``; options a ``CodeList`` (text-coded
                       choices keep their text codes); limits a hard ``RangeCheck``; the
                       unit a ``MeasurementUnit``; a LOINC code an ``Alias`` (Context LOINC)
site                   ``Location LOC.<site>`` (LocationType Site; named for staff, by its
                       code for analysts)
staff who entered data ``User USR.<id>`` (no name; the login only for staff readers);
                       ``USR.PARTICIPANT`` for a participant's own web-form entries,
                       ``USR.SYSTEM`` for imports
=====================  ====================================================================

Licensed wording is never written (no ``Question`` where the instrument ships none). Items the
reader may not see (identifiers, flagged free text) are left out of the design as well as the data.
In the ``relative`` date mode a date item is exported as days since enrolment, so its
``DataType`` is ``integer``.

Examples
--------
>>> oid("m12"), oid("Month 6")
('M12', 'MONTH_6')
>>> print(attrs(OID="I.X", Name='a "b" <c>'))
 OID="I.X" Name="a &quot;b&quot; &lt;c&gt;"
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from xml.sax.saxutils import escape

from api.exports.service import Plan, _get

NS = "http://www.cdisc.org/ns/odm/v1.3"
MDV = "MDV.1"

# XML 1.0 forbids most control characters even escaped; a stray one must not make the file unreadable.
_INVALID_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

#: Item definitions of the enrolment form: (OID suffix, name, DataType, description).
ENROLMENT_ITEMS = (
    ("SITE", "site", "text", "Site code"),
    ("ARM", "arm", "text", "Randomised arm (neutral letters while the reader is blind to the arms)"),
    ("ENROLLED_ON", "enrolled_on", "date", "Enrolment date"),
    ("STATUS", "status", "text", "Participant status (active, completed, withdrawn, lost_to_follow_up)"),
)

#: Item definitions shared by every instrument's response group.
RESPONSE_ITEMS = (
    ("STATUS", "status", "text", "complete, or partial (below the instrument's minimum; resumable)"),
    ("MODE", "mode", "text", "How the response was entered: web (participant form), rest, staff, import"),
    ("COMPLETED_AT", "completed_at", "datetime", "When the response was completed (the study's local time)"),
    ("INSTRUMENT_VERSION", "instrument_version", "text", "Version of the instrument definition scored"),
    ("OUT_OF_WINDOW", "out_of_window", "boolean", "Completed outside the wave's window"),
)


#: Who entered a response no staff user entered: the participant on the web form, else the system
#: (an import, or a REST client acting for the study).
UNNAMED_USERS = {"web": "USR.PARTICIPANT", "import": "USR.SYSTEM", "rest": "USR.SYSTEM", "staff": "USR.SYSTEM"}


def clean(text: object) -> str:
    """``text`` as XML character data: escaped, without characters XML 1.0 cannot carry."""
    return escape(_INVALID_XML.sub("", str(text)), {'"': "&quot;"})


def attrs(**values: object) -> str:
    """XML attributes (with a leading space) of the values that are not None, in the given order."""
    return "".join(f' {k}="{clean(v)}"' for k, v in values.items() if v is not None)


def oid(code: str) -> str:
    """An OID segment from a Peerlens code: upper case, runs of other characters as ``_``."""
    return re.sub(r"[^A-Z0-9.]+", "_", code.upper()).strip("_") or "X"


def text_el(tag: str, text: str | None) -> str:
    """``<tag><TranslatedText xml:lang="en">text</TranslatedText></tag>`` (empty when no text)."""
    if not text:
        return ""
    return f'<{tag}><TranslatedText xml:lang="en">{clean(text)}</TranslatedText></{tag}>'


def number(v: float | int | None) -> str:
    """A number as ODM writes it: integers without a decimal point."""
    if v is None:
        return ""
    f = float(v)
    return str(int(f)) if f.is_integer() else repr(f)


def item_oid(instrument: str, item: str) -> str:
    return f"I.{oid(instrument)}.{oid(item)}"


def score_oid(instrument: str, scale: str) -> str:
    return f"I.{oid(instrument)}.SC.{oid(scale)}"


def band_oid(instrument: str, scale: str) -> str:
    return f"{score_oid(instrument, scale)}.BAND"


def unit_oid(unit: str) -> str:
    """A unit's OID: other characters as ``_<hex>``, so that ``kg/m2`` and ``kg m2`` stay apart.

    >>> unit_oid("mmol/mol"), unit_oid("%")
    ('MU.mmol_2Fmol', 'MU._25')
    """
    return "MU." + re.sub(r"[^A-Za-z0-9]", lambda m: f"_{ord(m.group()):02X}", unit)


@dataclass(frozen=True)
class SiteInfo:
    id: int
    code: str
    name: str


@dataclass(frozen=True)
class WaveDef:
    code: str
    offset_days: int
    window_before_days: int
    window_after_days: int
    instruments: tuple[str, ...]


def visible_items(plan: Plan, code: str) -> list:
    """The items of instrument ``code`` this plan's reader sees, in the instrument's order."""
    inst = _get(code)
    if inst is None:
        return []
    return [it for it in inst.items if (code, it.code) not in plan.dropped_items]


def item_data_type(plan: Plan, item) -> str:
    """The ODM DataType of an item's exported values (see the module docstring for dates)."""
    if item.kind in ("date", "datetime"):
        return "integer" if plan.dates.mode == "relative" else item.kind
    if item.options:
        if any(o.value is not None for o in item.options):
            return "text"
        return "integer" if all(float(o.code).is_integer() for o in item.options) else "float"
    return {"integer": "integer", "number": "float"}.get(item.kind, "text")


def _codelist(code: str, item, data_type: str) -> str:
    rows = []
    for n, o in enumerate(item.options, start=1):
        coded = o.value if o.value is not None else number(o.code)
        rows.append(
            f"<CodeListItem{attrs(CodedValue=coded, OrderNumber=n)}>{text_el('Decode', o.label)}</CodeListItem>"
        )
    head = attrs(OID=f"CL.{oid(code)}.{oid(item.code)}", Name=f"{code}.{item.code} options", DataType=data_type)
    return f"<CodeList{head}>{''.join(rows)}</CodeList>"


def _item_def(plan: Plan, code: str, item, wording: bool) -> tuple[str, str]:
    """(ItemDef, CodeList or '') of one instrument item."""
    data_type = item_data_type(plan, item)
    desc = item.label or (None if item.text else "wording not shipped (licensed instrument)")
    if item.kind in ("date", "datetime") and data_type == "integer":
        desc = f"{desc + '; ' if desc else ''}days since enrolment (dates are not exported to this reader)"
    if item.kind == "multi":
        desc = f"{desc + '; ' if desc else ''}codes of every option chosen, comma-separated"
    parts = [text_el("Description", desc), text_el("Question", item.text if wording else None)]
    if item.unit:
        parts.append(f'<MeasurementUnitRef MeasurementUnitOID="{clean(unit_oid(item.unit))}"/>')
    if data_type in ("integer", "float") and not item.options:
        for comparator, limit in (("GE", item.min), ("LE", item.max)):
            if limit is not None:
                parts.append(
                    f'<RangeCheck Comparator="{comparator}" SoftHard="Hard"><CheckValue>{number(limit)}</CheckValue>'
                    f"{text_el('ErrorMessage', f'{item.code} must be {comparator} {number(limit)}')}</RangeCheck>"
                )
    codelist = ""
    if item.options and item.kind != "multi":
        codelist = _codelist(code, item, data_type)
        parts.append(f'<CodeListRef CodeListOID="CL.{clean(oid(code))}.{clean(oid(item.code))}"/>')
    if item.loinc:
        parts.append(f"<Alias{attrs(Context='LOINC', Name=item.loinc)}/>")
    head = f"<ItemDef{attrs(OID=item_oid(code, item.code), Name=item.code, DataType=data_type)}>"
    return head + "".join(parts) + "</ItemDef>", codelist


def _method(code: str, scale) -> str:
    items = ", ".join(scale.items) if scale.items else "none"
    lo, hi = scale.range
    text = (
        f"{scale.method} of items {items} (at least {scale.min_items} answered); range {number(lo)} to {number(hi)}"
        + (f"; looked up from {scale.source}" if scale.source else "")
        + ("; may be supplied as computed by the licensee's software" if scale.external else "")
        + (f". {scale.notes}" if scale.notes else "")
    )
    return (
        f"<MethodDef{attrs(OID=f'MT.{oid(code)}.{oid(scale.code)}', Name=f'{code} {scale.code}', Type='Computation')}>"
        f"{text_el('Description', text)}</MethodDef>"
    )


def _score_defs(code: str, scale) -> list[str]:
    parts = [text_el("Description", scale.label)]
    if scale.unit:
        parts.append(f'<MeasurementUnitRef MeasurementUnitOID="{clean(unit_oid(scale.unit))}"/>')
    if scale.loinc:
        parts.append(f"<Alias{attrs(Context='LOINC', Name=scale.loinc)}/>")
    head = attrs(OID=score_oid(code, scale.code), Name=scale.code, DataType="float")
    out = [f"<ItemDef{head}>{''.join(parts)}</ItemDef>"]
    if scale.bands:
        bands = "; ".join(f"{b.label}: {number(b.min)} to {number(b.max)}" for b in scale.bands)
        out.append(
            f"<ItemDef{attrs(OID=band_oid(code, scale.code), Name=f'{scale.code}_band', DataType='text')}>"
            f"{text_el('Description', f'Band of {scale.code} ({bands})')}</ItemDef>"
        )
    return out


def units(plan: Plan) -> list[str]:
    """Every unit named by an exported item or score, in first-use order."""
    seen: dict[str, None] = {}
    for code in plan.instruments:
        inst = _get(code)
        if inst is None:
            continue
        for it in visible_items(plan, code):
            if it.unit:
                seen.setdefault(it.unit)
        for sc in inst.scales:
            if sc.unit:
                seen.setdefault(sc.unit)
    return list(seen)


def _refs(oids: Iterable[str], method: dict[str, str] | None = None, mandatory: str = "No") -> str:
    method = method or {}
    return "".join(
        f"<ItemRef{attrs(ItemOID=o, OrderNumber=n, Mandatory=mandatory, MethodOID=method.get(o))}/>"
        for n, o in enumerate(oids, start=1)
    )


def study_xml(plan: Plan, waves: list[WaveDef], sites: list[SiteInfo], arms: list[tuple[str, str]]) -> Iterator[str]:
    """The ``Study`` element of the plan: global variables, units and the metadata version."""
    study = plan.study
    yield f"<Study{attrs(OID=f'ST.{study.id}')}><GlobalVariables>"
    yield f"<StudyName>{clean(study.title)}</StudyName>"
    yield f"<StudyDescription>{clean(f'{study.title} ({study.design}); exported by Peerlens')}</StudyDescription>"
    yield f"<ProtocolName>{clean(f'ST.{study.id}')}</ProtocolName></GlobalVariables>"
    used_units = units(plan)
    if used_units:
        yield "<BasicDefinitions>"
        for u in used_units:
            yield f"<MeasurementUnit{attrs(OID=unit_oid(u), Name=u)}>{text_el('Symbol', u)}</MeasurementUnit>"
        yield "</BasicDefinitions>"
    yield f"<MetaDataVersion{attrs(OID=MDV, Name='Peerlens study design')}>"
    yield "<Protocol>"
    yield '<StudyEventRef StudyEventOID="SE.ENROLMENT" OrderNumber="1" Mandatory="Yes"/>'
    for n, w in enumerate(waves, start=2):
        yield f"<StudyEventRef{attrs(StudyEventOID=f'SE.{oid(w.code)}', OrderNumber=n, Mandatory='No')}/>"
    yield "</Protocol>"
    yield (
        '<StudyEventDef OID="SE.ENROLMENT" Name="enrolment" Repeating="No" Type="Common">'
        '<FormRef FormOID="F.ENROLMENT" OrderNumber="1" Mandatory="Yes"/></StudyEventDef>'
    )
    for w in waves:
        window = f"day {w.offset_days} after enrolment, window −{w.window_before_days}/+{w.window_after_days} days"
        forms = "".join(
            f"<FormRef{attrs(FormOID=f'F.{oid(c)}', OrderNumber=n, Mandatory='No')}/>"
            for n, c in enumerate([c for c in w.instruments if c in plan.instruments], start=1)
        )
        yield (
            f"<StudyEventDef{attrs(OID=f'SE.{oid(w.code)}', Name=w.code, Repeating='No', Type='Scheduled')}>"
            f"{text_el('Description', window)}{forms}</StudyEventDef>"
        )
    yield (
        '<FormDef OID="F.ENROLMENT" Name="enrolment" Repeating="No">'
        '<ItemGroupRef ItemGroupOID="IG.ENROLMENT" OrderNumber="1" Mandatory="Yes"/></FormDef>'
    )
    for code in plan.instruments:
        inst = _get(code)
        if inst is None:
            continue
        yield (
            f"<FormDef{attrs(OID=f'F.{oid(code)}', Name=code, Repeating='No')}>"
            f"{text_el('Description', f'{inst.name} (version {inst.version}). {inst.citation}'.strip())}"
            f"<ItemGroupRef{attrs(ItemGroupOID=f'IG.{oid(code)}', OrderNumber=1, Mandatory='No')}/>"
            f"<ItemGroupRef{attrs(ItemGroupOID=f'IG.{oid(code)}.SCORES', OrderNumber=2, Mandatory='No')}/>"
            f"<ItemGroupRef{attrs(ItemGroupOID=f'IG.{oid(code)}.RESPONSE', OrderNumber=3, Mandatory='Yes')}/>"
            "</FormDef>"
        )
    enrol = [f"I.ENROLMENT.{s}" for s, *_ in ENROLMENT_ITEMS if s != "ENROLLED_ON" or plan.dates.mode != "relative"]
    yield '<ItemGroupDef OID="IG.ENROLMENT" Name="enrolment" Repeating="No">'
    yield _refs(enrol, mandatory="Yes") + "</ItemGroupDef>"
    response_refs = _refs(f"I.RESPONSE.{s}" for s, *_ in RESPONSE_ITEMS if s != "COMPLETED_AT" or _has_times(plan))
    item_defs: list[str] = []
    codelists: list[str] = []
    methods: list[str] = []
    for code in plan.instruments:
        inst = _get(code)
        if inst is None:
            continue
        items = visible_items(plan, code)
        yield f"<ItemGroupDef{attrs(OID=f'IG.{oid(code)}', Name=f'{code} answers', Repeating='No')}>"
        yield _refs(item_oid(code, it.code) for it in items) + "</ItemGroupDef>"
        score_oids: list[str] = []
        method_of: dict[str, str] = {}
        for sc in inst.scales:
            score_oids.append(score_oid(code, sc.code))
            method_of[score_oid(code, sc.code)] = f"MT.{oid(code)}.{oid(sc.code)}"
            if sc.bands:
                score_oids.append(band_oid(code, sc.code))
            methods.append(_method(code, sc))
            item_defs.extend(_score_defs(code, sc))
        yield f"<ItemGroupDef{attrs(OID=f'IG.{oid(code)}.SCORES', Name=f'{code} scores', Repeating='No')}>"
        yield _refs(score_oids, method_of) + "</ItemGroupDef>"
        yield f"<ItemGroupDef{attrs(OID=f'IG.{oid(code)}.RESPONSE', Name=f'{code} response', Repeating='No')}>"
        yield response_refs + "</ItemGroupDef>"
        for it in items:
            item_def, codelist = _item_def(plan, code, it, inst.wording_shipped)
            item_defs.append(item_def)
            if codelist:
                codelists.append(codelist)
    for suffix, name, data_type, desc in ENROLMENT_ITEMS:
        if suffix == "ENROLLED_ON" and plan.dates.mode == "relative":
            continue
        ref = {"SITE": "CL.SITE", "ARM": "CL.ARM"}.get(suffix)
        head = attrs(OID=f"I.ENROLMENT.{suffix}", Name=name, DataType=data_type)
        codelist = f'<CodeListRef CodeListOID="{ref}"/>' if ref and (suffix != "ARM" or arms) else ""
        yield f"<ItemDef{head}>{text_el('Description', desc)}{codelist}</ItemDef>"
    for suffix, name, data_type, desc in RESPONSE_ITEMS:
        if suffix == "COMPLETED_AT" and not _has_times(plan):
            continue
        if suffix == "COMPLETED_AT" and plan.dates.mode == "shift":
            desc += "; shifted back by the participant's de-identification offset"
        head = attrs(OID=f"I.RESPONSE.{suffix}", Name=name, DataType=data_type)
        yield f"<ItemDef{head}>{text_el('Description', desc)}</ItemDef>"
    yield from item_defs
    yield (
        '<CodeList OID="CL.SITE" Name="sites" DataType="text">'
        + "".join(
            f"<CodeListItem{attrs(CodedValue=s.code)}>"
            f"{text_el('Decode', s.code if plan.dates.deidentified else s.name)}</CodeListItem>"
            for s in sites
        )
        + "</CodeList>"
    )
    if arms:
        yield (
            '<CodeList OID="CL.ARM" Name="arms" DataType="text">'
            + "".join(
                f"<CodeListItem{attrs(CodedValue=a)}>{text_el('Decode', name)}</CodeListItem>" for a, name in arms
            )
            + "</CodeList>"
        )
    yield from codelists
    yield from methods
    yield "</MetaDataVersion></Study>"


def _has_times(plan: Plan) -> bool:
    """Whether this reader sees times at all (not in the ``relative`` date mode)."""
    return plan.dates.mode != "relative"


def admin_xml(plan: Plan, sites: list[SiteInfo], users: dict[int, str | None]) -> Iterator[str]:
    """``AdminData``: the users who entered the exported data and the sites (as ``Location``)."""
    yield f"<AdminData{attrs(StudyOID=f'ST.{plan.study.id}')}>"
    for user in dict.fromkeys(UNNAMED_USERS.values()):
        yield f'<User OID="{user}" UserType="Other"/>'
    for uid, login in sorted(users.items()):
        login_el = f"<LoginName>{clean(login)}</LoginName>" if login and not plan.dates.deidentified else ""
        yield f"<User{attrs(OID=f'USR.{uid}', UserType='Other')}>{login_el}</User>"
    version_ref = attrs(
        StudyOID=f"ST.{plan.study.id}", MetaDataVersionOID=MDV, EffectiveDate=plan.study.created_at.date().isoformat()
    )
    for s in sites:
        name = s.code if plan.dates.deidentified else s.name
        yield (
            f"<Location{attrs(OID=f'LOC.{oid(s.code)}', Name=name, LocationType='Site')}>"
            f"<MetaDataVersionRef{version_ref}/></Location>"
        )
    yield "</AdminData>"
