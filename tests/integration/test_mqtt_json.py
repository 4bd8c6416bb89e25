"""JsonDevices against a real mosquitto: the shipped profiles' samples, refused input with exact
counts, availability from silence and from a will, device clocks in s, ms and ISO 8601.

Each test runs ``JsonDevices.run()`` in-process as a task and sends what it emits through the
gateway's own stages (scale, device state), as the daemon does, into a queue. A test that must
know a message was refused publishes a good one after it on the same connection and waits for
that (the broker keeps the order of one publisher's QoS 1 messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from drivers.mqtt_json.devices import JsonDevices
from drivers.mqtt_json.mapping import REASONS
from gateway.config.loader import validate
from gateway.config.mqtt_devices import LocalBrokerConfig
from gateway.config.mqtt_json import BUILTIN_JSON_PROFILES, MqttJsonDeviceConfig
from gateway.core.clock import ManualClock
from gateway.core.devices import DeviceStates
from gateway.core.items import Item
from gateway.core.messages import DeviceStatus, Quality, Sample
from gateway.pipeline.chain import Pipeline
from gateway.pipeline.stages import Scale, Track
from gateway.transport.mqtt import Endpoint, Retry, Session, Status
from tests.support.daemon import REPO
from tests.support.mosquitto import Mosquitto
from tests.support.proxy import MqttProxy

T0 = 1733551202.0  # two seconds after the shipped samples' time (2024-12-07 06:00:00 UTC)
_ids = itertools.count()
PROFILES = sorted(
    p for p in BUILTIN_JSON_PROFILES.glob("*.yaml") if "kind: mqtt_json" in p.read_text()
)
DOC = REPO / "docs" / "devices.md"


def sample(path: Path) -> tuple[str, str]:
    """(topic, payload) of the sample a profile's header comment documents."""
    text = path.read_text(encoding="utf-8")
    m = re.search(r"^# Sample payload \(topic (\S+)\):\n#\n((?:#   .*\n)+)#\n", text, re.M)
    assert m is not None, f"{path.name}: no '# Sample payload (topic ...):' block"
    return m.group(1), "".join(line[4:] for line in m.group(2).splitlines(keepends=True))


def entries(local: dict[str, Any], *devices: dict[str, Any]) -> list[MqttJsonDeviceConfig]:
    """Entries as ``cgw check-config`` loads them (profiles merged in)."""
    cfg = validate(
        {
            "gateway": {"site_id": "s1", "gateway_id": "gw1"},
            "store": {"path": "/nonexistent/b.db"},
            "upstream": {"mqtt": {"host": "127.0.0.1"}},
            "local_broker": local,
            "devices": [{"kind": "mqtt_json", **d} for d in devices],
        },
        REPO,
    )
    return [d for d in cfg.devices if isinstance(d, MqttJsonDeviceConfig)]


def local(broker: Mosquitto) -> dict[str, Any]:
    return {"host": broker.host, "port": broker.port, "keepalive": 5, "reconnect_max": 1}


class Rig:
    """A running ``JsonDevices`` and what reached the end of its pipeline."""

    def __init__(self, configs: list[MqttJsonDeviceConfig], broker: Mosquitto, wall: float):
        self.clock = ManualClock(wall=wall)
        self.states = DeviceStates()
        for c in configs:
            for d in c.device_ids:
                self.states.register(d, "mqtt_json")
        self.out: asyncio.Queue[Item] = asyncio.Queue()
        self.component = JsonDevices(
            LocalBrokerConfig.model_validate(local(broker)),
            configs,
            client_id=f"cgw-test-json-{next(_ids)}",
            clock=self.clock,
            count=self.states.count,
            gauge=self.states.set,
            tick=0.01,
        )
        points = {d: {p.name: p for p in c.active_points} for c in configs for d in c.device_ids}

        def collect(item: Item) -> Item:
            self.out.put_nowait(item)
            return item

        self.emit = Pipeline([Scale(points), Track(self.states), collect])

    async def next(self, kind: type[Item] = Sample) -> Any:
        """The next item of type ``kind`` (others are skipped)."""
        async with asyncio.timeout(10):
            while not isinstance(item := await self.out.get(), kind):
                pass
        return item


