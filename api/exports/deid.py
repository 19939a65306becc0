"""De-identification: one policy for every surface an analyst reads (exports and REST reads).

:class:`Deidentification` says, for one reader of one study, which instrument items are withheld
(items flagged ``identifier: true`` in their definition and free text a coordinator flagged) and,
through :class:`DatePolicy`, how calendar dates reach them:

* ``calendar`` — staff (admins, coordinators, the system): dates as recorded;
* ``relative`` — analysts, by default: no calendar date at all; intervals are given as days
  since enrolment (the exports' ``days`` column, the REST reads' ``days`` field);
* ``shift`` — analysts of a study that chose ``date_mode: "shift"``: every date of a
  participant moves back by the same 0–364 days, derived from an HMAC of the server secret, the
  study and the participant, so intervals survive and the shift cannot be undone without the
  secret.

Blinded analysis: while the study is not unblinded, a de-identified reader reads arms as neutral
labels (``A``, ``B``, ``C``… from :mod:`api.sap.blinding`); :attr:`Deidentification.blind_arms`
holds that mapping and :meth:`Deidentification.arm` applies it. Arm names, kinds and ids are
withheld from blind readers.

The exports (``api.exports.service``), ``GET /participants/{id}``, ``/schedule`` and
``/responses``, the analyses and the arm list all call this module; none keeps a copy of the rules.

Examples
--------
>>> a = shift_days("s3cret", 1, 42)
>>> 0 <= a <= 364 and a == shift_days("s3cret", 1, 42)
True
>>> shift_days("s3cret", 1, 42) == shift_days("other", 1, 42)
False
>>> from datetime import date
>>> p = DatePolicy("shift", "s3cret", 1)
>>> p.date(date(2026, 3, 1), 42) == date(2026, 3, 1) - __import__("datetime").timedelta(days=a)
True
>>> DatePolicy("relative", "s3cret", 1).date(date(2026, 3, 1), 42) is None
True
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from api.studies.dates import add_days, add_time

DATE_MODES = ("relative", "shift")


def shift_days(secret: str, study_id: int, participant_id: int) -> int:
    """Days (0-364) by which every date of one participant is moved back."""
    digest = hmac.new(secret.encode(), f"{study_id}:{participant_id}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % 365


def sees_calendar_dates(actor) -> bool:
    """Staff (and the system) see calendar dates; de-identified readers (analysts) never do
    (:func:`api.auth.policy.deidentified`)."""
    from api.auth import policy

    return actor is None or not policy.deidentified(actor)


@dataclass(frozen=True)
class DatePolicy:
    """How the calendar dates of one study reach one reader (see the module docstring)."""

    mode: str  # calendar | relative | shift
    secret: str = ""
    study_id: int = 0

    def __post_init__(self):
        if self.mode not in ("calendar", *DATE_MODES):
            raise ValueError(f"unknown date mode {self.mode!r}")
        if self.mode == "shift" and not self.secret:
            # A shift keyed by an empty secret could be recomputed by anyone.
            raise ValueError("a date shift needs the server secret")

    @property
    def deidentified(self) -> bool:
        """Whether calendar dates are hidden from this reader (analysts)."""
        return self.mode != "calendar"

    def shift(self, participant_id: int) -> int:
        """Days every date of ``participant_id`` moves back (0 unless the mode is ``shift``)."""
        return shift_days(self.secret, self.study_id, participant_id) if self.mode == "shift" else 0

    def date(self, value: date | None, participant_id: int) -> date | None:
        """A calendar date as this reader may see it (None in ``relative`` mode)."""
        if value is None or self.mode == "calendar":
            return value
        if self.mode == "relative":
            return None
        return add_days(value, -self.shift(participant_id))

    def moment(self, value: datetime | None, participant_id: int) -> datetime | None:
        """A timestamp as this reader may see it (None in ``relative`` mode)."""
        if value is None or self.mode == "calendar":
            return value
        if self.mode == "relative":
            return None
        return add_time(value, -timedelta(days=self.shift(participant_id)))

    @classmethod
    def for_reader(cls, session, study_id: int, actor, secret: str) -> DatePolicy:
        """The policy for ``actor`` reading study ``study_id`` (its export settings' date mode)."""
        from api.exports.models import ExportSettings

        if sees_calendar_dates(actor):
            return cls("calendar", secret, study_id)
        settings = session.get(ExportSettings, study_id)
        return cls(settings.date_mode if settings is not None else "relative", secret, study_id)

    def answer(self, kind: str, value: Any, enrolled_on, participant_id: int) -> tuple[float | None, str | None]:
        """(number, text) of a ``date``/``datetime`` answer: as given, shifted, or days since
        ``enrolled_on`` (a ``date`` or a naive midnight timestamp) in ``relative`` mode."""
        import pandas as pd

        try:
            when = pd.Timestamp(value)
        except (ValueError, TypeError):
            return None, str(value)
        if self.mode == "calendar":
            return None, str(value)
        if self.mode == "shift":
            shifted = when - pd.Timedelta(days=self.shift(participant_id))
            return None, shifted.date().isoformat() if kind == "date" else shifted.isoformat()
        base = when.tz_localize(None) if when.tzinfo else when
        return float((base.normalize() - pd.Timestamp(enrolled_on)).days), None


@dataclass(frozen=True)
class Deidentification:
    """What one reader may see of one study: withheld items and the date policy.

    ``identified`` readers (staff asking for identifiers) get everything; everyone else gets
    no identifier item and no flagged free text. Build it with :meth:`for_reader`.
    """

    identified: bool
    dropped_items: frozenset[tuple[str, str]]
    dates: DatePolicy
    #: ``{arm id: neutral label}`` while the reader is blind to the arms (None: real arm codes).
    blind_arms: dict[int, str] | None = field(default=None, compare=False)

    def withheld(self, instrument: str, item: str) -> bool:
        return not self.identified and (instrument, item) in self.dropped_items

    def arm(self, arm_id: int | None, code: str | None) -> str | None:
        """The arm as this reader may see it: its code, or its neutral label while blind."""
        if arm_id is None or self.blind_arms is None:
            return code
        return self.blind_arms.get(arm_id)

    def arm_kind(self, kind: str | None) -> str | None:
        """An arm's kind (intervention/control), withheld from a blind reader."""
        return None if self.blind_arms is not None else kind

    @staticmethod
    def arms_for(session, study_id: int, actor) -> dict[int, str] | None:
        """The blinded arm mapping for ``actor`` (None when ``actor`` is not blind)."""
        from api.sap import blinding

        return blinding.neutral_labels(session, study_id) if blinding.blinded(session, study_id, actor) else None

    @classmethod
    def for_reader(
        cls,
        session,
        study_id: int,
        actor,
        *,
        secret: str,
        identifiers: bool = False,
        instruments: list[str] | None = None,
    ) -> Deidentification:
        """The policy for ``actor`` reading study ``study_id``.

        ``identifiers`` is what staff asked for (exports' ``identifiers=true``; REST reads pass
        whether the actor may see the participant's contacts). ``instruments`` limits the item
        scan to the instruments involved (default: every registered one the study's waves use).
        """
        import instruments as registry
        from api.exports.models import ExportSettings

        settings = session.get(ExportSettings, study_id)
        free_text = settings.free_text_items if settings is not None else []
        dates = DatePolicy.for_reader(session, study_id, actor, secret)
        arms = cls.arms_for(session, study_id, actor)
        if identifiers:
            return cls(True, frozenset(), dates, arms)
        flagged = {tuple(x.split(".", 1)) for x in free_text if "." in x}
        if instruments is None:
            from sqlmodel import select

            from api.studies.models import Wave

            instruments = sorted(
                {c for w in session.exec(select(Wave.instruments).where(Wave.study_id == study_id)) for c in w}
            )
        dropped: set[tuple[str, str]] = set(flagged)
        for code in instruments:
            try:
                inst = registry.get(code)
            except registry.InstrumentError:
                continue
            dropped.update((code, it.code) for it in inst.items if it.identifier)
        return cls(False, frozenset(dropped), dates, arms)
