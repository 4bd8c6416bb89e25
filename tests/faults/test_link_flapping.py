"""Fault F04: a flapping link loses nothing and reconnects once per reset, never in a storm.

The real daemon publishes to a real mosquitto through ``MqttProxy``, which resets (TCP RST)
every connection after a pause drawn uniformly from 1-3 s (seeded: the same schedule every
run) for ``SECONDS`` s, while ``RATE`` readings a second and ``PRESSES`` button presses flow in
on the local broker. Exact counts once the link is left alone: every reading number of every
station arrived (0 lost, 0 gap-reported), every press one raised alarm; the duplicates the
platform saw are counted by the dedup key and are at most the copies the proxy forwarded
twice (a resent row is a new PUBLISH with the same topic and payload; the gateway never sets
DUP, see docs/reliability.md); each reset costs exactly one new connection, made no sooner
than the backoff's shortest pause after it.
"""

import asyncio
from pathlib import Path

import pytest

from tests.faults.link import brokers, config, dead_letters, everything, proxy, running
from tests.support.daemon import Daemon
from tests.support.mosquitto import Mosquitto
from tests.support.proxy import MqttProxy

pytestmark = pytest.mark.slow
__all__ = ["brokers", "proxy"]  # the fixtures
SEED = 4
SECONDS, RATE, PRESSES = 15.0, 40.0, 5
SHORTEST_PAUSE = 1.0 * (1 - 0.25)  # gateway.sinks.mqtt.RECONNECT_BASE less the full jitter


async def test_a_flapping_link_loses_nothing_and_never_storms(
    tmp_path: Path, daemon: Daemon, brokers: tuple[Mosquitto, Mosquitto], proxy: MqttProxy
) -> None:
    up, local = brokers
    doc = config(tmp_path / "buf.db", proxy.port, local.port)
    async with running(daemon, doc, up, local) as (rec, feed):
        resets, _ = await asyncio.gather(
            proxy.flap(SEED, (1.0, 3.0), SECONDS), feed.run(SECONDS, RATE, PRESSES)
        )
        tally = await everything(rec, feed)
        rc, _ = daemon.terminate()
    assert rc == 0
    print(
        f"{len(resets)} resets ({proxy.resets} cut a live connection), "
        f"{proxy.connections} connections; {feed.readings} readings, {tally.telemetry} arrived, "
        f"{tally.gaps} gap-reported, duplicates {dict(tally.duplicates)}; proxy: "
        f"{proxy.publish_count} PUBLISH, {proxy.resent_count} resent, {proxy.dup_publish_count} DUP"
    )
    assert tally.missing(feed.sent) == 0
    assert tally.telemetry == feed.readings  # no reading twice under two keys, none invented
    assert tally.gaps == 0
    assert (tally.refused, dead_letters(daemon)) == ([], [])  # an outage is no refusal
    assert len(tally.raised) == PRESSES
    assert tally.dups <= proxy.resent_count
    assert proxy.dup_publish_count == 0  # a fresh client per connection: resends are new packets
    # one connection per cut one, plus the first: no storm
    assert proxy.connections == proxy.resets + 1
    for cut in resets:
        after = [t for t in proxy.accepted_at if t > cut]
        assert not after or after[0] - cut >= SHORTEST_PAUSE - 0.05
