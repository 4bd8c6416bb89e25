"""The local alarm path with the uplink down: a GPIO emergency button sounds the GPIO siren and
reaches staff through a webhook, and the acknowledge button silences it; all in one gateway."""

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from gateway.config import validate
from gateway.core.contract import PROVISIONAL
from gateway.core.messages import Lane
from gateway.ops.health import health
from gateway.runtime.root import Runtime
from tests.support.disk import ballast, small_disk
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port
from tests.support.schemas import validate_message
from tests.support.subscriber import Recorder
from tests.support.waiting import wait_until
from tests.support.webhook import Webhook, webhook

__all__ = ["small_disk", "webhook"]  # the fixtures

BUTTON, ACK, SIREN = 17, 27, 18


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    factory = MockFactory()
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.reset()
        Device.pin_factory = None


def config(tmp_path: Path, hook_port: int) -> dict[str, Any]:
    url = tmp_path / "guard-url"
    url.write_text(f"json://127.0.0.1:{hook_port}/alarm\n")
    url.chmod(0o600)
    return {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(tmp_path / "buf.db")},
        # nothing listens there: the uplink is down for the whole test
        "upstream": {"mqtt": {"host": "127.0.0.1", "port": free_port(), "reconnect_max": 1}},
        "devices": [
            {
                "kind": "gpio",
                "id": "hall",
                "pin_factory": "mock",
                "inputs": [
                    {"name": "sos", "pin": BUTTON, "debounce": 0.01},
                    {"name": "ack", "pin": ACK, "debounce": 0.01, "role": "ack"},
                ],
                "outputs": [{"name": "siren", "pin": SIREN, "kind": "siren"}],
            }
        ],
        "channels": [{"id": "guard", "url_file": str(url), "retries": 0, "rate": 600}],
        "alarms": {
            "rules": [{"kind": "contact", "id": "sos", "device": "hall", "input": "sos"}],
            "ladders": [{"id": "default", "tiers": [{"after": 0, "channels": ["guard"]}]}],
        },
    }


async def test_button_sounds_siren_and_notifies_staff_with_the_uplink_down(
    tmp_path: Path, pins: MockFactory, webhook: tuple[Webhook, int]
) -> None:
    hook, port = webhook
    runtime = Runtime(validate(config(tmp_path, port), tmp_path))
    stop = asyncio.Event()
    siren = pins.pin(SIREN)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(runtime.run(stop))
        await runtime.ready.wait()
        assert runtime.alarms is not None
        await runtime.alarms.ready.wait()
        assert not siren.state
        pins.pin(BUTTON).drive_low()  # pressed (pull-up, normally open)
        await asyncio.wait_for(hook.arrived.wait(), 10)
        await wait_until(lambda: siren.state, "the siren sounds")
        assert "emergency input sos pressed" in hook.bodies[0]["title"]
        assert hook.bodies[0]["type"] == "failure"  # apprise's word for critical
        (alarm,) = runtime.alarms.open_alarms()
        await wait_until(lambda: alarm.state.value == "notified", "delivery is recorded")
        assert runtime.sink is not None
        assert not runtime.sink.connected.is_set()  # all of it without the platform
        pins.pin(BUTTON).drive_high()
        pins.pin(ACK).drive_low()  # the guard presses the acknowledge button
        await wait_until(lambda: not siren.state, "the siren stops")
        assert runtime.alarms.open_alarms()[0].acked_by == "hall/ack"
        stop.set()


async def test_with_the_disk_full_and_the_uplink_down_the_button_still_reaches_staff(
    tmp_path: Path, small_disk: Path, pins: MockFactory, webhook: tuple[Webhook, int]
) -> None:
    """Fault finding 1: the store cannot take even the alarm; the alarm path goes on."""
    hook, port = webhook
    doc = config(tmp_path, port)
    doc["store"] = {"path": str(small_disk / "buf.db")}
    runtime = Runtime(validate(doc, tmp_path))
    stop = asyncio.Event()
    siren = pins.pin(SIREN)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(runtime.run(stop))
        await runtime.ready.wait()
        await runtime.alarms.ready.wait()
        weight = await asyncio.to_thread(ballast, small_disk)  # something else filled the disk
        pins.pin(BUTTON).drive_low()
        await asyncio.wait_for(hook.arrived.wait(), 10)
        await wait_until(lambda: siren.state, "the siren sounds")
        assert "emergency input sos pressed" in hook.bodies[0]["title"]
        assert len(runtime.alarms.open_alarms()) == 1  # the engine holds it in memory
        _, doc_health = health(runtime.snapshot())
        assert doc_health["status"] == "degraded"
        assert doc_health["components"]["store"]["detail"].startswith("not writable: disk full")
        rows = await runtime.store.count_rows()
        assert Lane.ALARM not in rows  # nothing of it on disk: it waits in memory
        weight.unlink()  # room again: the waiting alarm goes in at the next commit
        await runtime.store.flush()
        rows = await runtime.store.count_rows()
        assert rows.get(Lane.ALARM, 0) >= 1
        assert runtime.store.stats().problem == ""
        stop.set()


async def test_with_the_disk_full_the_alarm_reaches_the_platform_without_a_seq(
    tmp_path: Path,
    small_disk: Path,
    pins: MockFactory,
    webhook: tuple[Webhook, int],
    mosquitto: Mosquitto,
) -> None:
    """Fault finding 1, the upstream part: an alarm the store cannot take is published at once
    as provisional (contract 1.4), each transition exactly once, and again with its seq once
    the disk has room."""
    hook, port = webhook
    doc = config(tmp_path, port)
    doc["store"] = {"path": str(small_disk / "buf.db")}
    doc["upstream"]["mqtt"]["port"] = mosquitto.port
    runtime = Runtime(validate(doc, tmp_path))
    prefix = "cgw/s1/gw1/"
    stop = asyncio.Event()
    async with (
        Recorder(mosquitto.host, mosquitto.port, prefix + "#") as rec,
        asyncio.TaskGroup() as tg,
    ):
        tg.create_task(runtime.run(stop))
        await runtime.ready.wait()
        await runtime.alarms.ready.wait()
        assert runtime.sink is not None
        await asyncio.wait_for(runtime.sink.connected.wait(), 10)
        weight = await asyncio.to_thread(ballast, small_disk)
        pins.pin(BUTTON).drive_low()
        await asyncio.wait_for(hook.arrived.wait(), 10)  # the guard's message: notified
        (alarm,) = runtime.alarms.open_alarms()
        await wait_until(lambda: alarm.state.value == "notified", "delivery is recorded")
        provisional = prefix + PROVISIONAL + alarm.id
        early = await rec.wait_count(2, provisional)  # raised, notified
        assert [validate_message(prefix, m.topic, m.payload)["state"] for m in early] == [
            "raised",
            "notified",
        ]
        assert rec.on(prefix + "alarm/") == []  # no seq yet: the store holds nothing
        assert runtime.store.stats().problem.startswith("disk full")

        weight.unlink()  # room again: the transitions go in, and out with their seqs
        await runtime.store.flush()
        late = await rec.wait_count(2, prefix + "alarm/" + alarm.id)
        sequenced = [validate_message(prefix, m.topic, m.payload) for m in late]
        assert [m.pop("seq") for m in sequenced] == [1, 2]
        firsts = [json.loads(m.payload) for m in early]
        assert all(m.pop("provisional") is True for m in firsts)
        assert sequenced == firsts  # the same two transitions, each once provisionally
        assert len(rec.on(provisional)) == 2
        sink = runtime.snapshot().mqtt
        assert sink is not None
        assert sink.provisional == 2
        stop.set()
