"""Read instrument definitions (YAML or an equivalent dict) into :class:`~instruments.model.Instrument`.

The definition format is described by ``instruments/schema/definition.schema.json``; every file is
checked against it when it is loaded, so a typo in a definition fails loudly rather than scoring wrongly.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .model import AlertRule, Band, Flag, Instrument, InstrumentError, Item, Option, Scale

DEFINITIONS_DIR = Path(__file__).parent / "definitions"
SCHEMA_PATH = Path(__file__).parent / "schema" / "definition.schema.json"

# Keys of a scale mapping that are Scale fields; anything else ends up in ``Scale.options``.
_SCALE_FIELDS = {
    "code",
    "label",
    "items",
    "method",
    "min_items",
    "range",
    "bands",
    "mcid",
    "source",
    "external",
    "higher_is",
    "notes",
    "options",
    "unit",
    "loinc",
}


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON Schema of the definition format."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def check_definition(data: dict[str, Any], where: str = "definition") -> None:
    """Validate a raw definition mapping against the JSON Schema and the cross-references.

    Raises
    ------
    InstrumentError
        With every schema error and dangling reference listed.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if errors:
        raise InstrumentError(f"{where}: " + "; ".join(errors))


def _options(raw: Any, option_sets: dict[str, Any], where: str) -> tuple[Option, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        if raw not in option_sets:
            raise InstrumentError(f"{where}: unknown option set {raw!r}")
        raw = option_sets[raw]
    return tuple(
        Option(code=o["code"], label=o["label"], missing=bool(o.get("missing", False)), loinc=o.get("loinc"))
        for o in raw
    )


def instrument_from_dict(data: dict[str, Any], where: str = "definition") -> Instrument:
    """Build an :class:`Instrument` from a definition mapping (the parsed YAML).

    Examples
    --------
    >>> inst = instrument_from_dict({"code": "demo", "name": "Demo", "version": "1", "citation": "-",
    ...     "licence": "-", "items": [{"code": "demo_1", "text": "Q?", "options": [
    ...     {"code": 0, "label": "no"}, {"code": 1, "label": "yes"}]}],
    ...     "scales": [{"code": "demo", "label": "Demo", "items": ["demo_1"], "method": "sum",
    ...                 "min_items": 1, "range": [0, 1]}]})
    >>> inst.scale("demo").range
    (0, 1)
    """
    check_definition(data, where)
    option_sets = data.get("option_sets", {}) or {}
    items = []
    for it in data["items"]:
        items.append(
            Item(
                code=it["code"],
                text=it.get("text"),
                options=_options(it.get("options"), option_sets, where),
                reverse=bool(it.get("reverse", False)),
                scored=bool(it.get("scored", True)),
                kind=it.get("kind", "choice"),
                min=it.get("min"),
                max=it.get("max"),
                identifier=bool(it.get("identifier", False)),
                label=it.get("label"),
                loinc=it.get("loinc"),
                required=bool(it.get("required", False)),
                notes=it.get("notes"),
                unit=it.get("unit"),
            )
        )
    scales = []
    for sc in data.get("scales", []) or []:
        extra = {k: v for k, v in sc.items() if k not in _SCALE_FIELDS}
        opts = dict(sc.get("options", {}) or {})
        opts.update(extra)
        scales.append(
            Scale(
                code=sc["code"],
                label=sc["label"],
                items=tuple(sc["items"]),
                method=sc["method"],
                min_items=int(sc["min_items"]),
                range=(sc["range"][0], sc["range"][1]),
                bands=tuple(
                    Band(
                        label=b["label"],
                        min=b["min"],
                        max=b["max"],
                        level=b.get("level"),
                        min_exclusive=bool(b.get("min_exclusive", False)),
                    )
                    for b in sc.get("bands", []) or []
                ),
                mcid=sc.get("mcid"),
                source=sc.get("source"),
                options=opts,
                external=bool(sc.get("external", False)),
                higher_is=sc.get("higher_is"),
                notes=sc.get("notes"),
                unit=sc.get("unit"),
                loinc=sc.get("loinc"),
            )
        )
    flags = tuple(
        Flag(
            code=f["code"],
            rule=f["rule"],
            message=f["message"],
            kind=f.get("kind", "item"),
            items=tuple(f.get("items", ())),
            op=f.get("op", ">"),
            value=f.get("value"),
            min_answered=f.get("min_answered"),
            scales=tuple(f.get("scales", ())),
        )
        for f in data.get("flags", []) or []
    )
    alerts = tuple(
        AlertRule(
            code=a["code"],
            label=a["label"],
            kind=a["kind"],
            target=a["target"],
            op=a["op"],
            value=float(a["value"]),
            instrument=data["code"],
            source=a.get("source"),
        )
        for a in data.get("alerts", []) or []
    )
    notes = dict(data.get("notes", {}) or {})
    for key in ("source", "loinc", "url"):
        if key in data:
            notes[key] = data[key]
    inst = Instrument(
        code=data["code"],
        name=data["name"],
        version=str(data["version"]),
        citation=data["citation"],
        licence=data["licence"],
        items=tuple(items),
        scales=tuple(scales),
        flags=flags,
        alerts=alerts,
        wording_shipped=bool(data.get("wording_shipped", True)),
        instructions=data.get("instructions"),
        notes=notes,
    )
    check_references(inst, where)
    return inst


def check_references(inst: Instrument, where: str = "definition") -> None:
    """Check that scales and flags name existing items/scales and that codes are unique."""
    problems = []
    codes = [i.code for i in inst.items]
    dupes = {c for c in codes if codes.count(c) > 1}
    if dupes:
        problems.append(f"duplicate item codes {sorted(dupes)}")
    known = set(codes)
    seen_scales: set[str] = set()
    for sc in inst.scales:
        if sc.code in seen_scales:
            problems.append(f"duplicate scale code {sc.code}")
        for c in sc.items:
            if c not in known:
                problems.append(f"scale {sc.code}: unknown item {c}")
        if sc.method == "convert":
            factors = sc.options.get("factors") or {}
            if set(factors) != set(sc.items):
                problems.append(f"scale {sc.code}: convert needs one [a, b] factor pair per item")
        if sc.method == "derived":
            from .clinical import FORMULAS

            formula = sc.options.get("formula")
            if formula not in FORMULAS:
                problems.append(f"scale {sc.code}: unknown formula {formula!r} (known: {sorted(FORMULAS)})")
            for c in (sc.options.get("inputs") or {}).values():
                if c not in seen_scales and c not in known:
                    problems.append(f"scale {sc.code}: input {c!r} must be an item or a scale defined before it")
        if sc.method == "lookup" and sc.source not in seen_scales:
            problems.append(f"scale {sc.code}: lookup source {sc.source!r} must be a scale defined before it")
        if sc.min_items > len(sc.items) and sc.method not in ("lookup", "derived"):
            problems.append(f"scale {sc.code}: min_items {sc.min_items} > {len(sc.items)} items")
        for c in sc.items:
            if c in known and not inst.item(c).scored:
                problems.append(f"scale {sc.code}: item {c} is marked scored: false")
        seen_scales.add(sc.code)
    for fl in inst.flags:
        for c in fl.items:
            if c not in known:
                problems.append(f"flag {fl.code}: unknown item {c}")
        for c in fl.scales:
            if c not in seen_scales:
                problems.append(f"flag {fl.code}: unknown scale {c}")
        if fl.kind == "scale" and (not fl.scales or fl.value is None):
            problems.append(f"flag {fl.code}: kind scale needs scales and a value")
    from .alerts import rule_problems

    seen_alerts: set[str] = set()
    for rule in inst.alerts:
        if rule.code in seen_alerts:
            problems.append(f"duplicate alert code {rule.code}")
        seen_alerts.add(rule.code)
        problems.extend(f"alert {rule.code}: {p}" for p in rule_problems(inst, rule))
    if problems:
        raise InstrumentError(f"{where}: " + "; ".join(problems))


# libyaml's safe loader where PyYAML was built with it: the same documents, about 8 times faster to
# read (every process that scores or serves loads every definition once).
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_file(path: str | Path) -> Instrument:
    """Load one YAML definition file."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=_SafeLoader)
    except yaml.YAMLError as exc:
        raise InstrumentError(f"{path.name}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InstrumentError(f"{path.name}: not a mapping")
    return instrument_from_dict(data, where=path.name)


def load_directory(directory: str | Path = DEFINITIONS_DIR) -> dict[str, Instrument]:
    """Load every ``*.yaml`` definition in ``directory``, keyed by instrument code."""
    out: dict[str, Instrument] = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        inst = load_file(path)
        if inst.code in out:
            raise InstrumentError(f"{path.name}: instrument code {inst.code!r} defined twice")
        out[inst.code] = inst
    return out
