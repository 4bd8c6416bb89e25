"""The console's live feed: a whole picture first, then only what changed; laggards dropped."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from gateway.alarms.model import Alarm, Transition
from gateway.console import live
from gateway.console.live import Hub
from gateway.console.ports import ConsolePorts
from gateway.core.catalogue import CATALOGUE, negotiate
from gateway.core.clock import ManualClock
from gateway.core.devices import DeviceStates
from gateway.core.messages import Json, Quality, Reading, Sample
from tests.unit.test_ops import healthy


class Desk:
    """The console's ``AlarmDesk`` port with no alarm open."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.ready.set()

    def open_alarms(self) -> list[Alarm]:
        return []

    async def acknowledge(self, alarm_id: str, by: str) -> list[Transition]:
        return []

    async def reset(self, alarm_id: str, by: str) -> list[Transition]:
        return []

    async def response_report(self, since: float, until: float | None = None) -> dict[str, Any]:
        return {"all": {"alarms": 0}}


def ports(states: DeviceStates) -> ConsolePorts:
    def audit(action: str, target: str, fields: Mapping[str, Json]) -> None:
        raise AssertionError("the feed audits nothing")

    return ConsolePorts("s1", "Asia/Shanghai", Desk(), states, healthy, audit)


def events(sub: live.Subscriber) -> list[tuple[str, Any]]:
    out = []
    while not sub.queue.empty():
        item = sub.queue.get_nowait()
        assert item is not None
        kind, data = item.split("\n")[:2]
        out.append((kind.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def reading(device: str, value: float, quality: Quality = Quality.GOOD) -> Sample:
    return Sample(device, 1.9e9, (Reading("humidity", value, "%RH", quality),))


async def test_a_subscriber_gets_the_whole_picture_then_only_the_devices_that_changed() -> None:
    states = DeviceStates()
    for d in ("th-1", "th-2"):
        states.register(d, "modbus", bus="rs485-1", profile="th-rs485")
    states.register("btn", "mqtt_button")
    hub = Hub(ports(states), ManualClock())
    task = asyncio.create_task(hub.run())
    try:
        await asyncio.sleep(0)  # the hub takes its first look
        installer, guard = hub.subscribe(devices=True), hub.subscribe(devices=False)
        first = events(installer)
        assert [k for k, _ in first] == ["devices", "alarms", "status"]
        assert first[0][1]["all"] is True
        assert sorted(d["id"] for d in first[0][1]["devices"]) == ["btn", "th-1", "th-2"]
        assert [k for k, _ in events(guard)] == ["alarms", "status"]
        states.sample(reading("th-1", 130.0, Quality.BAD))  # crossed wiring: out of range
        got: list[tuple[str, Any]] = []
        async with asyncio.timeout(5):
            while not any(kind == "devices" for kind, _ in got):
                await asyncio.sleep(0.01)
                got += events(installer)
        (data,) = [d for k, d in got if k == "devices"]
        assert data["all"] is False
        ((view,),) = [data["devices"]]
        assert view["id"] == "th-1"
        assert view["bus"] == "rs485-1"
        assert view["points"][0]["implausible"] is True
        assert all(k != "devices" for k, _ in events(guard))  # a guard sees no devices
    finally:
        task.cancel()


async def test_a_subscriber_that_does_not_keep_up_is_dropped_with_an_end_mark() -> None:
    states = DeviceStates()
    states.register("th-1", "modbus")
    hub = Hub(ports(states), ManualClock())
    sub = hub.subscribe(devices=True)
    for _ in range(live.QUEUE):
        hub._send(live.sse("status", {}))
    assert sub not in hub.subscribers
    assert hub.dropped == 1
    items = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
    assert items[-1] is None  # the stream ends; the page reconnects with a fresh picture


def test_the_browser_language_picks_the_catalogue_language() -> None:
    assert negotiate("zh-CN,zh;q=0.9,en;q=0.8") == "zh-CN"
    assert negotiate("zh-TW") == "zh-CN"
    assert negotiate("fr-FR,en-GB;q=0.7") == "en"
    assert negotiate("fr-FR") == "en"
    assert negotiate("") == "en"
    assert CATALOGUE["zh-CN"]["console.nav.duty"] == "值班"
