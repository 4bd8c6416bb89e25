"""Fault F05: a slow, lossy link keeps alarms on time, grows a backlog, drains it, and never
reports anything as down.

The real daemon publishes to a real mosquitto through ``MqttProxy`` shaped like a poor
satellite or 2G link (RELIABILITY.md: "SatelliteGood"-like): ``RATE`` bytes a second each way,
``DELAY`` ± ``JITTER`` s one way. ``READINGS`` readings a second arrive on the local broker,
more than the link carries, so a telemetry backlog grows in the store; ``PRESSES`` presses
come in meanwhile. Then the shaping is lifted and the backlog drains.

Exact counts: every reading number arrived (0 lost, 0 gap-reported, duplicates 0: nothing was
cut), every press one alarm with p99 (here: the worst of them) within ``ALARM_P99`` s from the
press to the platform while the backlog grew; the backlog drained within ``DRAIN`` s of the
link's recovery; one connection all along (the slow PUBACKs never looked like a dead link),
no device and not the gateway reported offline.
"""

import time
from pathlib import Path

import pytest

from tests.faults.link import Tally, brokers, config, dead_letters, proxy, running
from tests.support.daemon import Daemon
from tests.support.mosquitto import Mosquitto
from tests.support.proxy import MqttProxy, Shape

pytestmark = pytest.mark.slow
__all__ = ["brokers", "proxy"]  # the fixtures
RATE, DELAY, JITTER = 10_000.0, 0.6, 0.05  # bytes/s each way; s one way
SECONDS, READINGS, PRESSES = 8.0, 40.0, 8
ALARM_P99 = 5.0
DRAIN = 5.0


async def test_a_slow_link_keeps_alarms_on_time_and_drains_the_backlog_after(
    tmp_path: Path, daemon: Daemon, brokers: tuple[Mosquitto, Mosquitto], proxy: MqttProxy
) -> None:
    up, local = brokers
    doc = config(tmp_path / "buf.db", proxy.port, local.port)
    async with running(daemon, doc, up, local) as (rec, feed):
        proxy.shape(Shape(RATE, DELAY, JITTER, seed=5))
        await feed.run(SECONDS, READINGS, PRESSES)
        await rec.wait_for(lambda m: len(Tally.of(m).raised) >= PRESSES, timeout=ALARM_P99)
        behind = feed.readings - Tally.of(rec.messages).telemetry
        proxy.shape(None)
        lifted = time.monotonic()
        await rec.wait_for(lambda m: Tally.of(m).telemetry >= feed.readings, timeout=DRAIN + 5)
        drained = time.monotonic() - lifted
        rc, _ = daemon.terminate()
    assert rc == 0
    tally = Tally.of(rec.messages)
    latency = sorted(tally.latencies(feed.pressed_at))
    print(
        f"{feed.readings} readings in {SECONDS:g} s, {behind} behind when the link recovered, "
        f"drained in {drained:.1f} s; alarm latency p50 {latency[len(latency) // 2]:.2f} s, "
        f"max {latency[-1]:.2f} s over {len(latency)} presses; duplicates {tally.dups}, "
        f"{proxy.connections} connection(s)"
    )
    assert behind > 0  # the link really was too slow: a backlog grew
    assert tally.missing(feed.sent) == 0
    assert tally.telemetry == feed.readings
    assert tally.gaps == 0
    assert (tally.refused, dead_letters(daemon)) == ([], [])  # an outage is no refusal
    assert tally.dups == 0
    assert len(latency) == PRESSES
    assert latency[-1] <= ALARM_P99
    assert drained <= DRAIN
    assert proxy.connections == 1
    assert tally.offline == []
    assert tally.gateway_offline == 0
