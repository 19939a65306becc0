"""Tamper evidence for the audit trail: a keyed MAC on every row, and a keyed hash chain sealing
the rows in order.

Two steps, so that writing an audit event never waits for another transaction:

1. **At insert** (:func:`api.audit.service.record`, in the transaction of the change it describes)
   each row gets ``mac = "v1:<nonce>:<HMAC-SHA256(key, nonce + canonical row)>"``. Nothing is
   shared between concurrent writers: no lock, no read of the previous row. The MAC covers every
   column but the id, so a row altered or forged without the key fails, and ``mac`` is unique, so
   a copy of a genuine row cannot be inserted again.
2. **Sealing** (:func:`seal`: ``peerlens audit seal``, every round of ``peerlens worker`` and a
   background thread of ``peerlens serve``) appends the rows not yet sealed to ``audit_seal`` in
   id order: ``chain_k = HMAC(key, chain_{k-1} | seq | event id | mac)``. One sealer at a time
   (an advisory lock on PostgreSQL; SQLite serialises writers anyway); a row committed late,
   with an id lower than rows already sealed, is simply sealed in a later round.

:func:`verify` (``peerlens audit verify``) recomputes every MAC and the whole chain and reports:

* ``altered`` — a row whose MAC no longer matches its content;
* ``forged`` — a row without a valid MAC (inserted without the key);
* ``deleted`` — a sealed row that is gone, or a chain link (seal) removed or rewritten;
* ``backdated`` — a row whose time is earlier than a sealing round that did not see it (by more
  than ``max_delay``, the longest a transaction may run): it was inserted later than it claims;
* ``truncated`` — with ``expect_head`` (a ``seq:hash`` noted earlier, e.g. printed by a previous
  verify into the operations log), a chain that no longer reaches that head.

The key is ``PEERLENS_AUDIT_KEY`` or, when unset, derived from ``PEERLENS_SECRET_KEY``. Whoever
holds it can write valid rows: with the database roles of the README (the service role may not
UPDATE, DELETE, TRUNCATE or ALTER the audit tables), the MAC and chain make tampering by the table
owner, a DBA or a restored backup visible.

Examples
--------
>>> k = b"k" * 32
>>> m = row_mac(k, {"at": "2026-01-01T00:00:00.000000+00:00", "action": "create"}, nonce="00" * 8)
>>> check_mac(k, {"at": "2026-01-01T00:00:00.000000+00:00", "action": "create"}, m)
True
>>> check_mac(k, {"at": "2026-01-01T00:00:00.000000+00:00", "action": "delete"}, m)
False
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger("peerlens.audit")

VERSION = "v1"
GENESIS = "0" * 64
# The columns the MAC covers, in this order (everything but the id).
FIELDS = (
    "at",
    "actor_id",
    "actor_role",
    "action",
    "entity",
    "entity_id",
    "study_id",
    "site_id",
    "before",
    "after",
    "reason",
    "request_id",
    "source",
)
SEAL_LOCK = 0x5045_4552  # PostgreSQL advisory lock id of the sealer ("PEER")


def audit_key(settings=None) -> bytes:
    """The MAC key: ``PEERLENS_AUDIT_KEY``, else derived from ``PEERLENS_SECRET_KEY``."""
    if settings is None:
        from api.config import get_settings

        settings = get_settings()
    explicit = getattr(settings, "audit_key", None)
    if explicit is not None and explicit.get_secret_value():
        return explicit.get_secret_value().encode()
    return hmac.new(settings.secret_key.encode(), b"peerlens-audit-mac-v1", hashlib.sha256).digest()


_KEYS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def register_key(engine, key: bytes) -> None:
    """Use ``key`` for audit rows written, sealed and verified through ``engine`` (an engine made
    from explicit settings, e.g. by :func:`api.db.engine_from_settings`)."""
    _KEYS[engine] = key


def key_for(bind) -> bytes:
    """The key of the engine behind ``bind`` (a session's bind, a connection or an engine)."""
    engine = getattr(bind, "engine", bind)
    key = _KEYS.get(engine)
    return key if key is not None else audit_key()


def jsonable(value: Any) -> Any:
    """``value`` as it comes back from a JSON column (tuples become lists, keys strings)."""
    return None if value is None else json.loads(json.dumps(value, default=str))


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def canonical(row: dict[str, Any]) -> bytes:
    """The bytes the MAC covers: the :data:`FIELDS` of a row, as sorted compact ASCII JSON."""
    values = []
    for name in FIELDS:
        v = row.get(name)
        values.append(_stamp(v) if isinstance(v, datetime) else v)
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def row_mac(key: bytes, row: dict[str, Any], nonce: str | None = None) -> str:
    """``v1:<nonce>:<hex HMAC>`` of a row (a fresh random nonce unless given)."""
    nonce = nonce or secrets.token_hex(8)
    digest = hmac.new(key, nonce.encode() + b"|" + canonical(row), hashlib.sha256).hexdigest()
    return f"{VERSION}:{nonce}:{digest}"


def check_mac(key: bytes, row: dict[str, Any], mac: str | None) -> bool:
    if not mac or mac.count(":") != 2:
        return False
    version, nonce, _ = mac.split(":")
    return version == VERSION and hmac.compare_digest(row_mac(key, row, nonce), mac)


def link(key: bytes, previous: str, seq: int, event_id: int, mac: str | None) -> str:
    """One chain link: ``HMAC(key, previous | seq | event id | mac)``."""
    return hmac.new(key, f"{previous}|{seq}|{event_id}|{mac or ''}".encode(), hashlib.sha256).hexdigest()


def _row(event) -> dict[str, Any]:
    return {name: getattr(event, name) for name in FIELDS}


# ---- sealing ----------------------------------------------------------------------------------

# Rows sealed longer ago than this bound the search for unsealed ones (a transaction does not stay
# open for a day); ``full=True`` searches everything.
_LOOKBACK = timedelta(days=1)


def seal(engine, key: bytes | None = None, *, full: bool = False, now: datetime | None = None) -> int:
    """One sealing round: append every unsealed row to the chain, in id order; returns how many.

    Every link of a round carries the same ``sealed_at`` (the round's start), which is what
    :func:`verify` compares row times with. Runs in its own transactions on ``engine``; a
    concurrent sealer on PostgreSQL makes this round return 0 at once rather than wait.
    """
    from sqlmodel import Session

    key = key or key_for(engine)
    now = now or datetime.now(UTC)
    total = 0
    while True:
        with Session(engine) as session:
            n = _seal_batch(session, key, now, full, 10_000)
            session.commit()  # this function opened the session: it commits (DESIGN.md)
        if n is None:
            return total
        total += n
        if n < 10_000:
            if total:
                log.info("audit chain: %d row(s) sealed", total)
            return total


def _seal_batch(session, key: bytes, now: datetime, full: bool, limit: int) -> int | None:
    from sqlalchemy import func, select, text

    from api.audit.models import AuditEvent, AuditSeal

    if session.get_bind().dialect.name == "postgresql":
        got = session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": SEAL_LOCK}).scalar_one()
        if not got:
            return None  # another sealer holds the chain's end
    head = session.execute(select(AuditSeal).order_by(AuditSeal.seq.desc()).limit(1)).scalars().first()
    previous, seq = (head.chain, head.seq) if head is not None else (GENESIS, 0)
    stmt = (
        select(AuditEvent.id, AuditEvent.mac)
        .outerjoin(AuditSeal, AuditSeal.event_id == AuditEvent.id)
        .where(AuditSeal.seq.is_(None))
        .order_by(AuditEvent.id)
        .limit(limit)
    )
    if not full:
        floor = session.execute(
            select(func.max(AuditSeal.event_id)).where(AuditSeal.sealed_at < now - _LOOKBACK)
        ).scalar()
        if floor is not None:
            stmt = stmt.where(AuditEvent.id > floor)
    rows = session.execute(stmt).all()
    for event_id, mac in rows:
        seq += 1
        previous = link(key, previous, seq, event_id, mac)
        session.add(AuditSeal(seq=seq, event_id=event_id, chain=previous, sealed_at=now))
    session.flush()
    return len(rows)


class Sealer:
    """A daemon thread sealing every ``interval`` seconds (``peerlens serve`` runs one)."""

    def __init__(self, engine, interval: float = 60.0, key: bytes | None = None):
        import threading

        self.engine, self.interval, self.key = engine, interval, key
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-sealer", daemon=True)

    def start(self) -> Sealer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                seal(self.engine, self.key)
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.error("audit sealing failed (%s); retrying in %.0f s", type(exc).__name__, self.interval)
            self._stop.wait(self.interval)


# ---- verification ------------------------------------------------------------------------------


@dataclass
class Report:
    """What :func:`verify` found; ``ok`` when every list is empty."""

    rows: int = 0
    sealed: int = 0
    unsealed: int = 0
    head: str | None = None  # "seq:hash" of the last link
    altered: list[int] = field(default_factory=list)
    forged: list[int] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    backdated: list[int] = field(default_factory=list)
    truncated: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.altered or self.forged or self.deleted or self.backdated or self.truncated)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "sealed": self.sealed,
            "unsealed": self.unsealed,
            "head": self.head,
            "altered": self.altered,
            "forged": self.forged,
            "deleted": self.deleted,
            "backdated": self.backdated,
            "truncated": self.truncated,
        }

    def lines(self) -> list[str]:
        out = [
            f"{self.rows} audit rows, {self.sealed} sealed, {self.unsealed} awaiting the next seal; head {self.head}"
        ]
        for name in ("altered", "forged", "backdated"):
            ids = getattr(self, name)
            if ids:
                shown = ", ".join(map(str, ids[:20])) + (" …" if len(ids) > 20 else "")
                out.append(f"{name}: {len(ids)} row(s): {shown}")
        out += [f"deleted: {d}" for d in self.deleted[:20]]
        if self.truncated:
            out.append(f"truncated: {self.truncated}")
        out.append("OK: the audit trail is intact" if self.ok else "FAILED: the audit trail was tampered with")
        return out