@contextlib.asynccontextmanager
async def running(rig: Rig) -> AsyncIterator[Rig]:
    task = asyncio.create_task(rig.component.run(rig.emit), name="test:driver:mqtt_json")
    ready = asyncio.create_task(rig.component.connected.wait(), name="test:ready")
    try:
        await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        assert ready.done(), "the component did not subscribe within 10 s"
        yield rig
    finally:
        ready.cancel()
        task.cancel()
        await asyncio.wait({task, ready})


@contextlib.asynccontextmanager
async def device(host: str, port: int, **kw: Any) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(host, port, identifier=f"dev-{next(_ids)}", timeout=5, **kw) as c:
        yield c


async def send(client: aiomqtt.Client, topic: str, payload: bytes | str | dict[str, Any]) -> None:
    data = json.dumps(payload) if isinstance(payload, dict) else payload
    await client.publish(topic, data, qos=1)


def values(s: Sample) -> dict[str, Any]:
    return {r.name: r.value for r in s.readings}


# -- the shipped profiles ------------------------------------------------------------------------

EXPECTED: dict[str, dict[str, dict[str, Any]]] = {
    "env-station-json": {
        "es-01": {"pm25": 35, "pm10": 62, "temperature": 21.4, "humidity": 48.5, "noise": 52.3}
    },
    "dtu-meter-json": {
        "E-0301": {"energy": 5321.47, "voltage": 229.8, "status": 0},
        "W-0301": {"volume": 128.063, "status": 0},
    },
    "gas-detector-json": {"gd-0201": {"lel": 12.5, "alarm": True, "fault": 0}},
}
SAMPLE_TS = {"env-station-json": 1733551200.123}  # the others: 1733551200 exactly


def test_each_profile_is_documented_with_its_sample() -> None:
    assert {p.stem for p in PROFILES} == set(EXPECTED)
    docs = " ".join(DOC.read_text(encoding="utf-8").split())
    for path in PROFILES:
        topic, payload = sample(path)
        assert " ".join(payload.split()) in docs, f"{path.stem}: docs/devices.md lacks its sample"
        assert topic in docs


async def test_every_shipped_profile_decodes_its_documented_sample(mosquitto: Mosquitto) -> None:
    configs = []
    for path in PROFILES:
        topic, _ = sample(path)
        ids = sorted(EXPECTED[path.stem])
        named = {"devices": ids} if len(ids) > 1 else {}
        entry = {"id": ids[0] if len(ids) == 1 else path.stem, "topic": topic}
        configs += entries(local(mosquitto), entry | {"profile": path.stem} | named)
    rig = Rig(configs, mosquitto, T0)
    async with running(rig), device(mosquitto.host, mosquitto.port) as dev:
        for path in PROFILES:
            topic, payload = sample(path)
            await send(dev, topic, payload)
            for device_id, expected in EXPECTED[path.stem].items():
                got = await rig.next()
                assert got.device == device_id
                assert values(got) == pytest.approx(expected)
                assert {r.quality for r in got.readings} == {Quality.GOOD}
                assert got.ts == SAMPLE_TS.get(path.stem, 1733551200.0)
    assert rig.component.rejected == dict.fromkeys(REASONS, 0)
    state = rig.states.snapshot()["E-0301"]
    assert (state.online, state.points["energy"].unit) == (True, "kWh")
    assert state.counters["clock_skew_s"] == -2.0


# -- refused input -------------------------------------------------------------------------------


