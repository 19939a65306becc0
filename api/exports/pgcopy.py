"""PostgreSQL plumbing shared by the export paths: COPY read at the libpq level, and read-ahead.

:func:`copy_out` reads a whole ``COPY … TO STDOUT`` into one buffer; :func:`copy_rows` hands its
rows over as they arrive (the SQL path streams them). :func:`prefetched` runs a producer one step
ahead on a thread of its own so that the database and the encoder (or the socket) overlap.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def copy_out(raw: Any, sql: str) -> bytearray:
    """The whole output of a ``COPY … TO STDOUT`` on a psycopg connection, read at the libpq level
    (see :func:`copy_blocks`)."""
    buf = bytearray()
    for block, _rows in copy_blocks(raw, sql, block_size=1 << 62):
        buf += block
    return buf


def copy_blocks(raw: Any, sql: str, block_size: int = 1 << 19) -> Iterator[tuple[bytearray, int]]:
    """The output of a ``COPY … TO STDOUT`` as ``(block, rows)`` pairs of at least ``block_size``
    bytes (the last may be shorter), read at the libpq level.

    psycopg's ``Copy`` iterator costs several microseconds of Python per row (one libpq message
    each); this loop takes the rows as libpq hands them over and waits on the socket (without the
    GIL, so another thread keeps running) only when none is buffered. Same connection, same
    transaction and snapshot; a server error is raised as psycopg raises it. Closing the generator
    early cancels the statement and leaves the connection ready (its transaction then failed).
    """
    import select

    import psycopg
    from psycopg import pq

    pgconn = raw.pgconn
    pgconn.send_query(sql.encode())
    # The COPY_OUT result arrives first; get_result would block, so wait for it on the socket too.
    while pgconn.is_busy():
        select.select([pgconn.socket], [], [])
        pgconn.consume_input()
    first = pgconn.get_result()
    if first is None or first.status != pq.ExecStatus.COPY_OUT:
        _drain(pgconn)
        raise psycopg.DatabaseError(_error(first, "COPY did not start"))
    finished = False
    try:
        buf, rows = bytearray(), 0
        get = pgconn.get_copy_data
        while True:
            nbytes, data = get(1)
            if nbytes > 0:
                buf += data
                rows += 1
                if len(buf) >= block_size:
                    yield buf, rows
                    buf, rows = bytearray(), 0
            elif nbytes == 0:
                select.select([pgconn.socket], [], [])
                pgconn.consume_input()
            else:
                break
        finished = True
        results = _drain(pgconn)
        failed = [r for r in results if r.status != pq.ExecStatus.COMMAND_OK]
        if nbytes == -2 or failed:
            raise psycopg.DatabaseError(_error(failed[0] if failed else None, "COPY failed"))
        if buf:
            yield buf, rows
    finally:
        if not finished:
            _abandon(pgconn)


def _abandon(pgconn: Any) -> None:
    """Stop a COPY whose reader went away: cancel it on the server and read what is left, so the
    connection can be rolled back and reused instead of streaming the rest of the rows."""
    import select

    cancel = getattr(pgconn, "get_cancel", None)
    if cancel is not None:
        cancel().cancel()
    while True:
        nbytes, _data = pgconn.get_copy_data(1)
        if nbytes == 0:
            select.select([pgconn.socket], [], [])
            pgconn.consume_input()
        elif nbytes < 0:
            break
    _drain(pgconn)


def _drain(pgconn: Any) -> list:
    """The remaining results of the current query (None ends them)."""
    import select

    out: list[Any] = []
    while True:
        while pgconn.is_busy():
            select.select([pgconn.socket], [], [])
            pgconn.consume_input()
        res = pgconn.get_result()
        if res is None:
            return out
        out.append(res)


def _error(res: Any, fallback: str) -> str:
    message = res.error_message.decode(errors="replace").strip() if res is not None else ""
    return message or fallback


_DONE = object()


def prefetched(items: Iterator[Any], depth: int = 1) -> Iterator[Any]:
    """``items`` produced one step ahead on a thread of their own.

    At most ``depth`` items wait in the queue (memory: one batch more than a plain loop). The
    session the producer reads from is used by that thread alone while it runs; closing this
    generator (the client went away, an encoder failed) stops the producer and waits for it before
    returning, and an exception in the producer is raised here, in the caller's thread.
    """
    import queue
    import threading

    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # handed to the consumer, re-raised there
            failure.append(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
            while not stop.is_set():
                try:
                    q.put(_DONE, timeout=0.1)
                    break
                except queue.Full:
                    continue

    worker = threading.Thread(target=run, name="export-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                break
            yield item
        if failure:
            raise failure[0]
    finally:
        stop.set()
        worker.join()