def verify(
    session,
    key: bytes | None = None,
    *,
    max_delay: timedelta = timedelta(hours=1),
    expect_head: str | None = None,
) -> Report:
    """Check every row's MAC and the whole chain (read-only; see the module docstring)."""
    from sqlalchemy import select

    from api.audit.models import AuditEvent, AuditSeal

    key = key or key_for(session.get_bind())
    report = Report()
    seals = {s.event_id: s for s in session.execute(select(AuditSeal).order_by(AuditSeal.seq)).scalars()}
    by_seq = sorted(seals.values(), key=lambda s: s.seq)
    # The chain itself: consecutive seq from 1, each link recomputed from the row it seals.
    macs: dict[int, str | None] = {}
    times: dict[int, datetime] = {}
    for event in session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars():
        report.rows += 1
        macs[event.id] = event.mac
        times[event.id] = event.at
        row = _row(event)
        if event.mac is None or not event.mac.startswith(f"{VERSION}:"):
            report.forged.append(event.id)
        elif not check_mac(key, row, event.mac):
            # Either its content changed after insert or it was written without the key; a
            # sealed row was there when sealed, so it was altered.
            (report.altered if event.id in seals else report.forged).append(event.id)
    previous, expected = GENESIS, 1
    run_times: list[datetime] = []  # sealed_at of each earlier sealing round, ascending
    for s in by_seq:
        if s.seq != expected:
            report.deleted.append(f"chain links {expected}-{s.seq - 1} are missing")
        if s.event_id not in macs:
            report.deleted.append(f"row {s.event_id} (link {s.seq}) is gone")
            previous = s.chain  # carry on from the stored link to report what else is wrong
        else:
            want = link(key, previous, s.seq, s.event_id, macs[s.event_id])
            if not hmac.compare_digest(want, s.chain):
                report.deleted.append(f"link {s.seq} (row {s.event_id}) does not follow from the one before")
            previous = s.chain
            # Back-dated: older than a sealing round that ran before this row was sealed.
            earlier = [t for t in run_times if t < s.sealed_at]
            if earlier and times[s.event_id] < earlier[-1] - max_delay:
                report.backdated.append(s.event_id)
        if not run_times or run_times[-1] != s.sealed_at:
            run_times.append(s.sealed_at)
        expected = s.seq + 1
    report.sealed = len(by_seq)
    report.unsealed = report.rows - sum(1 for e in macs if e in seals)
    last_round = run_times[-1] if run_times else None
    if last_round is not None:
        report.backdated += [
            eid
            for eid, at in times.items()
            if eid not in seals and at < last_round - max_delay and eid not in report.forged
        ]
    report.head = f"{by_seq[-1].seq}:{by_seq[-1].chain}" if by_seq else None
    if expect_head:
        seq_text, _, digest = expect_head.partition(":")
        match = next((s for s in by_seq if str(s.seq) == seq_text.strip()), None)
        if match is None or match.chain != digest.strip():
            report.truncated = f"the chain no longer reaches the recorded head {expect_head}"
    report.altered.sort()
    report.forged.sort()
    report.backdated = sorted(set(report.backdated))
    return report
