"""Integrity of streamed exports: a client can always tell a complete file from a truncated one.

Once a response has started (status 200, headers sent), a failure cannot change its status. Two
guards cover that:

* :func:`primed` produces the first chunk before the response starts, so a failure in planning,
  the first query or the writer's header is an ordinary error status;
* every streamed export is audited when it ends with the byte count and SHA-256 of what was sent
  and whether it completed (:func:`api.exports.service.audited_stream`). :func:`receipt` reads it
  back by the request id the response carries (``X-Request-Id``), and the
  ``Peerlens-Export-Receipt`` header names its URL. ``peerlens download`` compares a download
  with its receipt and refuses a file that does not match.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from sqlmodel import Session, select

from api.audit.models import AuditEvent


def primed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """``chunks`` with its first chunk already produced, so that a failure in the first batch (the
    plan, the first query, the writer's header) is an error status before any byte is sent."""
    try:
        first = next(chunks)
    except StopIteration:
        return iter(())
    return itertools.chain([first], chunks)


def first_batch_read(frames: Iterator[Any]) -> Iterator[Any]:
    """Read the first batch now (a plain function, not a generator): with :func:`primed`, a
    failure in the first batch happens before the response starts, even though writers emit
    their header before they pull a batch."""
    try:
        first = next(frames)
    except StopIteration:
        return iter(())
    return itertools.chain([first], frames)


def receipt(session: Session, study_id: int, request_id: str) -> dict[str, Any] | None:
    """The receipt of the export made by request ``request_id``: ``complete``, ``rows``, ``bytes``
    and ``sha256`` of what the server sent (None while the export is streaming or when unknown).

    A client compares them with what it received; a stream cut short (the connection dropped, a
    batch failed after the 200) shows as ``complete: false`` or a byte count or digest that differ.
    """
    event = session.exec(
        select(AuditEvent)
        .where(AuditEvent.study_id == study_id, AuditEvent.action == "export", AuditEvent.request_id == request_id)
        .order_by(AuditEvent.id.desc())
    ).first()
    if event is None:
        return None
    after = event.after or {}
    return {
        "request_id": request_id,
        "study_id": study_id,
        "complete": bool(after.get("complete")),
        "error": after.get("error"),
        "shape": after.get("shape"),
        "format": after.get("format"),
        "rows": after.get("rows"),
        "bytes": after.get("bytes"),
        "sha256": after.get("sha256"),
        "at": event.at,
    }
