"""Licensed instrument content through the service: upload, validate, store, audit, apply.

PAM-13 and HLS-EU ship structure and scoring rules without their item wording, and PAM-13's
activation score needs the licensee's raw-to-activation calibration table. A licensee uploads
them once (``peerlens licensed wording|calibration`` or ``POST /licensed/...``); the CSV is
validated by the instruments library (:func:`instruments.load_wording`,
:func:`instruments.load_calibration`), stored in ``licensed_content`` and applied process-wide:
from then on the participant form shows the wording and scoring yields the activation score.

Every process applies the stored content at start-up (:func:`load_licensed`) and checks for newer
uploads cheaply before it renders a form, scores a response or plans reminders (:func:`refresh`),
so all workers agree without a restart. The audit event records the instrument, kind, row count
and SHA-256 of the file, never the licensed text.
"""

from __future__ import annotations

import hashlib
import logging
import threading

from sqlalchemy import func
from sqlmodel import Session, select

import instruments
from api.audit.service import record
from api.auth import policy
from api.auth.service import Actor
from api.errors import Unprocessable
from api.inputguard import decode_upload
from api.licensed.models import LicensedContent
from api.licensed.schemas import LicensedRead

log = logging.getLogger("peerlens.licensed")

WHAT = "upload licensed instrument content"
#: Instruments whose scoring or form depends on uploaded content (checked before scoring them).
LICENSED_CODES = frozenset(i.code for i in instruments.all_instruments() if not i.wording_shipped) | {"pam13"}
_lock = threading.Lock()
_applied = {"max_id": 0}  # newest row this process has applied


def _apply(row: LicensedContent) -> None:
    import io

    if row.kind == "wording":
        instruments.load_wording(row.instrument, io.StringIO(row.content))
    else:
        instruments.load_calibration(io.StringIO(row.content), instrument=row.instrument, scale=row.scale)


def _latest(session: Session) -> list[LicensedContent]:
    rows = session.exec(select(LicensedContent).order_by(LicensedContent.id)).all()
    newest: dict[tuple[str, str, str | None], LicensedContent] = {}
    for r in rows:
        newest[(r.instrument, r.kind, r.scale)] = r
    return list(newest.values())


def _apply_all(session: Session) -> int:
    n = 0
    for row in _latest(session):
        try:
            _apply(row)
            n += 1
        except instruments.InstrumentError as exc:
            log.warning("licensed %s of %s could not be applied (%s)", row.kind, row.instrument, exc)
    return n


def load_licensed(engine) -> int:
    """Apply every stored upload to this process (application and worker start-up)."""
    try:
        with Session(engine) as session:
            top = session.exec(select(func.max(LicensedContent.id))).one()
            with _lock:
                n = _apply_all(session)
                _applied["max_id"] = top or 0
            return n
    except Exception as exc:  # noqa: BLE001 - an unmigrated database has no such table yet
        log.debug("licensed content not loaded (%s)", type(exc).__name__)
        return 0


def applied_up_to(top: int | None) -> bool:
    """Whether this process has applied every upload up to the id ``top`` (what :func:`refresh`
    reads), for callers that read ``max(id)`` in a statement of their own."""
    return (top or 0) <= _applied["max_id"]


def refresh(session: Session) -> None:
    """Apply uploads made by another process since this one last looked (one indexed ``max``)."""
    top = session.exec(select(func.max(LicensedContent.id))).one() or 0
    if top > _applied["max_id"]:
        with _lock:
            _apply_all(session)
            _applied["max_id"] = top


def upload(
    session: Session,
    instrument: str,
    kind: str,
    data: bytes | str,
    actor: Actor,
    *,
    scale: str | None = None,
) -> LicensedContent:
    """Validate, store and apply a licensed wording or calibration CSV (admins only; flushes).

    Raises
    ------
    Unprocessable
        Unknown instrument (``path.instrument``), wording that ships with Peerlens, no lookup scale,
        or a CSV the library refuses (``body.file``, the library's message naming the lines).
    """
    policy.ensure_admin(actor, WHAT)
    try:
        inst = instruments.get(instrument)
    except instruments.InstrumentError:
        raise Unprocessable(["path", "instrument"], "unknown instrument", "unknown_instrument") from None
    text = (
        decode_upload(data, ["body", "file"], message="the file must be UTF-8 CSV") if isinstance(data, bytes) else data
    )
    if not text.strip():
        raise Unprocessable(["body", "file"], "the file is empty", "empty_file")
    if kind == "wording" and inst.wording_shipped:
        raise Unprocessable(
            ["path", "instrument"], f"the wording of {instrument} ships with Peerlens", "wording_shipped"
        )
    if kind == "calibration" and not any(s.method == "lookup" for s in inst.scales):
        raise Unprocessable(
            ["path", "instrument"], f"{instrument} has no scale scored from a calibration table", "no_lookup_scale"
        )
    row = LicensedContent(
        instrument=instrument,
        kind=kind,
        scale=scale,
        content=text,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        rows=max(len([ln for ln in text.splitlines() if ln.strip()]) - 1, 0),
        uploaded_by=actor.user_id,
    )
    with _lock:
        try:
            _apply(row)  # validates; registers only when the whole file is valid
        except instruments.InstrumentError as exc:
            raise Unprocessable(["body", "file"], str(exc), "invalid_licensed_file") from None
        session.add(row)
        session.flush()
        _applied["max_id"] = max(_applied["max_id"], row.id or 0)
    record(
        session,
        actor,
        "upload",
        "licensed_content",
        row.id,
        after={"instrument": instrument, "kind": kind, "scale": scale, "rows": row.rows, "sha256": row.sha256},
    )
    return row


def to_read(row: LicensedContent) -> LicensedRead:
    return LicensedRead(
        id=row.id or 0,
        instrument=row.instrument,
        kind=row.kind,
        scale=row.scale,
        rows=row.rows,
        sha256=row.sha256,
        uploaded_at=row.uploaded_at,
    )


def list_content(session: Session, actor: Actor) -> list[LicensedRead]:
    """Every upload, newest last (no content: the licensed text stays in the database)."""
    policy.ensure_admin(actor, "list licensed instrument content")
    return [to_read(r) for r in session.exec(select(LicensedContent).order_by(LicensedContent.id)).all()]
