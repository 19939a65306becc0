"""REFI-QDA ``Cases`` and ``Variables``: one case per participant with its attributes.

NVivo, MAXQDA, ATLAS.ti and QualCoder build case (attribute) matrices from these elements, so
arm, site, trajectory group, context attributes and dose travel as data rather than inside
description text. A variable's type follows its values: all booleans ``Boolean``, all integers
``Integer``, all numbers ``Float``, all dates ``Date``, otherwise ``Text``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from lxml import etree

__all__ = ["variable_type", "write_cases", "read_cases"]

_NS_UUID = uuid.UUID("5b7f5c1e-4a0e-4f57-9a43-7f6d2c0b1d11")


def _guid(kind: str, key: str) -> str:
    return str(uuid.uuid5(_NS_UUID, f"{kind}:{key}")).upper()


def variable_type(values) -> str:
    """REFI-QDA ``typeOfVariable`` for a variable's values (``None`` ignored).

    >>> variable_type([1, 2]), variable_type([1, 2.5]), variable_type([True]), variable_type(["a", 1])
    ('Integer', 'Float', 'Boolean', 'Text')
    """
    vals = [v for v in values if v is not None]
    if vals and all(isinstance(v, bool) for v in vals):
        return "Boolean"
    if vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        return "Integer"
    if vals and all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
        return "Float"
    if vals and all(isinstance(v, date) and not isinstance(v, datetime) for v in vals):
        return "Date"
    return "Text"


_ELEMENT = {"Boolean": "BooleanValue", "Integer": "IntegerValue", "Float": "FloatValue", "Date": "DateValue"}


def _text(value, typ: str) -> str:
    if typ == "Boolean":
        return "true" if value else "false"
    if typ == "Date":
        return value.isoformat()
    if typ == "Float":
        return format(float(value), "f")
    return str(value)


def write_cases(
    root, ns: str, cases: Mapping[str, Mapping[str, Any]], sources: Mapping[str, list[str]], before
) -> None:
    """Insert ``Variables`` and ``Cases`` into a ``Project`` element, before ``before`` (``Sources``).

    ``cases``: case name -> {variable: value}; ``sources``: case name -> source GUIDs of that case.
    """
    if not cases:
        return
    P = f"{{{ns}}}"
    names: list[str] = []
    for attrs in cases.values():
        names += [k for k in attrs if k not in names]
    types = {n: variable_type([a.get(n) for a in cases.values()]) for n in names}
    variables = etree.Element(f"{P}Variables")
    for n in names:
        etree.SubElement(variables, f"{P}Variable", guid=_guid("variable", n), name=n, typeOfVariable=types[n])
    cases_el = etree.Element(f"{P}Cases")
    for name, attrs in cases.items():
        case = etree.SubElement(cases_el, f"{P}Case", guid=_guid("case", name), name=name)
        for n in names:
            value = attrs.get(n)
            if value is None:
                continue
            vv = etree.SubElement(case, f"{P}VariableValue")
            etree.SubElement(vv, f"{P}VariableRef", targetGUID=_guid("variable", n))
            etree.SubElement(vv, f"{P}{_ELEMENT.get(types[n], 'TextValue')}").text = _text(value, types[n])
        for g in sources.get(name, []):
            etree.SubElement(case, f"{P}SourceRef", targetGUID=g)
    if before is not None:
        before.addprevious(variables)
        before.addprevious(cases_el)
    else:
        root.append(variables)
        root.append(cases_el)


def read_cases(root, ns: str) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """Cases of a ``Project`` element: ({case: {variable: value}}, {case: [source GUIDs]})."""
    P = f"{{{ns}}}"
    variables = {
        v.get("guid", "").lower(): (v.get("name", ""), v.get("typeOfVariable", "Text"))
        for v in root.iterfind(f"{P}Variables/{P}Variable")
    }
    cases: dict[str, dict[str, Any]] = {}
    sources: dict[str, list[str]] = {}
    for case in root.iterfind(f"{P}Cases/{P}Case"):
        name = case.get("name") or case.get("guid", "")
        attrs: dict[str, Any] = {}
        for vv in case.iterfind(f"{P}VariableValue"):
            ref = vv.find(f"{P}VariableRef")
            if ref is None or ref.get("targetGUID", "").lower() not in variables:
                continue
            vname, vtype = variables[ref.get("targetGUID", "").lower()]
            value_el = next((el for el in vv if el is not ref), None)
            if value_el is None or value_el.text is None:
                continue
            raw = value_el.text.strip()
            tag = etree.QName(value_el).localname
            if tag == "BooleanValue":
                attrs[vname] = raw.lower() in ("true", "1")
            elif tag == "IntegerValue":
                attrs[vname] = int(raw)
            elif tag == "FloatValue":
                attrs[vname] = float(raw)
            elif tag == "DateValue":
                attrs[vname] = date.fromisoformat(raw)
            else:
                attrs[vname] = raw
        cases[name] = attrs
        sources[name] = [r.get("targetGUID", "").lower() for r in case.iterfind(f"{P}SourceRef")]
    return cases, sources
