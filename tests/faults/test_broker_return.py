"""Fault finding 11: the first alarm goes out within 5 s of a broker's return.

The real daemon with its default reconnect settings, two real mosquitto brokers (upstream and
local, both persisting sessions across a restart) and a real MQTT button. During the outage the
broker's port is held by a ``DeadPort`` until the gateway has tried five times, so its backoff
is where a long outage leaves it; then mosquitto starts again on the same port and the test
measures "broker back -> alarm upstream". Exact counts: one press, one raised alarm.
"""

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.support.daemon import Daemon, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.outage import DeadPort
from tests.support.subscriber import Recorder

pytestmark = pytest.mark.slow
PREFIX = "cgw/s1/gw1"
TARGET = 5.0  # seconds from the broker's return to the alarm upstream (issue 14, finding 11)


def config(store: Path, upstream: int, local: int, **mqtt: Any) -> dict[str, Any]:
    """One MQTT button on the local broker; both brokers with the default reconnect policy.

    ``mqtt`` adds to the upstream section (``keepalive=5``).
    """
    return {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(store), "quota": "16MiB", "reserve": "1MiB"},
        "upstream": {"mqtt": {"host": "127.0.0.1", "port": upstream, **mqtt}},
        "local_broker": {"host": "127.0.0.1", "port": local},
        "devices": [
            {
                "kind": "mqtt_button",
                "id": "flat-12-sos",
                "topic": "flat12/sos",
                "profile": "sos-state-json",
            }
        ],
        "alarms": {"rules": [{"kind": "contact", "id": "sos", "device": "flat-12-sos"}]},
    }


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[tuple[Mosquitto, Mosquitto]]:
    up = Mosquitto(tmp_path / "upstream", persistence=True)
    local = Mosquitto(tmp_path / "local", persistence=True)
    with up, local:
        yield up, local


@pytest.fixture
def started(tmp_path: Path, daemon: Daemon, brokers: tuple[Mosquitto, Mosquitto]) -> Daemon:
    up, local = brokers
    write_config(daemon.config, config(tmp_path / "buf.db", up.port, local.port))
    daemon.start()
    return daemon


async def press(port: int, event_id: str, topic: str = "flat12/sos") -> None:
    """A press on ``topic``, QoS 1, acknowledged by the local broker."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"button-{topic}") as client:
        payload = {"id": event_id, "evt": "sos", "state": "pressed"}
        await client.publish(topic, json.dumps(payload).encode(), qos=1)


def raised(rec: Recorder) -> list[dict[str, Any]]:
    docs = [json.loads(m.payload) for m in rec.on(f"{PREFIX}/alarm/")]
    return [d for d in docs if d["state"] == "raised"]


async def ready(daemon: Daemon) -> None:
    """The buttons subscribed (however many) and the upstream session up."""
    await daemon.wait_log("button topics on local broker")
    await daemon.wait_log("connected to upstream broker")


async def test_upstream_return_to_first_alarm(
    started: Daemon, brokers: tuple[Mosquitto, Mosquitto]
) -> None:
    up, local = brokers
    daemon = started

    # The platform's subscriber keeps a persistent session, and reconnects only once the
    # broker is back: what it gets then was queued for it, so its clock never runs early.
    def platform() -> Recorder:
        return Recorder(up.host, up.port, f"{PREFIX}/alarm/#", identifier="pf", clean_session=False)

    async with platform():
        await ready(daemon)
    await up.stop_async()
    await press(local.port, "e-1")
    await daemon.wait_log("ALARM")  # raised and stored while the uplink is down
    async with DeadPort(up.port) as dead:
        await dead.wait_attempts(5)
    back = time.monotonic()
    await up.start_async()
    async with platform() as rec:
        got = await rec.wait_for(lambda _: len(raised(rec)) >= 1, timeout=30)
    first = next(m for m in got if m.topic.startswith(f"{PREFIX}/alarm/"))
    took = first.at - back
    print(f"upstream back -> first alarm upstream: {took:.2f} s")
    assert took < TARGET
    assert len(raised(rec)) == 1  # one press, one alarm


async def test_local_return_to_first_alarm(
    started: Daemon, brokers: tuple[Mosquitto, Mosquitto]
) -> None:
    up, local = brokers
    daemon = started
    async with Recorder(up.host, up.port, f"{PREFIX}/alarm/#") as rec:
        await ready(daemon)
        await local.stop_async()
        async with DeadPort(local.port) as dead:
            await dead.wait_attempts(5)
        back = time.monotonic()
        await local.start_async()
        await press(local.port, "e-2")  # queued by the broker for the gateway's session
        got = await rec.wait_for(lambda _: len(raised(rec)) >= 1, timeout=30)
    first = next(m for m in got if m.topic.startswith(f"{PREFIX}/alarm/"))
    took = first.at - back
    print(f"local broker back -> first alarm upstream: {took:.2f} s")
    assert took < TARGET
    assert len(raised(rec)) == 1
