"""The cohort exports: one import path for the shapes, their audit and the export settings.

Rows are read participant by participant: a keyset query picks the next ``batch_size``
participant ids, then one query reads all their scores (or answers). A participant's rows are
therefore never split across batches, and memory holds one batch whatever the cohort size. On
PostgreSQL the whole export runs in one ``REPEATABLE READ`` read-only transaction, so every batch
sees the same snapshot.

De-identification is decided here, by role, not by the caller:

* analysts never get contact fields, identifier-flagged items or free-text items a coordinator
  flagged; dates are either replaced by days since enrolment (``completed_at`` left empty) or, if
  the study chose ``date_mode="shift"``, moved back by a per-participant secret offset;
* coordinators and admins see calendar dates; with ``identifiers=true`` they also get the contact
  vault columns and identifier items, coordinators for their own sites only.

Examples
--------
>>> from api.auth.service import Actor
>>> f = ExportFilters(waves=["baseline"])
>>> for batch in iter_long(session, study, Actor.system(), f):  # doctest: +SKIP
...     print(len(batch))
>>> frame = long_frame(session, study, Actor.system())  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.audit.service import record
from api.auth import policy
from api.auth.service import Actor
from api.errors import Unprocessable
from api.exports.frames import (  # noqa: F401  (the public import path of the export internals)
    _batches,
    _begin_snapshot,
    _contacts,
    _context,
    _copy_frame,
    _dates,
    _due_offsets,
    _end_batch,
    _iter,
    _long_batch,
    _nanosecond_times,
    _participant_batches,
    _participants,
    _response_filter,
    dd_conform,
    iter_long,
    long_frame,
    uses_data_clause,
)
from api.exports.models import ExportSettings
from api.exports.pgcopy import copy_out, prefetched  # noqa: F401
from api.exports.plan import (  # noqa: F401
    CONTEXT,
    DEFAULT_BATCH,
    SHAPES,
    ExportFilters,
    Plan,
    WaveInfo,
    _codes,
    _get,
    columns,
    dictionary,
    export_settings,
    plan_export,
    wide_item_names,
)
from api.exports.service_wide import (  # noqa: F401
    _answers_rows,
    _item_value,
    _items_batch,
    _local_day,
    _wide_batch,
    iter_items,
    iter_wide,
)
from api.participants.models import Participant
from api.studies.models import Study

if TYPE_CHECKING:
    import pandas as pd


def iter_safety(*args, **kwargs) -> Iterator[pd.DataFrame]:
    """The ``safety`` frame (adverse events and safety alerts): :func:`api.safety.export.iter_safety`."""
    from api.safety.export import iter_safety as _iter_safety

    return _iter_safety(*args, **kwargs)


def _delivery(shape: str) -> Callable[..., Iterator[pd.DataFrame]]:
    def iterate(*args, **kwargs) -> Iterator[pd.DataFrame]:
        """A delivery shape: :func:`api.delivery.export.iter_delivery_shape`."""
        from api.delivery.export import iter_delivery_shape

        return iter_delivery_shape(shape, *args, **kwargs)

    return iterate


def iter_fidelity(*args, **kwargs) -> Iterator[pd.DataFrame]:
    """The ``fidelity`` frame (ratings by score part and item): :func:`api.fidelity.export.iter_fidelity`."""
    from api.fidelity.export import iter_fidelity as _iter_fidelity

    return _iter_fidelity(*args, **kwargs)


def iter_adaptations(*args, **kwargs) -> Iterator[pd.DataFrame]:
    """The ``adaptations`` frame (FRAME log): :func:`api.fidelity.export.iter_adaptations`."""
    from api.fidelity.export import iter_adaptations as _iter_adaptations

    return _iter_adaptations(*args, **kwargs)


ITERATORS = {
    "long": iter_long,
    "wide": iter_wide,
    "items": iter_items,
    "safety": iter_safety,
    **{shape: _delivery(shape) for shape in ("delivery", "dose", "delivery_sessions", "supporter_training")},
    "fidelity": iter_fidelity,
    "adaptations": iter_adaptations,
}


def participants_in(session: Session, plan: Plan) -> int:
    """How many participants an export plan covers (the sites it may read)."""
    return session.execute(
        select(func.count())
        .select_from(Participant)
        .where(Participant.study_id == plan.study_id, Participant.site_id.in_(plan.site_ids), *uses_data_clause())
    ).scalar_one()


def iter_shape(session: Session, plan: Plan, shape: str, batch_size: int = DEFAULT_BATCH) -> Iterator[pd.DataFrame]:
    """Batches of ``shape`` for a resolved plan."""
    return ITERATORS[shape](session, plan.study, plan.actor, plan=plan, batch_size=batch_size)


def export_chunks(
    session: Session, plan: Plan, shape: str, fmt: str, data_dictionary: dict[str, Any]
) -> Iterator[bytes]:
    """The bytes of one export. On PostgreSQL the ``long`` and ``wide`` CSV files are built by the
    database and streamed as its COPY blocks (:mod:`api.exports.sqlpath`, same bytes); everything
    else is read in participant batches and encoded by :mod:`api.exports.writers`. Either way the
    first rows are read before the first byte is produced (:func:`api.exports.integrity.primed`)."""
    from api.exports import integrity, sqlpath, writers

    if sqlpath.supported(plan, shape, fmt, session.get_bind().dialect.name):
        return sqlpath.csv_chunks(session, plan, shape)
    return writers.write(
        fmt,
        integrity.first_batch_read(iter_shape(session, plan, shape)),
        columns(plan, shape),
        data_dictionary,
        escape_formulas=plan.filters.escape_formulas,
    )


def audit_export(
    session: Session,
    plan: Plan,
    *,
    shape: str,
    fmt: str,
    complete: bool,
    error: str | None = None,
    digest: dict[str, Any] | None = None,
) -> None:
    """Record one export (parameters, row count and, for a streamed one, the byte count and SHA-256
    of what was sent) in the audit trail (the caller commits). The event is the export's receipt:
    see :func:`receipt`."""
    record(
        session,
        plan.actor,
        "export",
        "study",
        plan.study_id,
        study_id=plan.study_id,
        after={
            "shape": shape,
            "format": fmt,
            **plan.filters.params(),
            "deidentified": plan.deidentified,
            "date_mode": plan.date_mode if plan.shift_dates else "calendar",
            "rows": plan.rows,
            "complete": complete,
            **({"error": error} if error else {}),
            **(digest or {}),
        },
    )


def audited_stream(
    engine: Engine, plan: Plan, chunks: Callable[[Session], Iterator[bytes]], *, shape: str, fmt: str
) -> Iterator[bytes]:
    """The bytes of an export, read in a session of their own while a response streams them, and
    audited once the last byte is produced (or the client goes away: the event then says
    ``complete: false`` with the rows sent so far). The audit event is committed in its own
    transaction, since the request's has ended by then."""
    complete, error = False, None
    sha, size = hashlib.sha256(), 0
    with Session(engine, expire_on_commit=False) as session:
        try:
            for chunk in chunks(session):
                sha.update(chunk)
                size += len(chunk)
                yield chunk
            complete = True
        except Exception as exc:
            error = type(exc).__name__
            raise
        finally:
            # The reading transaction ends first: on SQLite every transaction holds the write lock
            # (BEGIN IMMEDIATE), so the audit session would otherwise wait out the busy timeout.
            session.rollback()
            digest = {"bytes": size, "sha256": sha.hexdigest()}
            with Session(engine) as audit_session:
                audit_export(audit_session, plan, shape=shape, fmt=fmt, complete=complete, error=error, digest=digest)
                audit_session.commit()


