"""Fault finding 10: a Modbus device that lies, against the real daemon.

A ``LyingServer`` in this process answers exception 0x02 for one register of ``dev-1`` until the
test fixes its map, and one register too few for the uint32 of ``dev-2``. The daemon must keep
polling, disable and show the refused point (health, metrics, ``cgw status``, the upstream
device status) and enable it again on its retry schedule, and never turn the short answer into
a value. Exact counts: the statuses of ``dev-1`` are exactly "disabled ghost", then "none
disabled"; every ``dev-2`` telemetry message upstream is one answered request, and not one
carries a value for the malformed point.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_operate import cgw_status, metric, wait_health, wait_metrics
from tests.support.daemon import Daemon, gateway_config, write_config
from tests.support.lying_modbus import LyingServer
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port
from tests.support.schemas import validate_message
from tests.support.subscriber import Received, Recorder

pytestmark = pytest.mark.slow
PREFIX = "cgw/s1/gw1"


def config(tmp_path: Path, broker: int, modbus: int, monitor: int) -> dict[str, Any]:
    # the lying server shares the test's process: a timeout as long as the interval allows,
    # so a busy machine adds no offline status of its own to the exact list asserted
    doc = gateway_config(tmp_path / "buf.db", broker, modbus, [], interval=0.4, timeout=0.4)
    doc["devices"] = [
        {
            "kind": "modbus",
            "id": "dev-1",
            "bus": "tcp",
            "unit_id": 1,
            "interval": 0.4,
            "disabled_retry": 1,
            "points": [{"name": "temp", "address": 0}, {"name": "ghost", "address": 5}],
        },
        {
            "kind": "modbus",
            "id": "dev-2",
            "bus": "tcp",
            "unit_id": 2,
            "interval": 0.4,
            "points": [{"name": "energy", "address": 10, "type": "uint32"}],
        },
    ]
    return {**doc, "monitor": {"port": monitor}}


def statuses(msgs: Sequence[Received], device: str) -> list[dict[str, Any]]:
    topic = f"{PREFIX}/device/{device}/status"
    return [validate_message(PREFIX, m.topic, m.payload) for m in msgs if m.topic == topic]


def telemetry(msgs: Sequence[Received], device: str) -> list[dict[str, Any]]:
    topic = f"{PREFIX}/telemetry/{device}"
    return [json.loads(m.payload) for m in msgs if m.topic == topic]


async def test_a_lying_device_is_shown_and_never_believed(
    tmp_path: Path, mosquitto: Mosquitto, daemon: Daemon
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with (
        LyingServer(registers={0: 215}, exceptions={5: 0x02}, miscount={10: -1}) as srv,
        Recorder(mosquitto.host, mosquitto.port, f"{PREFIX}/#") as rec,
    ):
        write_config(daemon.config, config(tmp_path, mosquitto.port, srv.port, port))
        daemon.start()
        health = await wait_health(url, lambda _, d: d.get("disabled") == {"dev-1": ["ghost"]})
        assert health["devices"] == {"dev-1": "online", "dev-2": "online"}
        text = await wait_metrics(
            url, lambda t: 'cgw_device_bad_frames_total{device="dev-2"} 3.0' in t
        )
        assert metric(text, "cgw_device_point_disabled", device="dev-1", point="ghost") == 1
        status = cgw_status(daemon.config)
        assert "dev-1: points disabled (refused by the device): ghost" in status.stdout
        await rec.wait_for(lambda m: len(statuses(m, "dev-1")) == 1)

        srv.exceptions.clear()  # the register map is fixed: the retry finds the point again
        await wait_health(url, lambda _, d: d.get("disabled") == {})
        await rec.wait_for(lambda m: len(statuses(m, "dev-1")) == 2)
        await rec.wait_for(
            lambda m: any(
                {p["name"] for p in t["points"]} == {"temp", "ghost"} for t in telemetry(m, "dev-1")
            )
        )
        rc, _ = daemon.terminate()
    assert rc == 0
    got = statuses(rec.messages, "dev-1")
    assert [(s["state"], s.get("disabled")) for s in got] == [
        ("online", ["ghost"]),
        ("online", None),
    ]
    dev2 = telemetry(rec.messages, "dev-2")
    asked = sum(1 for r in srv.requests if r.unit == 2)
    assert 3 <= len(dev2) <= asked
    assert {(p["value"], p["quality"]) for t in dev2 for p in t["points"]} == {(None, "comm_error")}
