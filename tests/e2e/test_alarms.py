"""Alarms end to end: an MQTT emergency button pressed on the local broker reaches the
platform as an alarm, once, ahead of a 100,000-message telemetry backlog."""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.core.contract import telemetry_record
from gateway.core.messages import Quality, Reading, Sample
from gateway.store.outbox import Store
from tests.support.daemon import Daemon, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.schemas import validate_message
from tests.support.subscriber import Received, Recorder

pytestmark = pytest.mark.slow
PREFIX = "cgw/s1/gw1"


def config(store: Path, port: int) -> dict[str, Any]:
    """No sensors, one MQTT call button in the lobby; the local and upstream broker coincide."""
    return {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(store), "quota": "256MiB", "reserve": "8MiB"},
        "upstream": {"mqtt": {"host": "127.0.0.1", "port": port, "reconnect_max": 2.0}},
        "local_broker": {"host": "127.0.0.1", "port": port},
        "devices": [
            {
                "kind": "mqtt_button",
                "id": "lobby-sos",
                "topic": "lobby/sos",
                "profile": "sos-state-json",
            }
        ],
        "alarms": {"rules": [{"kind": "contact", "id": "sos", "device": "lobby-sos"}]},
    }


def alarms(msgs: list[Received]) -> list[dict[str, Any]]:
    return [
        validate_message(PREFIX, m.topic, m.payload)
        for m in msgs
        if m.topic.startswith(f"{PREFIX}/alarm/")
    ]


class Seen:
    """An incremental count of messages whose topic contains ``part`` (the recorder re-checks
    its predicate on every message: rescanning 100,000 would make the wait quadratic)."""

    def __init__(self, part: str) -> None:
        self.part = part
        self.done = 0
        self.n = 0

    def count(self, msgs: Sequence[Received]) -> int:
        for m in msgs[self.done :]:
            self.n += self.part in m.topic
        self.done = len(msgs)
        return self.n


async def press(port: int, event_id: str) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="vendor-button") as client:
        payload = {"id": event_id, "evt": "sos", "state": "pressed"}
        await client.publish("lobby/sos", json.dumps(payload).encode(), qos=1)


async def backlog(path: Path, n: int) -> None:
    """Fill the store with ``n`` telemetry messages, as after a long uplink outage."""
    store = await Store.open(path, quota=256 * 1024**2, reserve=8 * 1024**2, sinks=["mqtt"])
    try:
        for i in range(n):
            reading = Reading("pm25", i % 500, "ug/m3", Quality.GOOD)
            store.add(telemetry_record(Sample("pm-1", 1.8e9 + i, (reading,)), True))
            if i % 10_000 == 9_999:
                await store.flush()  # the store holds at most 50,000 uncommitted rows
        await store.flush()
        assert store.stats().dropped == 0
    finally:
        await store.close()


async def test_button_press_overtakes_a_100k_backlog(
    tmp_path: Path, mosquitto: Mosquitto, daemon: Daemon
) -> None:
    n = 100_000
    db = tmp_path / "buf.db"
    await backlog(db, n)
    write_config(daemon.config, config(db, mosquitto.port))
    async with Recorder(mosquitto.host, mosquitto.port, f"{PREFIX}/#") as rec:
        daemon.start()
        await daemon.wait_log("subscribed to 1 button topics")
        await rec.wait_count(100, f"{PREFIX}/telemetry/", timeout=30)  # the backlog drains
        await press(mosquitto.port, "e-1")
        await press(mosquitto.port, "e-1")  # the vendor repeats its event: one alarm only
        seen = Seen("/alarm/")
        got = await rec.wait_for(lambda m: seen.count(m) >= 2, timeout=30)
        telemetry_before = sum(1 for m in got if "/telemetry/" in m.topic)
        tele = Seen("/telemetry/")
        await rec.wait_for(lambda m: tele.count(m) >= n, timeout=120)
        rc, _ = daemon.terminate()
    assert rc == 0
    assert telemetry_before < n // 2, "the alarm waited behind the backlog"
    found = alarms(rec.messages)
    assert [a["state"] for a in found] == ["raised", "notified"]  # "log" is the default channel
    assert {a["alarm_id"] for a in found} == {found[0]["alarm_id"]}
    assert (found[0]["device"], found[0]["kind"], found[0]["latched"]) == (
        "lobby-sos",
        "contact",
        True,
    )
