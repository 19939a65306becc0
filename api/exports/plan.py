"""An export request resolved against a study and a reader: filters, scope, columns, dictionary.

:func:`plan_export` checks a request (403 for identifiers an analyst may not have, 422 naming the
unknown wave, instrument or site code) and returns a :class:`Plan`: the waves, sites and
instruments it covers, the items withheld from this reader, the date policy and the blinded arm
labels. :func:`columns` gives the columns of each shape for that plan (also the data dictionary).

Examples
--------
>>> f = ExportFilters(waves=["baseline, m3"])
>>> _codes(f.waves)
['baseline', 'm3']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

import instruments
from api.auth import policy
from api.auth.service import Actor
from api.errors import Forbidden, Unprocessable
from api.exports import dictionary as dd
from api.exports.deid import DatePolicy, Deidentification
from api.exports.models import ExportSettings
from api.studies.models import Site, Study, Wave

SHAPES = (
    "long",
    "wide",
    "items",
    "safety",
    "delivery",
    "dose",
    "delivery_sessions",
    "supporter_training",
    "fidelity",
    "adaptations",
)
CONTEXT = "context"
# Participants per batch: memory against per-batch overhead. Measured on 10,000 participants
# (bench/export.py, two cores): 250 → +71 MB over start-up, long 3.6x COPY; 500 → +129 MB, 3.3x;
# 1,000 → +173 MB, 2.2-2.7x. The increment stays flat when the cohort grows.
DEFAULT_BATCH = 500


@dataclass
class ExportFilters:
    """What to export: wave, instrument and site codes (None = all), identifiers, item columns."""

    waves: list[str] | None = None
    instruments: list[str] | None = None
    sites: list[str] | None = None
    identifiers: bool = False
    items: bool = False
    # CSV only: prefix ' to text cells a spreadsheet would run as a formula (OWASP); False = verbatim.
    escape_formulas: bool = True

    def params(self) -> dict[str, Any]:
        return {
            "waves": self.waves,
            "instruments": self.instruments,
            "sites": self.sites,
            "identifiers": self.identifiers,
            "items": self.items,
            "escape_formulas": self.escape_formulas,
        }


@dataclass(frozen=True)
class WaveInfo:
    """The parts of a wave an export needs (plain values: a rolled-back session cannot expire them)."""

    id: int
    code: str
    offset_days: int
    instruments: tuple[str, ...]
    window_after_days: int = 0


@dataclass
class Plan:
    """An export resolved against a study and an actor: who sees what, and which columns."""

    study: Study
    actor: Actor
    filters: ExportFilters
    deidentified: bool
    date_mode: str
    secret: str
    waves: list[WaveInfo]
    site_ids: list[int]
    instruments: list[str]
    dropped_items: set[tuple[str, str]]
    context_items: list = field(default_factory=list)
    blind_arms: dict[int, str] | None = None  # neutral arm labels while the reader is blind
    rows: int = 0
    study_id: int = 0
    time_zone: str = "UTC"

    @property
    def dates(self) -> DatePolicy:
        """How this export's reader sees calendar dates (the policy every analyst surface uses)."""
        mode = self.date_mode if policy.deidentified(self.actor) else "calendar"
        return DatePolicy(mode, self.secret, self.study_id)

    @property
    def shift_dates(self) -> bool:
        """Whether calendar dates are de-identified (analysts only; staff keep calendar dates)."""
        return self.dates.deidentified

    @property
    def wave_ids(self) -> list[int]:
        return [w.id for w in self.waves]


def export_settings(session: Session, study_id: int) -> ExportSettings:
    """The study's export settings (defaults when none were saved)."""
    return session.get(ExportSettings, study_id) or ExportSettings(study_id=study_id)


