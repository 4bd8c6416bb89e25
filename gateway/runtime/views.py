"""The parts of ``Runtime.snapshot`` that no single component publishes.

Components publish their own ``snapshot()`` (the store, the alarm engine, the sinks, the
command channel, the fire linkage). What is left here belongs to the composition root: the
API's listening state, the inputs of every running driver group, the command channel while a
reload restarts it, and the device states shaped as health and metrics read them.

Inputs: every configured input device has a state. A GPIO device with inputs, a Modbus device
with bit points (coils, discrete inputs), each device of an mqtt_json entry with bool points:
its availability in ``DeviceStates`` (GPIO: whether its pins opened, with the reason). MQTT
buttons and door terminals: their local broker session subscribed or not (unknown while their
group is not running). A device is
``alarmed`` when a contact rule names it by id (``gateway.alarms.rules.alarm_inputs``).

Contract: each function copies what it reads into the frozen types of
``gateway.core.snapshots`` and keeps no reference; none blocks or awaits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from gateway.alarms.rules import alarm_inputs
from gateway.config.gpio import GpioDeviceConfig
from gateway.config.http_push import HttpPushDeviceConfig
from gateway.config.modbus import BIT_TABLES, ModbusDeviceConfig
from gateway.config.models import Config, DeviceConfig
from gateway.config.mqtt_json import MqttJsonDeviceConfig
from gateway.core.devices import IMPLAUSIBLE, DeviceState
from gateway.core.snapshots import (
    ApiSnapshot,
    CommandsSnapshot,
    DeviceSnapshot,
    InputsSnapshot,
    InputState,
)
from gateway.pipeline.stages import UNMATCHED

if TYPE_CHECKING:  # the runtime imports these when configured; a view never needs to
    from gateway.commands.service import CommandService
    from gateway.config.api import ApiConfig

POLLED_KINDS = ("modbus", "mqtt_json")  # the kinds health and metrics list as devices today
SESSIONS = {"mqtt_button": "local_broker:buttons", "door_terminal": "local_broker:doors"}
Probe = Callable[[], bool]  # is this input's connection up?
Counts = Callable[[], Mapping[str, int]]  # an input's rejected messages by reason


def api(cfg: ApiConfig | None, listening: asyncio.Event) -> ApiSnapshot | None:
    """The local API, or None when it is not configured."""
    return None if cfg is None else ApiSnapshot(f"{cfg.host}:{cfg.port}", listening.is_set())


def commands(service: CommandService | None, dropped: int) -> CommandsSnapshot:
    """The command channel's counters; ``dropped`` arrived while it was not running."""
    if service is None:
        return CommandsSnapshot(False, 0, 0, {}, dropped)
    return service.snapshot(dropped)


class InputGroup(Protocol):
    """What a view reads of a running driver group (``drivers.base.DriverGroup``)."""

    @property
    def probes(self) -> Mapping[str, Probe]: ...
    @property
    def rejects(self) -> Mapping[str, Counts]: ...


def inputs(
    cfg: Config, states: Mapping[str, DeviceState], groups: Iterable[InputGroup]
) -> InputsSnapshot:
    """Every running group's connection probes and reject counters, by name; every configured
    input device's state; contacts no rule named, by device."""
    groups = list(groups)
    connections = {name: bool(probe()) for g in groups for name, probe in g.probes.items()}
    alarmed = alarm_inputs(cfg.alarms)
    devices: list[InputState] = []
    for dev in cfg.devices:
        if dev.kind in SESSIONS:
            up = connections.get(SESSIONS[dev.kind])
            reason = "" if up else f"{SESSIONS[dev.kind]} not subscribed"
            devices.append(InputState(dev.id, dev.kind, up, reason, dev.id in alarmed))
            continue
        for device in _inputs(dev):
            state = states.get(device)
            up = None if state is None else state.online
            reason = "" if up or state is None else state.reason
            devices.append(InputState(device, dev.kind, up, reason, device in alarmed))
    return InputsSnapshot(
        connections=connections,
        rejects={name: dict(counts()) for g in groups for name, counts in g.rejects.items()},
        devices=tuple(devices),
        unmatched={
            d: int(s.counters[UNMATCHED]) for d, s in states.items() if s.counters.get(UNMATCHED)
        },
    )


def _inputs(dev: DeviceConfig) -> list[str]:
    """The devices of a config entry whose availability is an input's: GPIO inputs, Modbus
    bit points, mqtt_json bool points (contacts the alarm rules see)."""
    if isinstance(dev, GpioDeviceConfig) and dev.inputs:
        return [dev.id]
    if isinstance(dev, ModbusDeviceConfig) and any(
        p.table in BIT_TABLES for p in dev.active_points
    ):
        return [dev.id]
    if isinstance(dev, HttpPushDeviceConfig) and dev.readings is not None:
        dev = dev.as_json()
    if isinstance(dev, MqttJsonDeviceConfig) and any(p.type == "bool" for p in dev.active_points):
        return dev.device_ids
    return []


def devices(states: Mapping[str, DeviceState]) -> tuple[DeviceSnapshot, ...]:
    """Every polled device, from the device states (other kinds join when health lists them)."""
    return tuple(
        DeviceSnapshot(
            id=s.id,
            online=s.online,
            polls=int(s.counters.get("polls", 0)),
            failed_polls=int(s.counters.get("poll_failures", 0)),
            latency_sum=s.counters.get("latency_sum", 0.0),
            last_latency=s.counters.get("last_latency", 0.0),
            bad_frames=int(s.counters.get("bad_frames", 0)),
            implausible=int(s.counters.get(IMPLAUSIBLE, 0)),
            disabled=dict(s.disabled),
            reason="" if s.online is not False else s.reason,
        )
        for s in states.values()
        if s.kind in POLLED_KINDS
    )
