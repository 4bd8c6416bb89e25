"""Snapshots of live components, for ``Runtime.snapshot``: one small function per part.

Contract: each function copies what it reads into the frozen types of
``gateway.ops.snapshot`` and keeps no reference to the component; none blocks or awaits.
They are the only code that knows which attribute of which component a figure comes from,
so a component that starts publishing its own ``snapshot()`` replaces one function here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from gateway.alarms.model import UNACKED
from gateway.core.devices import DeviceState
from gateway.ops.snapshot import (
    AlarmsSnapshot,
    ApiSnapshot,
    CommandsSnapshot,
    DeviceSnapshot,
    InputsSnapshot,
    LinkageSnapshot,
    OpenAlarm,
    SinkSnapshot,
)

if TYPE_CHECKING:  # the runtime imports these when configured; a view never needs to
    from gateway.alarms.engine import AlarmEngine
    from gateway.alarms.linkage import FireLinkage
    from gateway.commands.service import CommandService
    from gateway.config.api import ApiConfig
    from gateway.sinks.influx import InfluxSink
    from gateway.sinks.mqtt import MqttSink

POLLED_KINDS = ("modbus",)  # the kinds health and metrics list as devices today
Probe = Callable[[], bool]  # is this input's connection up?
Counts = Callable[[], Mapping[str, int]]  # an input's rejected messages by reason


def alarms(engine: AlarmEngine) -> AlarmsSnapshot:
    """The engine's open alarms and its acknowledgement figures."""
    return AlarmsSnapshot(
        ready=engine.ready.is_set(),
        open=tuple(OpenAlarm(a.id, a.severity, a.state in UNACKED) for a in engine.open_alarms()),
        acked=dict(engine.acked),
    )


def api(cfg: ApiConfig | None, listening: asyncio.Event) -> ApiSnapshot | None:
    """The local API, or None when it is not configured."""
    return None if cfg is None else ApiSnapshot(f"{cfg.host}:{cfg.port}", listening.is_set())


def mqtt(sink: MqttSink | None) -> SinkSnapshot | None:
    """The upstream MQTT session, or None while it is not running."""
    if sink is None:
        return None
    return SinkSnapshot(
        connected=sink.connected.is_set(),
        last_error=sink.last_error,
        delivered=sink.published,
        reconnects=sink.reconnects,
    )


def influx(sink: InfluxSink | None) -> SinkSnapshot | None:
    """The InfluxDB sink, or None while it is not running."""
    if sink is None:
        return None
    return SinkSnapshot(
        connected=sink.connected.is_set(),
        last_error=sink.last_error,
        delivered=sink.rows_written,
        dead_lettered=sink.dead_lettered,
        retries=sink.retries,
    )


def commands(service: CommandService | None, dropped: int) -> CommandsSnapshot:
    """The command channel's counters; ``dropped`` arrived while it was not running."""
    if service is None:
        return CommandsSnapshot(False, 0, 0, {}, dropped)
    rejected = dict(service.rejected)
    return CommandsSnapshot(True, service.executed, service.unaudited, rejected, dropped)


def linkage(fire: FireLinkage | None) -> LinkageSnapshot | None:
    """The fire linkage, or None while it is not running."""
    return None if fire is None else LinkageSnapshot(fire.active, fire.unlocks_sent)


def inputs(
    probes: Iterable[Mapping[str, Probe]], rejects: Iterable[Mapping[str, Counts]]
) -> InputsSnapshot:
    """Every running input's connection probe and reject counters, by name."""
    return InputsSnapshot(
        connections={name: bool(probe()) for group in probes for name, probe in group.items()},
        rejects={name: dict(counts()) for group in rejects for name, counts in group.items()},
    )


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
            disabled=dict(s.disabled),
        )
        for s in states.values()
        if s.kind in POLLED_KINDS
    )
