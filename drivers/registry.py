"""The explicit map from a device's config ``kind`` to the code that builds it.

No entry points, no subclass discovery: adding a protocol means adding a line here.
"""

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from drivers.doors.terminals import DoorTerminals
from drivers.gpio import GpioInputs, GpioOutputs, GpioUnavailable, pattern_for
from drivers.modbus.bus import Bus
from drivers.modbus.device import ModbusDevice
from drivers.mqtt.buttons import MqttButtons
from gateway.config.doors import DoorTerminalConfig
from gateway.config.gpio import GpioDeviceConfig
from gateway.config.models import Config
from gateway.config.mqtt_devices import MqttButtonConfig
from gateway.core.access import AccessEvent
from gateway.core.clock import Clock
from gateway.core.messages import ContactEvent
from gateway.runtime.poller import PollingDriver, Schedule

log = logging.getLogger(__name__)


class AlarmInputs(Protocol):
    """What input drivers report to: the alarm engine (and the store, for door events)."""

    def contact(self, event: ContactEvent) -> None: ...
    def access(self, event: AccessEvent) -> None: ...
    async def acknowledge_all(self, by: str) -> int: ...
    async def reset_all(self, by: str) -> int: ...


Severity = str | None  # the worst unacknowledged alarm's severity, or None when all is quiet


@dataclass
class DriverSet:
    """What the runtime runs.

    ``polled``: devices with their schedules (the runtime's pollers drive them).
    ``streams``: named components that run until cancelled and report to the alarm engine.
    ``outputs``: sirens and lights, told the worst unacknowledged severity on every change.
    ``contexts``: what must be open while the gateway runs (output pins).
    ``closers``: connections and ports to release.
    ``probes``: readiness of connections the health endpoint reports, by name.
    ``rejects``: per input component, its rejected-message counters by reason.
    """

    polled: list[tuple[PollingDriver, Schedule]] = field(default_factory=list)
    streams: list[tuple[str, Callable[[AlarmInputs], Awaitable[None]]]] = field(
        default_factory=list
    )
    outputs: list[Callable[[Severity], None]] = field(default_factory=list)
    contexts: list[AbstractAsyncContextManager[Any]] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)
    probes: dict[str, Callable[[], bool]] = field(default_factory=dict)
    rejects: dict[str, Callable[[], dict[str, int]]] = field(default_factory=dict)
    doors: dict[str, DoorTerminals] = field(default_factory=dict)  # door id -> its terminals

    def close(self) -> None:
        """Release every connection and port."""
        for close in self.closers:
            close()


def build_modbus(cfg: Config, clock: Clock, out: DriverSet) -> None:
    """One ``Bus`` per configured bus, one ``ModbusDevice`` per modbus device."""
    buses = {b.id: Bus(b) for b in cfg.buses}
    out.closers += [b.close for b in buses.values()]
    for dev in cfg.devices:
        if dev.kind == "modbus":
            schedule = Schedule(dev.interval, dev.offline_after, dev.backoff_max)
            out.polled.append((ModbusDevice(dev, buses[dev.bus], clock), schedule))


def build_mqtt_buttons(cfg: Config, clock: Clock, out: DriverSet) -> None:
    """One subscriber on the local broker for every MQTT button."""
    buttons = [d for d in cfg.devices if isinstance(d, MqttButtonConfig)]
    assert cfg.local_broker is not None  # the loader insists on one
    component = MqttButtons(
        cfg.local_broker,
        buttons,
        cfg.store.path.with_name(cfg.store.path.name + ".button-ids.json"),
        client_id=cfg.local_broker.client_id_for(cfg.gateway.site_id, cfg.gateway.gateway_id),
        clock=clock,
        profile_dirs=cfg.profile_dirs,
    )

    async def run(inputs: AlarmInputs) -> None:
        await component.run(inputs.contact)

    out.streams.append(("driver:mqtt_buttons", run))
    out.probes["local_broker:buttons"] = component.connected.is_set
    out.rejects["mqtt_buttons"] = lambda: dict(component.rejected)


def build_door_terminals(cfg: Config, clock: Clock, out: DriverSet) -> None:
    """One subscriber on the local broker for every door terminal."""
    terminals = [d for d in cfg.devices if isinstance(d, DoorTerminalConfig)]
    assert cfg.local_broker is not None
    assert cfg.privacy is not None
    site, gateway = cfg.gateway.site_id, cfg.gateway.gateway_id
    component = DoorTerminals(
        cfg.local_broker,
        terminals,
        cfg.privacy.pseudonymiser(site),
        cfg.store.path.with_name(cfg.store.path.name + ".door-ids.json"),
        # not the buttons' client id: two sessions with one id throw each other off
        client_id=cfg.local_broker.client_id_for(site, gateway) + "-doors",
        clock=clock,
        profile_dirs=cfg.profile_dirs,
    )

    async def run(inputs: AlarmInputs) -> None:
        await component.run(inputs.access)

    out.streams.append(("driver:door_terminals", run))
    out.probes["local_broker:doors"] = component.connected.is_set
    out.rejects["door_terminals"] = lambda: dict(component.rejected)
    out.doors |= {door.id: component for t in terminals for door in t.doors}


