"""Checks of an analysis request against the study and its cohort frame.

Everything a request names is checked before any model runs, and every refusal is a 422 (or a
403 for another site) naming the field: scales of the study's instruments, waves, sites, arms,
instruments and participant-level columns. :func:`statistical` turns a failure of the analysis
library (too few participants, no convergence, no estimable subgroup) into a 422 in plain words.

Examples
--------
>>> design = Design(waves=[], scales={"phq9": ["baseline", "m3"]}, instruments=["phq9"], sites={}, arms=[])
>>> check_scale(design, "phq9", ["body", "outcome"])
'phq9'
>>> check_scale(design, "gad7", ["body", "outcome"])
Traceback (most recent call last):
...
api.errors.Unprocessable: not a scale of this study's instruments; expected one of: phq9
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlmodel import Session

import analysis
import instruments
from api.artifacts import site_scope
from api.auth.service import Actor
from api.errors import Forbidden, Unprocessable
from api.studies.models import Arm, Site, Study, Wave

if TYPE_CHECKING:
    import pandas as pd
else:
    from api.lazyimport import pandas as pd

log = logging.getLogger("peerlens.analyses")

CONTEXT = "context"  # the context questionnaire: answers become context_* columns, not scales
PARTICIPANT_COLUMNS = ("site",)


@dataclass
class Design:
    """What a request can refer to: the study's waves, scales, instruments, sites and arms."""

    waves: list[Wave]
    scales: dict[str, list[str]]  # scale code -> wave codes where it is collected
    instruments: list[str]
    sites: dict[str, int]  # site code -> id
    arms: list[Arm]

    @property
    def wave_codes(self) -> list[str]:
        return [w.code for w in self.waves]


def _instrument(code: str) -> instruments.Instrument | None:
    try:
        return instruments.get(code)
    except instruments.InstrumentError:
        return None


def study_design(session: Session, study: Study, actor: Actor | None = None) -> Design:
    """The study's waves (by offset), the scales its instruments score, its sites and arms.

    For an ``actor`` blind to the arms (:mod:`api.sap.blinding`) the arms are their neutral labels
    (A, B, C…) without kind, so requests name arms as the blind reader's frame does."""
    waves = list(
        session.execute(select(Wave).where(Wave.study_id == study.id).order_by(Wave.offset_days, Wave.code)).scalars()
    )
    scales: dict[str, list[str]] = {}
    used: list[str] = []
    for w in waves:
        for code in w.instruments:
            if code == CONTEXT:
                continue
            if code not in used:
                used.append(code)
            inst = _instrument(code)
            for sc in inst.scales if inst is not None else ():
                scales.setdefault(sc.code, []).append(w.code)
    sites = {
        s.code: s.id for s in session.execute(select(Site).where(Site.study_id == study.id).order_by(Site.id)).scalars()
    }
    arms = list(session.execute(select(Arm).where(Arm.study_id == study.id).order_by(Arm.id)).scalars())
    if actor is not None:
        from api.sap.blinding import blinded, neutral_labels

        if blinded(session, study.id, actor):
            labels = neutral_labels(session, study.id)
            arms = sorted(
                (
                    Arm(study_id=study.id, code=labels[a.id], name=f"Arm {labels[a.id]}", kind="", allocation_ratio=1)
                    for a in arms
                    if a.id in labels
                ),
                key=lambda a: (len(a.code), a.code),
            )
    return Design(waves, scales, used, sites, arms)


def listing(values: Iterable[str]) -> str:
    """Up to 30 of ``values``, sorted, for an error message."""
    ordered = sorted(values)
    return ", ".join(ordered[:30]) + (" …" if len(ordered) > 30 else "") if ordered else "none"


def check_scale(design: Design, scale: str, loc: list) -> str:
    """422 unless ``scale`` is scored by an instrument of one of the study's waves."""
    if scale not in design.scales:
        raise Unprocessable(
            loc, f"not a scale of this study's instruments; expected one of: {listing(design.scales)}", "unknown_scale"
        )
    return scale


def check_wave(design: Design, code: str, loc: list, scale: str | None = None) -> str:
    """422 unless ``code`` is a wave of the study (collecting ``scale`` when given)."""
    if code not in design.wave_codes:
        raise Unprocessable(
            loc, f"not a wave of this study; expected one of: {listing(design.wave_codes)}", "unknown_wave"
        )
    if scale is not None and code not in design.scales.get(scale, []):
        raise Unprocessable(
            loc,
            f"{scale} is not collected at this wave; it is collected at: {listing(design.scales.get(scale, []))}",
            "scale_not_collected",
        )
    return code


