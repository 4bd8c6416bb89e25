"""Cancelling a store operation at any point leaves memory and file in agreement.

A reload restarts the alarm engine and the sinks by cancelling their tasks, so a ``transact``,
``flush`` or ``ack`` may be cancelled while its transaction is on the store thread. The
transaction still commits; what the store keeps in memory (newest id per lane, cursors, bytes
used, backlog, what ``fetch`` hands out) must follow it.
"""

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Awaitable
from pathlib import Path

from gateway.core.messages import Json, Lane, Point, Quality, Record
from gateway.store.outbox import Store

QUOTA = 64 * 1024
RESERVE = 8 * 1024


def rec(lane: Lane, n: int, size: int = 200) -> Record:
    if lane is Lane.TELEMETRY:
        points = (Point("n", n, "", Quality.GOOD), Point("pad", "x" * size, "", Quality.GOOD))
        return Record(lane, "telemetry/d1", 1e9 + n, True, "d1", points=points)
    fields: dict[str, Json] = {"n": n, "pad": "x" * size}
    return Record(lane, "alarm/a1", 1e9 + n, True, "d1", fields=fields)


class Gate:
    """Stops the store thread inside a transaction until the test opens it.

    ``install`` adds an SQLite trigger that calls back into Python whenever ``table`` gets a
    row written: the thread then reports that it is mid-transaction and waits.
    """

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self._open = threading.Event()
        self._loop = asyncio.get_running_loop()

    async def install(self, store: Store, table: str, event: str) -> None:
        def block() -> int:
            self._loop.call_soon_threadsafe(self.reached.set)
            self._open.wait(timeout=30)
            return 0

        def create(conn: sqlite3.Connection) -> None:
            conn.create_function("gate", 0, block)
            conn.execute(
                f"CREATE TEMP TRIGGER gate_{table} AFTER {event} ON {table}"
                " BEGIN SELECT gate(); END"
            )

        await store.transact(create)

    def open(self) -> None:
        self._open.set()


async def cancelled_mid_write(gate: Gate, op: Awaitable[object]) -> None:
    """Start ``op``, cancel it while its transaction is on the store thread, let it commit."""
    task = asyncio.ensure_future(op)
    try:
        await gate.reached.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        gate.open()


async def test_a_cancelled_transact_still_hands_out_its_alarm(tmp_path: Path) -> None:
    path = tmp_path / "buf.db"
    store = await Store.open(path, quota=QUOTA, reserve=RESERVE, sinks=["mqtt"])
    try:
        gate = Gate()
        await gate.install(store, "outbox", "INSERT")
        await cancelled_mid_write(gate, store.transact(lambda c: None, [rec(Lane.ALARM, 1)]))
        assert (await store.count_rows()).get(Lane.ALARM) == 1  # committed
        assert store.backlog("mqtt") == 1
        rows = await store.fetch("mqtt", 10)
        assert [(r.lane, r.seq) for r in rows] == [(Lane.ALARM, 1)]
    finally:
        await store.close()


async def test_a_cancelled_ack_frees_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "buf.db"
    store = await Store.open(path, quota=QUOTA, reserve=RESERVE, sinks=["mqtt"])
    try:
        n = 0
        while store.stats().used_bytes < (QUOTA - RESERVE) * 0.6:
            store.add(rec(Lane.TELEMETRY, n))
            n += 1
            await store.flush()
        rows = await store.fetch("mqtt", 1000)
        gate = Gate()
        await gate.install(store, "cursors", "UPDATE")
        await cancelled_mid_write(gate, store.ack("mqtt", {Lane.TELEMETRY: rows[-1].id}))
        assert (await store.count_rows()).get(Lane.TELEMETRY, 0) == 0  # committed
        assert store.backlog("mqtt") == 0
        assert store.stats().used_bytes == 0
        for i in range(n):  # as much again fits in the quota: nothing may be evicted
            store.add(rec(Lane.TELEMETRY, n + i))
        await store.flush()
        assert store.stats().evicted == 0
    finally:
        await store.close()