def _codes(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    out: list[str] = []
    for v in values:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out or None


def plan_export(
    session: Session, study: Study, actor: Actor, filters: ExportFilters | None = None, *, secret: str = ""
) -> Plan:
    """Check an export request against the study and the actor's role and resolve its scope.

    Raises
    ------
    api.errors.ApiError
        403 when an analyst asks for identifiers; 422 naming ``waves``, ``instruments`` or
        ``sites`` for an unknown code.
    """
    filters = filters or ExportFilters()
    filters.waves, filters.instruments, filters.sites = (
        _codes(filters.waves),
        _codes(filters.instruments),
        _codes(filters.sites),
    )
    if filters.identifiers and policy.deidentified(actor):
        raise Forbidden(
            ["query", "identifiers"], "analysts receive de-identified exports only", "identifiers_not_allowed"
        )
    waves = list(
        session.execute(select(Wave).where(Wave.study_id == study.id).order_by(Wave.offset_days, Wave.code)).scalars()
    )
    if filters.waves:
        known = {w.code for w in waves}
        bad = [c for c in filters.waves if c not in known]
        if bad:
            raise Unprocessable(
                ["query", "waves"], f"unknown wave code(s) {bad}; the study has {sorted(known)}", "unknown_wave"
            )
        waves = [w for w in waves if w.code in filters.waves]
    sites = list(session.execute(select(Site).where(Site.study_id == study.id).order_by(Site.id)).scalars())
    if filters.sites:
        known = {s.code for s in sites}
        bad = [c for c in filters.sites if c not in known]
        if bad:
            raise Unprocessable(["query", "sites"], f"unknown site code(s) {bad}", "unknown_site")
        sites = [s for s in sites if s.code in filters.sites]
    if policy.site_scoped(actor):
        if filters.sites and any(not actor.sees_site(s.id) for s in sites):
            raise Forbidden(["query", "sites"], "coordinators export their own sites only", "site_not_allowed")
        sites = [s for s in sites if actor.sees_site(s.id)]
    used: list[str] = []
    for w in waves:
        for code in w.instruments:
            if code not in used:
                used.append(code)
    if filters.instruments:
        bad = [c for c in filters.instruments if c not in used]
        if bad:
            raise Unprocessable(
                ["query", "instruments"],
                f"instrument(s) {bad} are not collected at the selected waves",
                "unknown_instrument",
            )
        used = [c for c in used if c in filters.instruments or c == CONTEXT]
    settings = export_settings(session, study.id)
    deidentified = not filters.identifiers
    deid = Deidentification.for_reader(
        session, study.id, actor, secret=secret, identifiers=filters.identifiers, instruments=used
    )
    dropped: set[tuple[str, str]] = set(deid.dropped_items)
    context_items = []
    ctx = _get(CONTEXT)
    if ctx is not None and any(
        CONTEXT in w.instruments for w in session.execute(select(Wave).where(Wave.study_id == study.id)).scalars()
    ):
        context_items = [it for it in ctx.items if (CONTEXT, it.code) not in dropped]
    infos = [WaveInfo(w.id, w.code, w.offset_days, tuple(w.instruments), int(w.window_after_days or 0)) for w in waves]
    return Plan(
        study=study,
        actor=actor,
        filters=filters,
        deidentified=deidentified,
        date_mode=settings.date_mode,
        secret=secret,
        waves=infos,
        study_id=study.id,
        time_zone=study.time_zone,
        site_ids=[s.id for s in sites],
        instruments=used,
        dropped_items=dropped,
        context_items=context_items,
        blind_arms=deid.blind_arms,
    )


def _get(code: str):
    try:
        return instruments.get(code)
    except instruments.InstrumentError:
        return None


# ---- columns ---------------------------------------------------------------------------------


def columns(plan: Plan, shape: str) -> list[dd.Column]:
    """The columns of ``shape`` for this plan (also the data dictionary's rows); a blind reader's
    ``arm`` column holds neutral labels and ``arm_kind`` stays empty (:mod:`api.sap.blinding`)."""
    cols = _columns(plan, shape)
    if plan.blind_arms is None:
        return cols
    blind = {
        "arm": dd.Column("arm", "arm, blinded: a neutral label (A, B, C…) until the study is unblinded", "string"),
        "arm_kind": dd.Column("arm_kind", "arm kind: withheld until the study is unblinded", "string"),
    }
    return [blind.get(c.name, c) for c in cols]


def _columns(plan: Plan, shape: str) -> list[dd.Column]:
    ident = dd.identifier_columns() if plan.filters.identifiers else []
    if shape == "long":
        return dd.long_columns(plan.context_items) + ident
    if shape == "items":
        return dd.items_columns() + ident
    if shape == "safety":
        from api.safety.export import safety_columns

        return safety_columns() + ident
    if shape in ("delivery", "dose"):
        from api.delivery.export import columns as delivery_columns

        return delivery_columns(shape) + ident
    if shape in ("delivery_sessions", "supporter_training"):
        from api.delivery.export import columns as delivery_columns

        return delivery_columns(shape)  # no participant rows: no participant identifiers
    if shape in ("fidelity", "adaptations"):  # sessions and adaptations: no participant, no identifier
        from api.fidelity.export import adaptation_columns, fidelity_columns

        return fidelity_columns() if shape == "fidelity" else adaptation_columns()
    if shape == "wide":
        scales: list = []
        for code in plan.instruments:
            inst = _get(code)
            if inst is None or code == CONTEXT:
                continue
            scales.extend((inst, s) for s in inst.scales)
        names = wide_item_names(plan)
        cols = dd.wide_columns(plan.context_items, scales, [])
        for (code, item_code), name in names.items():
            inst = _get(code)
            item = next(it for it in inst.items if it.code == item_code) if inst is not None else None
            if item is not None:
                cols.append(dd.item_column(inst, item, name))
        return cols + ident
    raise ValueError(f"shape must be one of {SHAPES}")


def wide_item_names(plan: Plan) -> dict[tuple[str, str], str]:
    """``(instrument, item)`` -> its column in the ``wide`` shape (empty unless items are asked for).

    An item keeps its own code unless that names another column (a scale, a fixed or context
    column, or an item of another instrument), then it is ``<instrument>__<item>``: two columns
    of one name would overwrite each other's values.
    """
    if not plan.filters.items:
        return {}
    pairs: list[tuple[str, str]] = []
    taken = {c.name for c in dd.wide_columns(plan.context_items, [], [])}
    for code in plan.instruments:
        inst = _get(code)
        if inst is None or code == CONTEXT:
            continue
        taken.update(s.code for s in inst.scales)
        pairs.extend((code, it.code) for it in inst.items if (code, it.code) not in plan.dropped_items)
    seen: dict[str, int] = {}
    for _code, item_code in pairs:
        seen[item_code] = seen.get(item_code, 0) + 1
    return {
        (code, item_code): f"{code}__{item_code}" if item_code in taken or seen[item_code] > 1 else item_code
        for code, item_code in pairs
    }


def dictionary(plan: Plan, shape: str) -> dict[str, Any]:
    """The JSON data dictionary of an export of ``shape``."""
    return dd.dictionary_json(
        columns(plan, shape),
        shape=shape,
        study_id=plan.study_id,
        deidentified=plan.deidentified,
        date_mode=plan.date_mode if plan.shift_dates else "calendar",
        instruments_used=plan.instruments,
        blinded=plan.blind_arms is not None,
    )
