"""Fault-matrix row F29: SIGKILL at each named failpoint, then a clean restart, loses nothing.

The real daemon, real mosquitto brokers (upstream and local, persisting sessions) and real
peers; the daemon kills itself at the failpoint (``tests.support.faulty``, "failpoint <name>"
logged first), and the next start runs without it. What every run must show:

- a press is raised exactly once (one alarm id upstream and in the store), whatever the point;
- the alarm lane upstream is every seq from 1 to the last, each at least once (resent copies
  are duplicates by key, never a hole), under one epoch (the store was never replaced);
- telemetry is exact: the readings received plus the readings the gap reports count are every
  seq the store gave out;
- a store killed mid-migration is migrated by the next start and keeps every row.

One run per point in the suite; ``CGW_FAILPOINT_RUNS=N`` runs each N times, which is what
``bench/failpoints.py --runs 50`` does (the matrix asks 50) before printing its table.
"""

import asyncio
import json
import os
import shutil
import signal
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.core.messages import Lane, Point, Quality, Record
from gateway.demo.sim import Simulator
from gateway.store import Store
from tests.e2e.test_daemon import counting_devices
from tests.e2e.test_operate import wait_metrics
from tests.faults.test_broker_return import PREFIX, brokers, config, press, raised, ready
from tests.support.daemon import Daemon, gateway_config, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port
from tests.support.subscriber import Received, Recorder

pytestmark = pytest.mark.slow
__all__ = ["brokers"]  # the fixture

FIXTURES = Path(__file__).parent.parent / "fixtures"
RUNS = range(int(os.environ.get("CGW_FAILPOINT_RUNS", "1")))  # the bench asks for more
PRESS_POINTS = (
    "after_insert_before_commit",
    "after_commit_before_ack_source",
    "after_publish_before_puback",
    "after_puback_before_mark_sent",
    "during_checkpoint",
)


def platform(up: Mosquitto) -> Recorder:
    """The platform's subscriber, with a persistent session: nothing published is missed."""
    return Recorder(up.host, up.port, f"{PREFIX}/#", identifier="pf", clean_session=False)


def lane(msgs: Sequence[Received], name: str) -> list[dict[str, Any]]:
    docs = [json.loads(m.payload) for m in msgs if m.topic != f"{PREFIX}/status"]
    return [d for d in docs if d.get("lane") == name]


async def killed(daemon: Daemon, point: str) -> None:
    assert daemon.proc is not None
    rc = await asyncio.to_thread(daemon.proc.wait, 30)
    assert rc == -signal.SIGKILL, daemon.log_path.read_text()[-2000:]
    assert any(e["msg"] == f"failpoint {point}" for e in daemon.logs())


async def drained(monitor: int) -> None:
    """Until the store holds nothing the upstream sink has not had confirmed."""
    await wait_metrics(
        f"http://127.0.0.1:{monitor}", lambda t: 'cgw_sink_backlog_rows{sink="mqtt"} 0.0' in t
    )


def restart(daemon: Daemon, n: int) -> None:
    """Start again without the failpoint, logging to a file of its own."""
    daemon.fault = None
    daemon.log_path = daemon.log_path.with_name(f"gw-{n}.log")
    daemon.start()


async def press_run(
    daemon: Daemon, up: Mosquitto, local: Mosquitto, point: str, monitor: int
) -> list[Received]:
    """A press with the failpoint in, a clean restart; what the platform got."""
    async with platform(up) as first:
        daemon.fault = point
        daemon.start()
        await ready(daemon)
        await press(local.port, "e-1")
        if point == "during_checkpoint":  # the store checkpoints as the daemon stops
            await first.wait_for(lambda _: len(raised(first)) == 1)
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGTERM)
        await killed(daemon, point)
    before = len(raised(first))
    async with platform(up) as second:
        restart(daemon, 2)
        await ready(daemon)
        await second.wait_for(lambda _: before + len(raised(second)) >= 1)
        await drained(monitor)
        rc, _ = daemon.terminate()  # a clean stop
    assert rc == 0
    return [*first.messages, *second.messages]


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("point", PRESS_POINTS)
async def test_a_kill_at_a_failpoint_raises_the_press_once_and_loses_no_seq(
    point: str, run: int, tmp_path: Path, daemon: Daemon, brokers: tuple[Mosquitto, Mosquitto]
) -> None:
    up, local = brokers
    db = tmp_path / "buf.db"
    monitor = free_port()
    write_config(daemon.config, config(db, up.port, local.port) | {"monitor": {"port": monitor}})
    got = await press_run(daemon, up, local, point, monitor)
    alarms = lane(got, "alarm")
    ids = {a["alarm_id"] for a in alarms}
    assert len(ids) == 1, alarms  # one press, one alarm
    assert {a["epoch"] for a in alarms} == {alarms[0]["epoch"]}  # the store was kept
    seqs = {a["seq"] for a in alarms}
    assert seqs == set(range(1, max(seqs) + 1)), sorted(seqs)  # no hole in the lane
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT id FROM alarms").fetchall() == [(ids.pop(),)]
        assert conn.execute("SELECT count(*) FROM outbox WHERE lane=?", ("alarm",)).fetchone()
        assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)