async def test_unknown_devices_and_bad_payloads_are_refused_and_counted(
    mosquitto: Mosquitto,
) -> None:
    configs = entries(
        local(mosquitto),
        {"id": "gas", "topic": "gas/+/data", "device_from_topic": 1, "devices": ["gd-0201"],
         "profile": "gas-detector-json", "max_payload": 256},
        {"id": "dtu", "topic": "dtu/+/report", "devices": ["E-0301"], "profile": "dtu-meter-json"},
    )  # fmt: skip
    rig = Rig(configs, mosquitto, 1733551200.0)
    good = {"lel": 3.0, "alarm": 0, "fault": 0, "ts": 1733551200}
    async with running(rig), device(mosquitto.host, mosquitto.port) as dev:
        await send(dev, "gas/gd-9999/data", good)  # a stranger, twice
        await send(dev, "gas/gd-9999/data", good)
        await send(dev, "gas/gd-0201/data", json.dumps(good | {"pad": "x" * 300}))  # 256 B cap
        await send(dev, "gas/gd-0201/data", b'{"lel": 3.0, "alarm":')  # cut short
        await send(dev, "gas/gd-0201/data", b"\xff\xfe{}")
        await send(dev, "gas/gd-0201/data", good | {"lel": None})  # missing
        await send(dev, "gas/gd-0201/data", good | {"lel": "3.0"})  # a string, not a number
        await send(dev, "gas/gd-0201/data", good | {"alarm": 2})  # neither 1 nor 0
        meters = [{"addr": "E-0301", "ept": 100, "st": 0}, {"addr": "X-9", "ept": 5, "st": 0}]
        await send(dev, "dtu/DTU-1/report", {"time": "2024-12-07T14:00:00+08:00", "meters": meters})
        assert (await rig.next()).device == "E-0301"  # the known meter of that message
        await send(dev, "gas/gd-0201/data", good)  # the fence
        assert (await rig.next()).device == "gd-0201"
    assert rig.component.rejected == dict.fromkeys(REASONS, 0) | {
        "unknown_device": 3,
        "too_large": 1,
        "not_json": 1,
        "not_utf8": 1,
        "missing_field": 1,
        "wrong_type": 2,
    }
    snap = rig.states.snapshot()
    assert set(snap) == {"gd-0201", "E-0301"}  # no state for gd-9999 or X-9
    assert snap["gd-0201"].counters["rejected"] == 6
    assert "rejected" not in snap["E-0301"].counters
    assert snap["gd-0201"].points["lel"].value == 3.0


async def test_a_value_outside_its_range_is_kept_with_quality_bad(mosquitto: Mosquitto) -> None:
    configs = entries(local(mosquitto), {"id": "gd-1", "topic": "gas/gd-1/data",
                                         "profile": "gas-detector-json"})  # fmt: skip
    rig = Rig(configs, mosquitto, 1733551200.0)
    async with running(rig), device(mosquitto.host, mosquitto.port) as dev:
        await send(dev, "gas/gd-1/data", {"lel": 140, "alarm": True, "fault": 0, "ts": 1733551200})
        got = await rig.next()
    assert {r.name: r.quality for r in got.readings}["lel"] is Quality.BAD
    assert rig.states.snapshot()["gd-1"].counters["implausible"] == 1


# -- availability --------------------------------------------------------------------------------


async def test_silence_turns_a_device_offline_and_a_message_brings_it_back(
    mosquitto: Mosquitto,
) -> None:
    entry = {"id": "es-01", "topic": "env/es-01/up", "profile": "env-station-json"}
    configs = entries(local(mosquitto), entry | {"interval": 10})
    rig = Rig(configs, mosquitto, T0)
    _, payload = sample(BUILTIN_JSON_PROFILES / "env-station-json.yaml")
    async with running(rig), device(mosquitto.host, mosquitto.port) as dev:
        await send(dev, "env/es-01/up", payload)
        assert (await rig.next(DeviceStatus)).online
        await rig.next()
        rig.clock.advance(29)  # 3 x 10 s is the timeout
        await send(dev, "env/es-01/up", payload)
        await rig.next()  # heard again just in time: no offline in between
        rig.clock.advance(30)
        offline = await rig.next(DeviceStatus)
        assert (offline.online, offline.reason) == (False, "timeout: no data for 30 s")
        assert offline.ts == T0 + 59  # when the deadline passed, not when the timer noticed
        assert rig.states.snapshot()["es-01"].online is False
        await send(dev, "env/es-01/up", payload)
        back = await rig.next(DeviceStatus)
    assert back.online
    assert rig.states.snapshot()["es-01"].online is True


