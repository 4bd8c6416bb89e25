"""The components that need no more than their config and one or two ports.

Contract: each function is a component's ``run`` (see ``gateway.runtime.components``): it
opens what it needs, runs until cancelled and releases everything in its own ``finally``.
Each gets the narrow port it reads, never the runtime: the local API the alarm engine as an
``AlarmDesk``, the device states as a ``DeviceSource`` and the buses as a ``Commissioner``;
the monitor a function that takes a ``GatewaySnapshot``.
"""

import asyncio
from collections.abc import Callable

from gateway.alarms.delivery import NotifierDispatcher
from gateway.alarms.engine import AlarmEngine
from gateway.config.api import ApiConfig
from gateway.config.models import Config
from gateway.config.monitor import MonitorConfig
from gateway.notify import Notifier
from gateway.ops.api import AlarmDesk, LocalApi
from gateway.ops.device_api import Commissioner, DeviceSource
from gateway.ops.snapshot import GatewaySnapshot


async def run_alarms(engine: AlarmEngine, cfg: Config) -> None:
    """The alarm engine with the rules and notification channels of ``cfg``."""
    notifier = Notifier.from_config(cfg.channels) if cfg.channels else None
    try:
        engine.reconfigure(cfg.alarms, NotifierDispatcher(notifier) if notifier else None)
        await engine.run()
    finally:
        if notifier is not None:
            await notifier.aclose()


async def run_api(
    cfg: ApiConfig,
    desk: AlarmDesk,
    listening: asyncio.Event,
    devices: DeviceSource | None = None,
    commissioner: Commissioner | None = None,
) -> None:
    """The local API; ``listening`` is set while it accepts requests."""
    try:
        async with LocalApi(cfg, desk, devices=devices, commissioner=commissioner):
            listening.set()
            await asyncio.Future()  # until cancelled
    finally:
        listening.clear()


async def run_monitor(cfg: MonitorConfig, snapshot: Callable[[], GatewaySnapshot]) -> None:
    """The health and metrics endpoint, reading ``snapshot()`` on each request."""
    from gateway.ops.monitor import Monitor

    async with Monitor(cfg, snapshot):
        await asyncio.Future()  # until cancelled
