"""Fault finding 1: a full disk is a state of the store, not an exit.

The store runs on a small tmpfs mounted by the test (CI runs as root; elsewhere the tests are
skipped with the reason). A ballast file then takes the rest of the disk, as a log or another
program would. Every count is exact: what was offered is stored, evicted (gap-reported) or
dropped (counted), and every alarm is delivered.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.core.messages import Lane, Point, Quality, Record
from gateway.store import Store, StoreFullError
from tests.support.disk import ballast, small_disk

MIB = 1024 * 1024
POINTS = tuple(Point(f"p{i}", 1.5 * i, "ug/m3", Quality.GOOD) for i in range(8))


def files_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def telemetry(n: int) -> Record:
    return Record(Lane.TELEMETRY, "telemetry/d1", 1.9e9 + n, True, "d1", points=POINTS)


def alarm(n: int) -> Record:
    return Record(Lane.ALARM, f"alarm/a{n}", 1.9e9 + n, True, "b1", fields={"n": n})


__all__ = ["small_disk"]  # the fixture


async def test_the_quota_is_checked_against_the_disk_at_start(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.store"):
        store = await Store.open(small_disk / "b.db", quota=64 * MIB, reserve=MIB, sinks=["mqtt"])
    try:
        quota = store.stats().quota_bytes
        assert 0 < quota <= 0.4 * 4 * MIB
        assert f"quota {64 * MIB} bytes configured, {quota} effective" in caplog.text
        offered = 0
        for n in range(12_000):  # far more than the disk holds: the quota evicts first
            store.add(telemetry(n))
            offered += 1
            if n % 500 == 499:
                await store.flush()
        await store.flush()
        st = store.stats()
        stored = (await store.count_rows())[Lane.TELEMETRY]
        assert st.evicted > 0
        assert stored + st.evicted + st.dropped == offered
        assert st.problem == ""
    finally:
        await store.close()
    on_disk = files_size(small_disk)
    print(f"files {on_disk} bytes for a quota of {quota}")
    assert on_disk <= 1.5 * quota  # page slack, indexes and the WAL count too


async def test_a_disk_filled_by_someone_else_keeps_alarms_and_recovers(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await Store.open(small_disk / "b.db", quota=64 * MIB, reserve=MIB, sinks=["mqtt"])
    quota = store.stats().quota_bytes
    offered = 0
    try:
        for n in range(300):
            store.add(telemetry(n))
            offered += 1
        await store.flush()
        weight = ballast(small_disk)  # while the store is far below its quota
        alarms_waiting = 0
        for n in range(40):  # the disk is full: telemetry and alarms keep coming
            for m in range(50):
                store.add(telemetry(10_000 + 50 * n + m))
                offered += 1
            store.add(alarm(n))
            try:
                await store.flush()
            except StoreFullError:
                alarms_waiting += 1
        st = store.stats()
        assert st.quota_bytes < quota  # lowered to what the disk holds
        assert "the disk is full" in caplog.text
        if alarms_waiting:  # nothing fitted even after evicting: said so, alarms in memory
            assert "disk full" in st.problem
        weight.unlink()  # the other program's file goes away
        await store.flush()
        assert store.stats().problem == ""
        got = []
        while rows := await store.fetch("mqtt", 500):
            got += rows
            await store.ack(
                "mqtt",
                {ln: max(r.id for r in rows if r.lane is ln) for ln in {r.lane for r in rows}},
            )
        alarms = [r.fields["n"] for r in got if r.lane is Lane.ALARM]
        assert alarms == list(range(40))  # every alarm, in order, none lost
        st = store.stats()
        delivered = sum(1 for r in got if r.lane is Lane.TELEMETRY)
        assert delivered + st.evicted + st.dropped == offered
    finally:
        await store.close()