async def test_a_will_on_the_status_topic_turns_the_device_offline_at_once(
    mosquitto: Mosquitto, mqtt_proxy: MqttProxy
) -> None:
    entry = {"id": "gas", "topic": "gas/+/data", "status_topic": "gas/+/status"}
    named = {"device_from_topic": 1, "devices": ["gd-0201"], "profile": "gas-detector-json"}
    configs = entries(local(mosquitto), entry | named)
    rig = Rig(configs, mosquitto, T0)
    # the detector: a retained "online" on connect, "offline" as its will (the session helper
    # of the gateway does exactly that)
    detector = Session(
        Endpoint("127.0.0.1", mqtt_proxy.port, "gd-0201", persistent=False, timeout=5),
        Retry(0.1, 0.2),
        label="detector",
        down="",
        status=Status("gas/gd-0201/status", str.encode),
    )
    async with running(rig):
        powered = asyncio.create_task(detector.run(stay), name="test:detector")
        try:
            assert (await rig.next(DeviceStatus)).online  # its birth: a heartbeat
            await mqtt_proxy.refuse(True)
            mqtt_proxy.abort_all()  # the detector loses power: no DISCONNECT, the will goes
            offline = await rig.next(DeviceStatus)
        finally:
            powered.cancel()
            await asyncio.wait({powered})
    assert (offline.device, offline.online, offline.reason) == ("gd-0201", False, "will: offline")
    assert rig.states.snapshot()["gd-0201"].online is False


async def stay(_: aiomqtt.Client) -> None:
    """A device's session that only keeps its link up."""
    await asyncio.Event().wait()


# -- device clocks -------------------------------------------------------------------------------


def clocked(fmt: str, scope: str = "message") -> dict[str, Any]:
    return {
        "id": f"t-{fmt}",
        "topic": f"t/{fmt}",
        "payload": {"time": {"path": "t", "format": fmt, "scope": scope}},
        "points": [{"name": "v", "path": "v"}],
    }


@pytest.mark.parametrize(
    ("fmt", "stamp", "believed"),
    [
        ("epoch_s", 1733551190, 1733551190.0),
        ("epoch_ms", 1733551190250, 1733551190.25),
        ("iso8601", "2024-12-07T13:59:50+08:00", 1733551190.0),
        ("iso8601", "2024-12-07T05:59:50Z", 1733551190.0),
        ("iso8601", "2024-12-07T13:59:50", None),  # no zone: not read
        ("epoch_s", 946684800, None),  # 2000-01-01: a clock that lost its time
        ("epoch_s", "1733551190", None),  # text where a number is mapped
    ],
)
async def test_device_times_in_seconds_milliseconds_and_iso_with_zone(
    mosquitto: Mosquitto, fmt: str, stamp: Any, believed: float | None
) -> None:
    configs = entries(local(mosquitto), clocked(fmt))
    rig = Rig(configs, mosquitto, 1733551200.0)
    async with running(rig), device(mosquitto.host, mosquitto.port) as dev:
        await send(dev, f"t/{fmt}", {"t": stamp, "v": 1})
        got = await rig.next()
    counters = rig.states.snapshot()[f"t-{fmt}"].counters
    if believed is None:
        assert got.ts == 1733551200.0  # the arrival time stands in
        assert counters["time_ignored"] == 1
        assert "clock_skew_s" not in counters
    else:
        assert got.ts == believed
        assert counters["clock_skew_s"] == pytest.approx(believed - 1733551200.0)
        assert "time_ignored" not in counters
