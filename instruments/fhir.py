"""FHIR Questionnaire and QuestionnaireResponse (R4/R4B shape, also valid under R5 where noted).

Items keep their Peerlens codes as ``linkId``; options become ``answerOption.valueCoding`` with the
LOINC answer code where the definition carries one (PHQ frequency LA6568-5 …) and the numeric code as
an ``ordinalValue`` extension, so a FHIR consumer can score without Peerlens. Scales appear as read-only
decimal items so a QuestionnaireResponse can carry the scores next to the answers.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from . import registry
from .model import Instrument, Score

BASE_URL = "https://peerlens.example/fhir"
LOINC = "http://loinc.org"
ORDINAL = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
_KIND = {
    "choice": "choice",
    "integer": "integer",
    "number": "decimal",
    "text": "string",
    "date": "date",
    "datetime": "dateTime",
    "time": "time",
    "multi": "choice",
}


def _id(code: str) -> str:
    return re.sub(r"[^A-Za-z0-9\-.]", "-", code)[:64]


def _system(inst: Instrument) -> str:
    return f"{BASE_URL}/CodeSystem/{_id(inst.code)}"


def _coding(inst: Instrument, opt) -> dict[str, Any]:
    if opt.loinc:
        return {"system": LOINC, "code": opt.loinc, "display": opt.label}
    return {"system": _system(inst), "code": _num_str(opt.code), "display": opt.label}


def _num_str(v: float | int) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def canonical(instrument: Instrument) -> str:
    return f"{BASE_URL}/Questionnaire/{_id(instrument.code)}"


def to_fhir_questionnaire(instrument: str | Instrument) -> dict[str, Any]:
    """The instrument as a FHIR Questionnaire resource (a plain dict).

    Items whose wording is not shipped (PAM-13) carry their neutral label as ``text``.

    Examples
    --------
    >>> q = to_fhir_questionnaire("phq9")
    >>> q["item"][0]["answerOption"][1]["valueCoding"]["code"]
    'LA6569-3'
    """
    inst = registry.get(instrument)
    items = []
    for it in inst.items:
        entry: dict[str, Any] = {"linkId": it.code, "type": _KIND.get(it.kind, "string")}
        text = it.text or it.label
        if text:
            entry["text"] = text
        if it.loinc:
            entry["code"] = [{"system": LOINC, "code": it.loinc}]
        if it.required:
            entry["required"] = True
        if it.kind == "multi":
            entry["repeats"] = True
        if it.options:
            entry["answerOption"] = [
                {"valueCoding": _coding(inst, o), "extension": [{"url": ORDINAL, "valueDecimal": float(o.code)}]}
                for o in it.options
            ]
        items.append(entry)
    if inst.scales:
        items.append(
            {
                "linkId": "scores",
                "type": "group",
                "text": "Scores",
                "readOnly": True,
                "item": [
                    {"linkId": sc.code, "type": "decimal", "text": sc.label, "readOnly": True} for sc in inst.scales
                ],
            }
        )
    q: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "id": _id(inst.code),
        "url": canonical(inst),
        "version": inst.version,
        "name": re.sub(r"[^A-Za-z0-9_]", "_", inst.code.upper()),
        "title": inst.name,
        "status": "active",
        "subjectType": ["Patient"],
        "copyright": inst.licence,
        "item": items,
    }
    if inst.notes.get("loinc"):
        q["code"] = [{"system": LOINC, "code": inst.notes["loinc"], "display": inst.name}]
    if inst.instructions:
        q["description"] = inst.instructions
    return q


def _authored(value: str | dt.datetime | dt.date) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _answer(inst: Instrument, item, value: Any) -> list[dict[str, Any]]:
    if item.options:
        values = value if isinstance(value, (list, tuple, set)) else [value]
        out = []
        for v in values:
            opt = next((o for o in item.options if o.code == float(v)), None)
            if opt is not None:
                out.append({"valueCoding": _coding(inst, opt)})
        return out
    if item.kind == "integer":
        return [{"valueInteger": int(value)}]
    if item.kind == "number":
        return [{"valueDecimal": float(value)}]
    key = {"date": "valueDate", "datetime": "valueDateTime", "time": "valueTime"}.get(item.kind, "valueString")
    return [{key: str(value)}]


def to_fhir_questionnaire_response(
    instrument: str | Instrument,
    answers: Mapping[str, Any],
    scores: Sequence[Score] | None,
    *,
    identifier: str,
    subject: str | Mapping[str, Any],
    authored: str | dt.datetime,
    status: str = "completed",
    fhir_version: str = "R4B",
) -> dict[str, Any]:
    """One response as a FHIR QuestionnaireResponse (a plain dict).

    Parameters
    ----------
    answers : mapping
        item code -> value; unanswered (None) items are left out.
    scores : list of Score, optional
        Scored scales are added under a ``scores`` group (decimal answers); unscored ones are left out.
    identifier : str
        Business identifier, e.g. ``"S1/P001/m6/phq9/1"`` (system ``urn:peerlens:response``).
    subject : str or dict
        A reference string (``"ResearchSubject/P001"``) or a Reference dict.
    authored : str or datetime
        When the answers were given; naive datetimes are taken as UTC.
    fhir_version : {"R4B", "R4", "R5"}
        R5 makes ``identifier`` a list (0..*); R4/R4B keep one Identifier (0..1).

    Examples
    --------
    >>> from instruments import score
    >>> a = {f"gad7_{i}": 1 for i in range(1, 8)}
    >>> qr = to_fhir_questionnaire_response("gad7", a, score("gad7", a), identifier="S1/P1/bl/gad7/1",
    ...                                     subject="ResearchSubject/P1", authored="2026-01-05T10:00:00Z")
    >>> qr["item"][-1]["item"][0]["answer"][0]["valueDecimal"]
    7.0
    """
    inst = registry.get(instrument)
    items = []
    for it in inst.items:
        if it.code not in answers:
            continue
        v = answers[it.code]
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        ans = _answer(inst, it, v)
        entry: dict[str, Any] = {"linkId": it.code}
        if it.text or it.label:
            entry["text"] = it.text or it.label
        if ans:
            entry["answer"] = ans
            items.append(entry)
    scored = [s for s in (scores or []) if s.value is not None]
    if scored:
        labels = {sc.code: sc.label for sc in inst.scales}
        items.append(
            {
                "linkId": "scores",
                "text": "Scores",
                "item": [
                    {
                        "linkId": s.scale,
                        "text": labels.get(s.scale, s.scale),
                        "answer": [{"valueDecimal": float(s.value)}],
                    }
                    for s in scored
                ],
            }
        )
    ident = {"system": "urn:peerlens:response", "value": identifier}
    qr: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "identifier": ident if fhir_version.upper() not in ("R5",) else [ident],
        "questionnaire": f"{canonical(inst)}|{inst.version}",
        "status": status,
        "subject": {"reference": subject} if isinstance(subject, str) else dict(subject),
        "authored": _authored(authored),
    }
    if items:
        qr["item"] = items
    return qr


#: UCUM codes of the units the clinical definitions use (``unit`` is shown; ``code`` is UCUM).
_UCUM = {u: u for u in ("mmol/mol", "%", "kg", "cm", "m", "kg/m2", "mm[Hg]", "/min")}


def to_fhir_observations(
    instrument: str | Instrument,
    scores: Sequence[Score],
    *,
    identifier: str,
    subject: str | Mapping[str, Any],
    effective: str | dt.datetime,
) -> list[dict[str, Any]]:
    """The scored clinical measures of one response as FHIR R4 ``Observation`` resources.

    One Observation per scale that has a value and a unit: ``code`` is the scale's LOINC code
    (and the scale itself in the instrument's code system), ``valueQuantity`` the value in the
    canonical unit with its UCUM code, ``effectiveDateTime`` when it was measured, and a flagged
    value carries the flag in ``interpretation`` text. Scales without a unit (questionnaire scores)
    are left out: they travel as QuestionnaireResponse.

    Examples
    --------
    >>> from instruments import score
    >>> obs = to_fhir_observations("hba1c", score("hba1c", {"hba1c_pct": 7.0}), identifier="S1/P1/bl/hba1c/1",
    ...                            subject="ResearchSubject/P1", effective="2026-01-05T10:00:00Z")
    >>> [(o["code"]["coding"][0]["code"], round(o["valueQuantity"]["value"]), o["valueQuantity"]["code"]) for o in obs]
    [('59261-8', 53, 'mmol/mol'), ('4548-4', 7, '%')]
    """
    inst = registry.get(instrument)
    out = []
    for s in scores:
        if s.value is None or (isinstance(s.value, float) and math.isnan(s.value)):
            continue
        sc = inst.scale(s.scale)
        if not sc.unit:
            continue
        coding = [{"system": _system(inst), "code": sc.code, "display": sc.label}]
        if sc.loinc:
            coding.insert(0, {"system": "http://loinc.org", "code": sc.loinc, "display": sc.label})
        quantity: dict[str, Any] = {"value": float(s.value), "unit": sc.unit}
        if sc.unit in _UCUM:
            quantity.update(system="http://unitsofmeasure.org", code=_UCUM[sc.unit])
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "identifier": [{"system": "urn:peerlens:observation", "value": f"{identifier}/{sc.code}"}],
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": inst.notes.get("fhir_category", "exam"),
                        }
                    ]
                }
            ],
            "code": {"coding": coding, "text": sc.label},
            "subject": {"reference": subject} if isinstance(subject, str) else dict(subject),
            "effectiveDateTime": _authored(effective),
            "valueQuantity": quantity,
        }
        if s.flags:
            flags = {fl.code: fl.message for fl in inst.flags}
            obs["interpretation"] = [{"text": flags.get(f, f)} for f in s.flags]
        out.append(obs)
    return out


def _answer_value(item, answer: Mapping[str, Any], where: str) -> Any:
    """The stored value of one FHIR answer for ``item`` (an option code, a number, a date or text)."""
    if "valueCoding" in answer:
        # A LOINC answer code (LA…) where the option has one, else the option's own numeric code.
        code = str(answer["valueCoding"].get("code"))
        for opt in item.options:
            if code == opt.loinc or code == _num_str(opt.code):
                return opt.code
        raise ValueError(f"{where}.valueCoding: {code!r} is not an option of {item.code}")
    for key in ("valueInteger", "valueDecimal", "valueBoolean"):
        if key in answer:
            v = answer[key]
            return int(v) if key == "valueBoolean" else v
    for key in ("valueDate", "valueDateTime", "valueTime", "valueString"):
        if key in answer:
            return str(answer[key])
    raise ValueError(
        f"{where}: no supported value[x] (Coding, integer, decimal, boolean, date, dateTime, time, string)"
    )


def from_fhir_questionnaire_response(
    resource: Mapping[str, Any], instrument: str | Instrument | None = None
) -> tuple[str, dict[str, Any], str | None]:
    """``(instrument code, answers, authored)`` of a FHIR QuestionnaireResponse (R4, R4B or R5).

    The instrument is the one named by ``questionnaire`` (``…/Questionnaire/<code>|<version>``, as
    :func:`to_fhir_questionnaire_response` writes it, or a bare code) unless ``instrument`` is given;
    each answered item's ``linkId`` is an item code (groups are flattened; the ``scores`` group Peerlens
    writes is ignored: scores are recomputed). Values are checked later by :func:`instruments.validate`.

    Raises
    ------
    ValueError
        With the path of the offending element (``item[2].answer[0]``), for an unknown questionnaire,
        a repeated item, or an answer without a supported value.

    Examples
    --------
    >>> from instruments import score
    >>> a = {f"gad7_{i}": 1 for i in range(1, 8)}
    >>> qr = to_fhir_questionnaire_response("gad7", a, score("gad7", a), identifier="x",
    ...                                     subject="ResearchSubject/P1", authored="2026-01-05T10:00:00Z")
    >>> code, answers, authored = from_fhir_questionnaire_response(qr)
    >>> code, answers == a, authored
    ('gad7', True, '2026-01-05T10:00:00Z')
    """
    if instrument is not None:
        inst = registry.get(instrument)
    else:
        ref = str(resource.get("questionnaire") or "").split("|")[0]
        code = ref.rstrip("/").rsplit("/", 1)[-1]
        if not code:
            raise ValueError("questionnaire: name the instrument (…/Questionnaire/<code>)")
        try:
            inst = registry.get(code)
        except Exception:
            raise ValueError(f"questionnaire: {code!r} is not a known instrument") from None
    items = {it.code: it for it in inst.items}
    answers: dict[str, Any] = {}

    def walk(entries, path: str) -> None:
        for i, entry in enumerate(entries or ()):
            here = f"{path}item[{i}]"
            link = entry.get("linkId")
            if link == "scores" and path == "":
                continue
            if entry.get("item"):
                walk(entry["item"], here + ".")
            if not entry.get("answer"):
                continue
            if link not in items:
                raise ValueError(f"{here}.linkId: {link!r} is not an item of {inst.code}")
            if link in answers:
                raise ValueError(f"{here}.linkId: {link!r} is answered twice")
            item = items[link]
            values = [_answer_value(item, a, f"{here}.answer[{j}]") for j, a in enumerate(entry["answer"])]
            answers[link] = values if item.kind == "multi" else values[0]

    walk(resource.get("item"), "")
    authored = resource.get("authored")
    return inst.code, answers, (str(authored) if authored else None)
