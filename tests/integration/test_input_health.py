"""A configured alarm input that does not run is never "healthy": a GPIO emergency button on a
machine with no pin factory (what any box but a Pi sees) makes health ``degraded`` with the
reason and raises ``input_unavailable`` upstream through a real mosquitto; once its pins open
(gpiozero's ``MockFactory``, the official test backend) the alarm clears. The clock's sync
flag shows in health and metrics as the ``SyncState`` seam says.
"""

import asyncio
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory
from prometheus_client.parser import text_string_to_metric_families

import drivers.gpio.kind
from gateway.config import validate
from gateway.core.timesync import SyncState
from gateway.ops.health import health
from gateway.ops.metrics import registry_for, render
from gateway.runtime.root import Runtime
from tests.support.mosquitto import Mosquitto
from tests.support.subscriber import Received, Recorder


def _on_a_pi() -> bool:
    model = Path("/proc/device-tree/model")
    return model.exists() and "Raspberry Pi" in model.read_text(errors="replace")


@pytest.fixture
def no_gpio(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No pin factory, as off a Pi; retries come quickly; whatever factory a test installs is
    removed again afterwards."""
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.setattr(drivers.gpio.kind, "RETRY_S", 0.05)
    assert Device.pin_factory is None
    try:
        yield
    finally:
        installed: Any = Device.pin_factory
        if installed is not None:
            installed.reset()
        Device.pin_factory = None


def config(tmp_path: Path, port: int) -> dict[str, Any]:
    return {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(tmp_path / "buf.db")},
        "upstream": {"mqtt": {"host": "127.0.0.1", "port": port, "reconnect_max": 1}},
        "devices": [
            {"kind": "gpio", "id": "hall", "inputs": [{"name": "sos", "pin": 17}]},
            {"kind": "gpio", "id": "spare", "inputs": [{"name": "x", "pin": 22}]},
        ],
        "alarms": {"rules": [{"kind": "contact", "id": "sos", "device": "hall", "input": "sos"}]},
    }


def alarm(state: str, active: bool) -> Callable[[Sequence[Received]], bool]:
    """A predicate: an ``input_unavailable`` alarm of ``hall`` in ``state`` reached the broker."""

    def seen(messages: Sequence[Received]) -> bool:
        for m in messages:
            if "/alarm/" not in m.topic:
                continue
            doc = json.loads(m.payload)
            if (doc["rule"], doc["device"], doc["state"], doc["active"]) == (
                "input_unavailable", "hall", state, active
            ):  # fmt: skip
                return True
        return False

    return seen


async def until(runtime: Runtime, cond: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The health document, as soon as ``cond`` holds of it (awaits device state changes)."""
    version = 0
    async with asyncio.timeout(10):
        while not cond(doc := health(runtime.snapshot())[1]):
            version = await runtime.devices.changed(version)
    return doc


def metric(runtime: Runtime, name: str, **labels: str) -> float:
    text = render(registry_for(runtime.snapshot)).decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    raise AssertionError(f"no sample {name} {labels}")


@pytest.mark.skipif(_on_a_pi(), reason="a Pi has real GPIO")
async def test_a_gpio_alarm_input_without_gpio_degrades_health_and_alarms_staff(
    tmp_path: Path, mosquitto: Mosquitto, no_gpio: None
) -> None:
    runtime = Runtime(validate(config(tmp_path, mosquitto.port), tmp_path))
    synced = [False]
    runtime._synced = SyncState(
        runtime.clock, ttl=0, marker=tmp_path / "no-marker", kernel=lambda: synced[0]
    )
    stop = asyncio.Event()
    async with Recorder(mosquitto.host, mosquitto.port, "#") as rec, asyncio.TaskGroup() as tg:
        tg.create_task(runtime.run(stop))
        await runtime.ready.wait()
        doc = await until(runtime, lambda d: "input:hall" in d["failing"])
        assert doc["status"] == "degraded"
        detail = doc["components"]["input:hall"]["detail"]
        assert detail.startswith("not running: ")
        assert "gpio device 'hall'" in detail
        assert doc["inputs"]["spare"]["alarm"] is False  # listed, but no rule needs it
        assert "input:spare" not in doc["failing"]
        assert metric(runtime, "cgw_input_running", device="hall", kind="gpio", alarm="true") == 0
        assert doc["clock_synced"] is False
        assert metric(runtime, "cgw_clock_synced") == 0
        await rec.wait_for(alarm("raised", True))
        (open_alarm,) = runtime.alarms.open_alarms()
        assert (open_alarm.rule, open_alarm.severity) == ("input_unavailable", "critical")

        synced[0] = True
        Device.pin_factory = MockFactory()  # the pins can be opened now: the next try runs
        doc = await until(runtime, lambda d: d["inputs"]["hall"]["state"] == "running")
        assert "input:hall" not in doc["failing"]
        assert doc["clock_synced"] is True
        assert metric(runtime, "cgw_clock_synced") == 1
        await rec.wait_for(lambda ms: any(
            "/alarm/" in m.topic and json.loads(m.payload)["rule"] == "input_unavailable"
            and json.loads(m.payload)["active"] is False for m in ms
        ))  # fmt: skip
        stop.set()