def check_instruments(design: Design, codes: list[str] | None) -> None:
    """422 naming the first of ``codes`` that no wave of the study collects."""
    for i, code in enumerate(codes or []):
        if code not in design.instruments:
            raise Unprocessable(
                ["body", "instruments", i],
                f"not an instrument of this study's waves; expected one of: {listing(design.instruments)}",
                "unknown_instrument",
            )


def check_sites(design: Design, actor: Actor, codes: list[str] | None) -> list[str] | None:
    """The site codes analysed: the request's (checked), else None for every site the actor sees."""
    if codes is None:
        return None
    for i, code in enumerate(codes):
        if code not in design.sites:
            raise Unprocessable(
                ["body", "sites", i],
                f"not a site of this study; expected one of: {listing(design.sites)}",
                "unknown_site",
            )
        if not actor.sees_site(design.sites[code]):
            raise Forbidden(["body", "sites", i], "coordinators analyse their own sites only", "site_not_allowed")
    return list(dict.fromkeys(codes))


def scope_sites(design: Design, actor: Actor, requested: list[str] | None) -> list[str] | None:
    """Site codes a run covers, for the manifest and the audit trail (None = every site)."""
    return site_scope(actor, design.sites, requested)


def check_reference(design: Design, ref: str | None) -> None:
    """422 unless ``ref`` (when given) is an arm of the study."""
    if ref is not None and ref not in {a.code for a in design.arms}:
        raise Unprocessable(
            ["body", "reference"],
            f"not an arm of this study; expected one of: {listing(a.code for a in design.arms)}",
            "unknown_arm",
        )


def change_waves(design: Design, outcome: str, pre: str | None, post: str | None) -> tuple[str, str]:
    """Baseline and follow-up waves of a change: the requested ones (checked), else the first and
    last waves collecting ``outcome``."""
    collected = design.scales[outcome]
    post = check_wave(design, post, ["body", "post"], outcome) if post else collected[-1]
    pre = check_wave(design, pre, ["body", "pre"], outcome) if pre else collected[0]
    order = design.wave_codes
    if order.index(pre) >= order.index(post):
        raise Unprocessable(
            ["body", "post"], f"the follow-up wave must come after the baseline wave ({pre})", "wave_order"
        )
    return pre, post


def participant_columns(frame: pd.DataFrame) -> list[str]:
    """Columns usable as covariates or moderators: ``site``, ``context_*`` and ``code:*``."""
    return [c for c in frame.columns if c in PARTICIPANT_COLUMNS or c.startswith("context_") or c.startswith("code:")]


def check_columns(frame: pd.DataFrame, names: list[str], loc: list, *, extra: tuple[str, ...] = ()) -> list[str]:
    """422 naming the first of ``names`` that is not a participant-level column of the frame."""
    allowed = participant_columns(frame) + list(extra)
    for i, name in enumerate(names):
        if name not in allowed:
            raise Unprocessable(
                loc + [i],
                f"not a column of the study's cohort frame; expected one of: {listing(allowed)}",
                "unknown_column",
            )
    return list(dict.fromkeys(names))


def no_data(frame: pd.DataFrame, loc: list) -> None:
    """422 when the frame in scope is empty."""
    if frame.empty:
        raise Unprocessable(loc, "no participant in scope has questionnaire data yet", "no_data")


def converged(model: Any, loc: list) -> None:
    """422 when a fitted mixed model did not converge (its estimates cannot be trusted)."""
    if not bool(model.converged_):
        raise Unprocessable(
            loc,
            "the model did not converge, so its estimates cannot be trusted; use "
            "random='intercept', fewer covariates, or wait for more follow-up data",
            "not_converged",
        )


@contextmanager
def statistical(loc: list, what: str) -> Iterator[None]:
    """Turn a failure of the analysis library into a 422 in plain words naming ``loc``.

    The except clause reads :data:`analysis.ESTIMATION_ERRORS` only when something fails, so a
    process that never fails a fit never imports lifelines for its exception class.
    """
    try:
        yield
    except analysis.ESTIMATION_ERRORS as exc:
        msg = str(exc).strip().strip("'\"") or type(exc).__name__
        log.info("analysis not estimable (%s): %s", what, type(exc).__name__)
        raise Unprocessable(loc, f"{what} could not be estimated from these data: {msg}", "not_estimable") from None
