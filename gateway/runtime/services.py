"""The components that need no more than their config and one or two ports.

Contract: each function is a component's ``run`` (see ``gateway.runtime.components``): it
opens what it needs, runs until cancelled and releases everything in its own ``finally``.
Each gets the narrow port it reads, never the runtime: the local API the alarm engine as an
``AlarmDesk``, the device states as a ``DeviceSource``, the buses as a ``Commissioner`` and the
availability history as an ``AvailabilitySource``; the monitor a function that takes a
``GatewaySnapshot``.
"""

import asyncio
from collections.abc import Callable, Mapping

from drivers.base import config_key
from gateway.alarms.delivery import NotifierDispatcher
from gateway.alarms.engine import AlarmEngine
from gateway.config.alarms import ContactRuleConfig
from gateway.config.api import ApiConfig
from gateway.config.console import ConsoleConfig
from gateway.config.models import Config
from gateway.config.monitor import MonitorConfig
from gateway.console.ports import ConsolePorts, DeviceFeed
from gateway.core.clock import Clock
from gateway.core.messages import Json, Lane, Record
from gateway.core.snapshots import ConsoleSnapshot
from gateway.notify import Notifier
from gateway.ops.api import AlarmDesk, LocalApi
from gateway.ops.device_api import Commissioner, DeviceSource
from gateway.ops.report_api import AvailabilitySource
from gateway.ops.snapshot import GatewaySnapshot
from gateway.ops.welfare_api import WelfareDesk
from gateway.runtime.components import SERVICES, Component

Publish = Callable[[Callable[[], ConsoleSnapshot] | None], None]  # the console's snapshot, or None


async def run_alarms(engine: AlarmEngine, cfg: Config) -> None:
    """The alarm engine with the rules and notification channels of ``cfg``."""
    notifier = Notifier.from_config(cfg.channels) if cfg.channels else None
    try:
        dispatcher = NotifierDispatcher(notifier) if notifier else None
        console = cfg.console.public_url if cfg.console is not None else None
        fallback = notifier.fallback if notifier else frozenset()
        engine.reconfigure(cfg.alarms, dispatcher, console, fallback)
        async with asyncio.TaskGroup() as group:
            if notifier is not None:  # modems are checked while the engine runs
                group.create_task(notifier.watch(engine.modem), name="notify:modems")
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
    reports: AvailabilitySource | None = None,
    welfare: Callable[[], WelfareDesk | None] | None = None,
) -> None:
    """The local API; ``listening`` is set while it accepts requests."""
    try:
        async with LocalApi(
            cfg, desk, devices=devices, commissioner=commissioner, reports=reports, welfare=welfare
        ):
            listening.set()
            await asyncio.Future()  # until cancelled
    finally:
        listening.clear()


async def run_monitor(cfg: MonitorConfig, snapshot: Callable[[], GatewaySnapshot]) -> None:
    """The health and metrics endpoint, reading ``snapshot()`` on each request."""
    from gateway.ops.monitor import Monitor

    async with Monitor(cfg, snapshot):
        await asyncio.Future()  # until cancelled


def local_services(
    cfg: Config,
    desk: AlarmDesk,
    api_up: asyncio.Event,
    snapshot: Callable[[], GatewaySnapshot],
    console: ConsolePorts,
    clock: Clock,
    publish: Publish,
    reports: AvailabilitySource | None = None,
    welfare: Callable[[], WelfareDesk | None] | None = None,
) -> list[Component]:
    """The listeners ``cfg`` asks for: the local API, the field console, the monitor."""
    out: list[Component] = []
    key = config_key  # a key: the JSON of what it is built from
    if (api := cfg.api) is not None:
        ports = (console.devices, console.commissioner, reports, welfare)
        out.append(Component("api", SERVICES, key(api.model_dump(mode="json")),
                             lambda: run_api(api, desk, api_up, *ports)))  # fmt: skip
    if (web := cfg.console) is not None:
        out.append(Component("console", SERVICES,
                             key(web.model_dump(mode="json"), console.zone, console.bus_names,
                                 console.welfare is not None),
                             lambda: run_console(web, console, clock, publish)))  # fmt: skip
    if (monitor := cfg.monitor) is not None:
        out.append(Component("monitor", SERVICES, key(monitor.model_dump(mode="json")),
                             lambda: run_monitor(monitor, snapshot)))  # fmt: skip
    return out


def console_ports(
    cfg: Config,
    engine: AlarmEngine,
    devices: DeviceFeed,
    snapshot: Callable[[], GatewaySnapshot],
    add: Callable[[Record], None],
    clock: Clock,
    synced: Callable[[], bool],
    commissioner: Commissioner | None,
    reports: AvailabilitySource | None = None,
    welfare: Callable[[], WelfareDesk | None] | None = None,
) -> ConsolePorts:
    """What the field console reads and does, from the running gateway's parts."""

    def audit(action: str, target: str, fields: Mapping[str, Json]) -> None:
        add(Record(Lane.EVENT, "audit", clock.wall(), synced(), fields=fields))

    types = {r.id: r.type for r in cfg.alarms.rules if isinstance(r, ContactRuleConfig)}
    return ConsolePorts(
        cfg.gateway.site_id, cfg.alarms.timezone, engine, devices, snapshot, audit, types,
        commissioner if cfg.buses else None, [b.id for b in cfg.buses], reports,
        welfare if cfg.welfare is not None else None,
    )  # fmt: skip


async def run_console(
    cfg: ConsoleConfig, ports: ConsolePorts, clock: Clock, publish: Publish
) -> None:
    """The field console, until cancelled; its snapshot is ``publish``ed while it runs."""
    from gateway.console.server import Console  # aiohttp and argon2: only with a console

    try:
        async with Console(cfg, ports, clock) as console:
            publish(console.snapshot)
            await asyncio.Future()  # until cancelled
    finally:
        publish(None)