def build_gpio(cfg: Config, clock: Clock, out: DriverSet) -> None:
    """Contact inputs (alarm, acknowledge, reset) and outputs of each GPIO device."""
    for dev in cfg.devices:
        if not isinstance(dev, GpioDeviceConfig):
            continue
        if dev.inputs:
            out.streams.append((f"driver:{dev.id}", functools.partial(_gpio_inputs, dev, clock)))
        if dev.outputs:
            outputs = GpioOutputs(dev)
            out.contexts.append(outputs)
            out.outputs.append(functools.partial(_sound, dev, outputs))


async def _gpio_inputs(dev: GpioDeviceConfig, clock: Clock, inputs: AlarmInputs) -> None:
    """Run one device's inputs; an ack or reset button acts on every open alarm."""
    roles = {i.name: i.role for i in dev.inputs}

    def emit(event: ContactEvent) -> None:
        role = roles.get(event.input, "alarm")
        if role == "alarm":
            inputs.contact(event)
        elif event.active:
            by = f"{dev.id}/{event.input}"
            act = inputs.acknowledge_all if role == "ack" else inputs.reset_all
            _background.add(task := asyncio.get_running_loop().create_task(act(by)))
            task.add_done_callback(_background.discard)

    try:
        async with GpioInputs(dev, emit, clock):
            await asyncio.Future()  # until cancelled
    except GpioUnavailable as exc:
        log.error("%s; the gateway runs without GPIO device %s", exc, dev.id)


_background: set[asyncio.Task[int]] = set()


def _sound(dev: GpioDeviceConfig, outputs: GpioOutputs, severity: Severity) -> None:
    for out in dev.outputs:
        outputs.set(out.name, None if severity is None else pattern_for(severity, out.kind))


BUILDERS: dict[str, Callable[[Config, Clock, DriverSet], None]] = {
    "modbus": build_modbus,
    "mqtt_button": build_mqtt_buttons,
    "gpio": build_gpio,
    "door_terminal": build_door_terminals,
}


def groups(cfg: Config) -> list[tuple[str, str, Config]]:
    """The drivers split into groups that can restart on their own: ``(name, key, config)``.

    ``config`` is ``cfg`` holding only the group's buses and devices; ``key`` is the JSON of
    everything the group is built from, so a group restarts only when that changed. One group
    per Modbus bus (its devices share the bus lock), one for all MQTT buttons (one local
    broker session), one per GPIO device.
    """
    out: list[tuple[str, str, Config]] = []

    def dump(*parts: object) -> str:
        return json.dumps(parts, sort_keys=True, default=str)

    for bus in cfg.buses:
        devs = [d for d in cfg.devices if d.kind == "modbus" and d.bus == bus.id]
        if devs:
            sub = cfg.model_copy(update={"buses": [bus], "devices": devs})
            key = dump(bus.model_dump(mode="json"), [d.model_dump(mode="json") for d in devs])
            out.append((f"modbus:{bus.id}", key, sub))
    buttons = [d for d in cfg.devices if d.kind == "mqtt_button"]
    if buttons:
        sub = cfg.model_copy(update={"buses": [], "devices": buttons})
        key = dump(
            cfg.local_broker.model_dump(mode="json") if cfg.local_broker else None,
            [d.model_dump(mode="json") for d in buttons],
            [str(p) for p in cfg.profile_dirs],
        )
        out.append(("mqtt_buttons", key, sub))
    terminals = [d for d in cfg.devices if d.kind == "door_terminal"]
    if terminals:
        sub = cfg.model_copy(update={"buses": [], "devices": terminals})
        key = dump(
            cfg.local_broker.model_dump(mode="json") if cfg.local_broker else None,
            cfg.privacy.model_dump(mode="json") if cfg.privacy else None,
            [d.model_dump(mode="json") for d in terminals],
            [str(p) for p in cfg.profile_dirs],
        )
        out.append(("door_terminals", key, sub))
    for dev in cfg.devices:
        if dev.kind == "gpio":
            sub = cfg.model_copy(update={"buses": [], "devices": [dev]})
            out.append((f"gpio:{dev.id}", dump(dev.model_dump(mode="json")), sub))
    return out


def build(cfg: Config, clock: Clock) -> DriverSet:
    """Every driver the config asks for."""
    out = DriverSet()
    for kind in sorted({d.kind for d in cfg.devices}):
        BUILDERS[kind](cfg, clock, out)
    return out
