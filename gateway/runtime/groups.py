"""The driver groups of the daemon: the devices they register, and how each one runs.

Contract:
- ``register_devices`` keeps ``DeviceStates`` in step with a config: every configured device
  is registered with its kind, its bus (Modbus) and the profile it names (each device an
  mqtt_json entry lists, not the entry); a device no longer configured is forgotten.
- ``run_group`` is a driver group's component ``run`` (``gateway.runtime.components``): it
  builds the group, enters its contexts, attaches its actuators to the dispatcher, runs a
  supervised poller per polled device and each stream, all emitting to the pipeline
  ``emit_for(group.stages)``, and lists the group in ``running`` while it runs. On its way
  out it releases everything in reverse order and leaves ``running``.
"""

import asyncio
import functools
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

from drivers.base import DriverGroup, Emit, GroupPlan
from gateway.commands.dispatch import Dispatcher
from gateway.config.http_push import HttpPushDeviceConfig
from gateway.config.modbus import ModbusDeviceConfig
from gateway.config.models import Config, DeviceConfig
from gateway.config.mqtt_json import MqttJsonDeviceConfig
from gateway.core.clock import Clock
from gateway.core.devices import DeviceStates
from gateway.core.items import Stage
from gateway.runtime.poller import Poller
from gateway.runtime.supervisor import supervise


@dataclass(frozen=True)
class RunningGroup:
    """A driver group while it runs: what it built and its pollers."""

    drivers: DriverGroup
    pollers: list[Poller]


def register_devices(states: DeviceStates, cfg: Config) -> None:
    """Every device of ``cfg`` known to ``states``, and no other (see the module docstring)."""
    wanted = {i for d in cfg.devices for i in _ids(d)}
    for device in set(states.snapshot()) - wanted:
        states.forget(device)
    for d in cfg.devices:
        bus = d.bus if isinstance(d, ModbusDeviceConfig) else None
        for device in _ids(d):
            states.register(device, d.kind, bus, getattr(d, "profile", None))


def _ids(dev: DeviceConfig) -> list[str]:
    """The devices a config entry stands for: an mqtt_json fleet its listed ids."""
    if isinstance(dev, MqttJsonDeviceConfig | HttpPushDeviceConfig):
        return dev.device_ids
    return [dev.id]


async def run_group(
    plan: GroupPlan,
    emit_for: Callable[[Sequence[Stage]], Emit],
    orders: Dispatcher,
    clock: Clock,
    states: DeviceStates,
    running: dict[str, RunningGroup],
) -> None:
    """One driver group: its pollers, streams and actuators, all emitting to the pipeline."""
    group = plan.build()
    emit = emit_for(group.stages)
    pollers = [Poller(d, s, emit, clock, states) for d, s in group.polled]
    try:
        async with AsyncExitStack() as stack:
            for close in group.closers:
                stack.callback(close)
            for context in group.contexts:
                await stack.enter_async_context(context)
            running[plan.name] = RunningGroup(group, pollers)
            for actuator in group.actuators:  # a restarted siren resumes the current pattern
                stack.callback(await orders.attach(actuator))
            async with asyncio.TaskGroup() as tg:
                for p in pollers:
                    label = f"driver:{p.driver.id}"
                    tg.create_task(supervise(label, p.run), name=label)
                for label, stream in group.streams:
                    run = functools.partial(stream.run, emit)
                    tg.create_task(supervise(label, run), name=label)
    finally:
        running.pop(plan.name, None)
