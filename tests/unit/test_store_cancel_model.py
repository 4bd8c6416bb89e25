"""Random store operations, cancelled at random points: memory always matches the file.

Each operation may run to its end, be cancelled after a few turns of the event loop, or be
cancelled while the store thread is inside its transaction (an SQLite trigger stops the
thread there). After each one, once the store thread is idle, what the store holds in memory
(bytes used, newest ids, confirmed cursors, counters, backlog, what ``fetch`` hands out) is
compared with a fresh read of the file.
"""

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Awaitable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.messages import Json, Lane, Point, Quality, Record
from gateway.store import Row, Store, StoreFullError

QUOTA = 24 * 1024
RESERVE = 4 * 1024
SINKS = ("mqtt", "influx")
LANES = {"influx": [Lane.TELEMETRY]}


def rec(lane: Lane, n: int, size: int, expires: float | None) -> Record:
    device = f"d{n % 3}"
    if lane is Lane.TELEMETRY:
        points = (Point("pad", "x" * size, "", Quality.GOOD),)
        return Record(lane, f"t/{device}", 1e9 + n, True, device, expires=expires, points=points)
    fields: dict[str, Json] = {"n": n, "pad": "x" * size}
    return Record(lane, f"t/{device}", 1e9 + n, True, device, expires=expires, fields=fields)


class Gate:
    """Stops the store thread inside its next write transaction, when armed."""

    def __init__(self) -> None:
        self.armed = False
        self.reached = asyncio.Event()
        self._open = threading.Event()
        self._loop = asyncio.get_running_loop()

    def _block(self) -> int:
        if self.armed:
            self.armed = False
            self._loop.call_soon_threadsafe(self.reached.set)
            self._open.wait(timeout=30)
        return 0

    async def install(self, store: Store) -> None:
        def create(conn: sqlite3.Connection) -> None:
            conn.create_function("gate", 0, self._block)
            for table, event in (("outbox", "INSERT"), ("outbox", "DELETE"), ("cursors", "UPDATE")):
                conn.execute(
                    f"CREATE TEMP TRIGGER IF NOT EXISTS gate_{table}_{event} AFTER {event}"
                    f" ON {table} BEGIN SELECT gate(); END"
                )

        await store.transact(create)

    def arm(self) -> None:
        self.armed = True
        self.reached.clear()
        self._open.clear()

    def release(self) -> None:
        self.armed = False
        self._open.set()


async def run_op(op: Awaitable[object], cancel: int | None, gate: Gate) -> None:
    """Run ``op``: to its end (None), cancelled after ``cancel`` loop turns, or mid-write (-1)."""
    if cancel == -1:
        gate.arm()
    task = asyncio.ensure_future(op)
    try:
        if cancel == -1:
            reached = asyncio.ensure_future(gate.reached.wait())
            await asyncio.wait({task, reached}, return_when=asyncio.FIRST_COMPLETED)
            reached.cancel()
        elif cancel is not None:
            for _ in range(cancel):
                await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, StoreFullError):
            await task
    finally:
        gate.release()


async def check(store: Store, path: Path) -> None:
    """Memory against a fresh read of the file, once the store thread is idle."""
    await store.count_rows()  # queued behind every transaction handed to the thread
    conn = sqlite3.connect(path)
    try:
        used = conn.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0]
        cursors = {(s, Lane(ln)): i for s, ln, i in conn.execute("SELECT * FROM cursors")}
        counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
        top = conn.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
        on_disk = {
            ln: [
                (i, ln, seq)
                for i, seq in conn.execute(
                    "SELECT id, seq FROM outbox WHERE lane=? ORDER BY id", (int(ln),)
                )
            ]
            for ln in Lane
        }
    finally:
        conn.close()
    stats = store.stats()
    ledger = store.ledger
    assert stats.used_bytes == used
    assert stats.evicted == counters.get("evicted", 0)
    assert stats.purged == counters.get("purged", 0)
    assert {(s, ln): c for s in SINKS for ln, c in store.cursors.confirmed[s].items()} == cursors
    assert max(ledger.latest.values()) == (top[0] if top else 0)
    for ln in Lane:
        assert ledger.latest[ln] >= max((i for i, _, _ in on_disk[ln]), default=0)
    for sink in SINKS:
        store.rewind(sink)
        got: list[Row] = []
        while rows := await store.fetch(sink, 1000):
            got += rows
        store.rewind(sink)
        owed = [
            r
            for ln in store.lanes[sink]
            for r in on_disk[ln]
            if r[0] > store.cursors.confirmed[sink][ln]
        ]
        assert [(r.id, r.lane, r.seq) for r in got] == owed
        assert store.backlog(sink) >= len(owed)


cancel_st = st.one_of(st.none(), st.just(-1), st.integers(0, 4))
op_st = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(Lane), st.integers(10, 900), st.booleans()),
    st.tuples(st.just("flush"), cancel_st),
    st.tuples(st.just("transact"), st.sampled_from(Lane), st.integers(1, 3), cancel_st),
    st.tuples(st.just("send"), st.sampled_from(SINKS), st.integers(1, 30), cancel_st),
    st.tuples(st.just("purge"), st.integers(0, 60), cancel_st),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(op_st, max_size=40))
async def test_memory_matches_the_file_whatever_is_cancelled(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[object, ...]]
) -> None:
    path = tmp_path_factory.mktemp("cancel") / "buf.db"
    store = await Store.open(path, quota=QUOTA, reserve=RESERVE, sinks=SINKS, lanes=LANES)
    gate = Gate()
    n = 0
    try:
        await gate.install(store)
        for op in ops:
            n += 1
            match op:
                case ("add", Lane() as lane, int(size), bool(personal)):
                    store.add(rec(lane, n, size, 1e9 + n if personal else None))
                case ("flush", cancel):
                    await run_op(store.flush(), cancel, gate)  # type: ignore[arg-type]
                case ("transact", Lane() as lane, int(k), cancel):
                    records = [rec(lane, n * 10 + i, 200, None) for i in range(k)]
                    work = store.transact(lambda c: c.execute("SELECT 1").fetchone(), records)
                    await run_op(work, cancel, gate)  # type: ignore[arg-type]
                case ("send", str(sink), int(k), cancel):
                    rows = await store.fetch(sink, k)
                    upto = {r.lane: r.id for r in rows}
                    await run_op(store.ack(sink, upto), cancel, gate)  # type: ignore[arg-type]
                case ("purge", int(now), cancel):
                    await run_op(store.purge_expired(1e9 + now), cancel, gate)  # type: ignore[arg-type]
            await check(store, path)
    finally:
        gate.release()
        with contextlib.suppress(StoreFullError):
            await store.close()
