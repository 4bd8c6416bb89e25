"""Fault F07: PUBACKs lost, then the connection: every row re-sent, duplicates within the window.

The real daemon publishes to a real mosquitto through ``MqttProxy``, with readings and presses
flowing in. The proxy swallows every PUBACK for ``DROP`` s, longer than the gateway's
``publish_timeout`` (``TIMEOUT``): the broker has every PUBLISH, the gateway hears of none.
Its PUBACK watchdog ends the connection after ``TIMEOUT`` s and it connects again (PUBACKs
still swallowed); then the proxy forwards PUBACKs again and resets the connection at once.

Exact counts: every reading number arrived and every press raised one alarm (0 lost); the
rows the platform got twice are counted by the dedup key and are at most the copies the proxy
forwarded twice, and at most one in-flight window (``max_inflight``) per connection lost; an
alarm pressed while PUBACKs are swallowed (the telemetry share of the window full, no slot ever
freed) reaches the platform within ``PROMPT`` s: the broker has it, and the gateway sent it at
once instead of waiting behind the telemetry; one pressed as the connection is reset (its
session then waiting for the PUBACK of its birth) arrives within ``AFTER_RESET`` s.
"""

import asyncio
import time
from pathlib import Path

import pytest

from tests.faults.link import Tally, brokers, config, dead_letters, everything, proxy, running
from tests.support.daemon import Daemon
from tests.support.mosquitto import Mosquitto
from tests.support.proxy import MqttProxy
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow
__all__ = ["brokers", "proxy"]  # the fixtures
TIMEOUT, DROP = 3.0, 7.0  # s: the gateway's publish_timeout; how long PUBACKs are swallowed
RATE, PRESSES = 40.0, 2
PROMPT = 1.0  # s: press -> alarm upstream while PUBACKs are swallowed (the broker has it)
AFTER_RESET = 3.0  # s: press at the reset -> alarm upstream (one pause, a connect, a publish)
WINDOW = 30  # max_inflight in the config below
TELEMETRY = 20  # its telemetry share (telemetry_inflight, the default)


async def test_lost_pubacks_lose_nothing_and_duplicate_at_most_the_window(
    tmp_path: Path, daemon: Daemon, brokers: tuple[Mosquitto, Mosquitto], proxy: MqttProxy
) -> None:
    up, local = brokers
    doc = config(
        tmp_path / "buf.db", proxy.port, local.port, publish_timeout=TIMEOUT, max_inflight=WINDOW
    )
    async with running(daemon, doc, up, local) as (rec, feed):
        feeding = asyncio.ensure_future(feed.run(DROP + 4.0, RATE))
        await wait_until(lambda: feed.readings >= RATE, "a second of readings")
        proxy.drop_pubacks(True)
        dropping = time.monotonic()
        # the telemetry share of the window is full and stays so: no PUBACK frees a slot
        await wait_until(lambda: proxy.dropped_pubacks >= TELEMETRY, "a full telemetry share")
        await feed.press()
        await rec.wait_for(lambda m: len(Tally.of(m).raised) >= 1, timeout=PROMPT + 2)
        noticed = await daemon.wait_log("publish timed out", timeout=TIMEOUT + 3)
        print(f"watchdog: {noticed['msg']!r} after {time.monotonic() - dropping:.1f} s")
        await wait_until(lambda: proxy.connections >= 2, "a second connection", timeout=5)
        await wait_until(lambda: time.monotonic() >= dropping + DROP, "the end of the drop", DROP)
        proxy.drop_pubacks(False)
        cut = proxy.reset_all()
        await feed.press()
        await feeding
        tally = await everything(rec, feed)
        rc, _ = daemon.terminate()
    assert rc == 0
    lost = proxy.connections - 1  # every connection but the last ended with PUBACKs missing
    print(
        f"{proxy.dropped_pubacks} PUBACKs swallowed, {proxy.connections} connections "
        f"({cut} reset); {feed.readings} readings, {tally.telemetry} arrived, duplicates "
        f"{dict(tally.duplicates)}; proxy: {proxy.publish_count} PUBLISH, "
        f"{proxy.resent_count} resent, {proxy.dup_publish_count} DUP; alarm latency "
        f"{[round(x, 2) for x in tally.latencies(feed.pressed_at)]} s"
    )
    assert proxy.dropped_pubacks > 0
    assert cut == 1
    assert tally.missing(feed.sent) == 0
    assert tally.telemetry == feed.readings
    assert tally.gaps == 0
    assert (tally.refused, dead_letters(daemon)) == ([], [])  # an outage is no refusal
    assert len(tally.raised) == PRESSES
    assert tally.dups <= proxy.resent_count
    assert tally.dups <= WINDOW * lost
    first, second = tally.latencies(feed.pressed_at)
    # before the fix the first press waited for the reconnect: 6.5 s, not the broker's answer
    assert first < PROMPT
    # the reset cut the session while its birth waited for a PUBACK: before the fix it sat
    # out the birth's whole timeout (8.2 s), now it reconnects after one pause
    assert second < AFTER_RESET
