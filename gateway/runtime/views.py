"""The parts of ``Runtime.snapshot`` that no single component publishes.

Components publish their own ``snapshot()`` (the store, the alarm engine, the sinks, the
command channel, the fire linkage). What is left here belongs to the composition root: the
API's listening state, the inputs of every running driver group, the command channel while a
reload restarts it, and the device states shaped as health and metrics read them.

Contract: each function copies what it reads into the frozen types of
``gateway.core.snapshots`` and keeps no reference; none blocks or awaits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from gateway.core.devices import DeviceState
from gateway.core.snapshots import (
    ApiSnapshot,
    CommandsSnapshot,
    DeviceSnapshot,
    InputsSnapshot,
)

if TYPE_CHECKING:  # the runtime imports these when configured; a view never needs to
    from gateway.commands.service import CommandService
    from gateway.config.api import ApiConfig

POLLED_KINDS = ("modbus",)  # the kinds health and metrics list as devices today
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