QUOTA = 64 * 1024  # the smallest store the config takes


async def prefill(db: Path) -> None:
    """Telemetry up to near the quota, as an earlier run with the uplink down left it."""
    store = await Store.open(db, quota=QUOTA, reserve=QUOTA // 8, sinks=["mqtt"])
    try:
        n = 0
        while store.stats().used_bytes < 0.95 * (QUOTA - QUOTA // 8):
            points = (Point("counter", float(n), "", Quality.GOOD),)
            store.add(
                Record(Lane.TELEMETRY, "telemetry/dev-9", 1.9e9 + n, True, "dev-9", points=points)
            )
            n += 1
            if n % 20 == 0:
                await store.flush()
        await store.flush()
        assert store.stats().evicted == 0
    finally:
        await store.close()


@pytest.mark.parametrize("run", RUNS)
async def test_a_kill_during_eviction_keeps_the_telemetry_accounting_exact(
    run: int, tmp_path: Path, daemon: Daemon, brokers: tuple[Mosquitto, Mosquitto]
) -> None:
    """Uplink down and a 128 KiB store: the oldest telemetry is evicted for room; the kill
    comes inside that transaction. After the restart every seq the store gave out is received
    or counted by a gap report, exactly."""
    up, _ = brokers
    db = tmp_path / "buf.db"
    monitor = free_port()
    await up.stop_async()  # the uplink is down while the store fills
    await prefill(db)
    async with Simulator(counting_devices([1, 2]), port=0, interval=0.1) as sim:
        doc = gateway_config(db, up.port, sim.port, [1, 2], interval=0.1, timeout=0.1)
        doc["store"].update(quota=f"{QUOTA}B", reserve=f"{QUOTA // 8}B")
        write_config(daemon.config, doc | {"monitor": {"port": monitor}})
        daemon.fault = "during_eviction"
        daemon.start()
        await killed(daemon, "during_eviction")
        await up.start_async()
        async with platform(up) as rec:
            restart(daemon, 2)
            await daemon.wait_log("connected to upstream broker")
            sim.silent = {1, 2, 3, 4}  # no new readings: the backlog drains to nothing
            await drained(monitor)
            rc, _ = daemon.terminate()
    assert rc == 0
    telemetry = {d["seq"] for d in lane(rec.messages, "telemetry")}
    gaps = [d for d in lane(rec.messages, "event") if "count" in d and "reason" in d]
    assert gaps, "the quota evicted nothing: the failpoint was never reached"
    assert len(telemetry) + sum(g["count"] for g in gaps) == max(telemetry)


@pytest.mark.parametrize("run", RUNS)
async def test_a_kill_during_a_migration_is_migrated_by_the_next_start(
    run: int, tmp_path: Path, daemon: Daemon, mosquitto: Mosquitto
) -> None:
    """A store of the oldest release: the second schema step is killed before its COMMIT; the
    next start finishes the upgrade and delivers the rows the old release left."""
    db = tmp_path / "buf.db"
    shutil.copy(FIXTURES / "store_v0.db", db)
    expected = json.loads((FIXTURES / "expected_v0.json").read_text())
    write_config(daemon.config, gateway_config(db, mosquitto.port, free_port(), []))
    daemon.fault = "during_migration"
    daemon.start()
    await killed(daemon, "during_migration")
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)  # the first step only
    owed = {(m["lane"], m["seq"]) for m in expected["mqtt"]}

    def keys(msgs: Sequence[Received]) -> set[tuple[str, int]]:
        docs = [json.loads(m.payload) for m in msgs if m.topic != f"{PREFIX}/status"]
        return {(d["lane"], d["seq"]) for d in docs if "seq" in d}

    async with Recorder(mosquitto.host, mosquitto.port, f"{PREFIX}/#") as rec:
        restart(daemon, 2)
        try:
            await rec.wait_for(lambda m: owed <= keys(m))
        except TimeoutError:
            pytest.fail(f"never delivered: {sorted(owed - keys(rec.messages))}")
        rc, _ = daemon.terminate()
    assert rc == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT id, open FROM alarms").fetchall() == [("a1", 1)]