def update_settings(
    session: Session, study: Study, actor: Actor, *, date_mode: str | None, free_text_items: list[str] | None
) -> ExportSettings:
    """Change a study's export settings (admins; audited; the caller commits)."""
    # Study-wide: a coordinator of one site would change what analysts see of the others.
    policy.ensure_admin(actor, "change a study's export settings")
    current = session.get(ExportSettings, study.id)
    before = (
        None if current is None else {"date_mode": current.date_mode, "free_text_items": list(current.free_text_items)}
    )
    if current is None:
        current = ExportSettings(study_id=study.id)
    if free_text_items is not None:
        bad = []
        for n, ref in enumerate(free_text_items):
            code, _, item = ref.partition(".")
            inst = _get(code)
            if inst is None or item not in {i.code for i in inst.items}:
                bad.append(n)
        if bad:
            raise Unprocessable(
                ["body", "free_text_items", bad[0]],
                "expected instrument.item naming an item of a registered instrument",
                "unknown_item",
            )
        current.free_text_items = sorted(set(free_text_items))
    if date_mode is not None:
        current.date_mode = date_mode
    from api.db import utcnow

    current.updated_at = utcnow()
    session.add(current)
    session.flush()
    record(
        session,
        actor,
        "update" if before else "create",
        "export_settings",
        study.id,
        study_id=study.id,
        before=before,
        after={"date_mode": current.date_mode, "free_text_items": list(current.free_text_items)},
    )
    return current
