"""The export's read-ahead: batches produced on a thread of their own, COPY read at the libpq level."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from api.exports.pgcopy import copy_blocks
from api.exports.service import copy_out, prefetched
from tests.conftest import create_pg_database, drop_pg_database


def _threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "export-prefetch")


def test_prefetched_yields_everything_in_order():
    assert list(prefetched(iter(range(50)))) == list(range(50))
    assert list(prefetched(iter(()))) == []


def test_producer_runs_one_item_ahead_of_the_consumer():
    made: list[int] = []

    def produce():
        for i in range(5):
            made.append(i)
            yield i

    it = prefetched(produce())
    assert next(it) == 0
    deadline = time.monotonic() + 5
    while len(made) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    # one item handed over, one waiting in the queue, one made and blocked on the full queue: no more
    time.sleep(0.1)
    assert made == [0, 1, 2]
    assert list(it) == [1, 2, 3, 4]


def test_a_producer_error_is_raised_in_the_consumer_after_the_good_items():
    def produce():
        yield 1
        yield 2
        raise ValueError("batch 3 failed")

    got = []
    with pytest.raises(ValueError, match="batch 3 failed"):
        for x in prefetched(produce()):
            got.append(x)
    assert got == [1, 2]
    assert _threads() == 0


def test_closing_early_stops_and_closes_the_producer():
    closed = threading.Event()

    def produce():
        try:
            yield from range(1000)
        finally:
            closed.set()

    it = prefetched(produce())
    assert next(it) == 0
    it.close()  # the client went away
    assert closed.is_set()  # close() returns only once the producer has finished
    assert _threads() == 0


@pytest.fixture(scope="module")
def pg():
    name = create_pg_database()
    try:
        with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={name}") as conn:
            yield conn
    finally:
        drop_pg_database(name)


def test_copy_out_reads_exactly_what_psycopg_copy_reads(pg):
    sql = (
        "COPY (SELECT g, 'text ' || g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'a,\"b\"' END, now() = now() "
        "FROM generate_series(1, 20000) g) TO STDOUT WITH (FORMAT csv)"
    )
    expected = bytearray()
    with pg.cursor() as cur, cur.copy(sql) as cp:
        for block in cp:
            expected += block
    assert copy_out(pg, sql) == expected
    assert copy_out(pg, "COPY (SELECT 1 WHERE false) TO STDOUT WITH (FORMAT csv)") == b""
    assert pg.execute("SELECT 41 + 1").fetchone() == (42,)  # the connection is left ready
    pg.rollback()


def test_copy_out_raises_the_server_error_and_leaves_the_connection_usable(pg):
    with pytest.raises(psycopg.DatabaseError, match="division by zero"):
        copy_out(pg, "COPY (SELECT 1 / (g - 3) FROM generate_series(1, 5) g) TO STDOUT WITH (FORMAT csv)")
    pg.rollback()
    with pytest.raises(psycopg.DatabaseError, match="no_such_table"):
        copy_out(pg, "COPY (SELECT * FROM no_such_table) TO STDOUT")
    pg.rollback()
    assert pg.execute("SELECT 1").fetchone() == (1,)


def test_copy_blocks_counts_rows_and_closing_early_cancels_the_copy(pg):
    sql = "COPY (SELECT g, repeat('x', 50) FROM generate_series(1, 200000) g) TO STDOUT WITH (FORMAT csv)"
    blocks = list(copy_blocks(pg, "COPY (SELECT g FROM generate_series(1, 1000) g) TO STDOUT", block_size=100))
    assert sum(rows for _b, rows in blocks) == 1000 and all(len(b) >= 100 for b, _r in blocks[:-1])
    assert b"".join(b for b, _r in blocks) == b"".join(f"{g}\n".encode() for g in range(1, 1001))
    pg.rollback()
    it = copy_blocks(pg, sql, block_size=1 << 16)
    first, rows = next(it)
    assert 0 < rows < 200000
    started = time.monotonic()
    it.close()  # the client went away: the server stops instead of streaming 200,000 rows on
    assert time.monotonic() - started < 5
    pg.rollback()
    assert pg.execute("SELECT 2 + 2").fetchone() == (4,)
