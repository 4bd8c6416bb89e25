"""The daemon: the store, the alarm engine and every restartable component in one TaskGroup.

The composition root. The store and the alarm engine exist for the whole of ``run`` and are
built before its TaskGroup starts (``Core``); every other component gets them, or narrower
ports, when it starts. Health, metrics, the status line and the ``status`` action read
``snapshot()``, a frozen ``GatewaySnapshot`` built on demand (``gateway.runtime.views``).

Order of a stop (SIGTERM): the local API and monitor close (no acknowledgements
mid-shutdown), inputs are cancelled, the alarm engine stops, queued readings are committed,
then the sinks publish "offline" and disconnect, and the store is closed cleanly. The stop has
a deadline (``gateway.runtime.components.STOP_DEADLINE``): a component that does not finish
in time is named, left behind (``abandoned``) and the store is closed all the same. A component
failing with something other than a transient error stops the daemon with an error, so
systemd restarts it; a dead device or an unreachable broker never does.

Reload (SIGHUP, ``request_reload``): the file is loaded and checked first
(``gateway.runtime.reload``); a bad file, or a change that needs a full restart, keeps the
running config and logs why. A good one restarts only the components whose config changed
(see ``gateway.runtime.components``); open alarms live in the store and survive it.
"""

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.base import Emit, GroupPlan, Ports, config_key
from drivers.registry import plan
from gateway import __version__
from gateway.alarms.engine import AlarmEngine
from gateway.commands.dispatch import Dispatcher
from gateway.config.influx import InfluxConfig
from gateway.config.models import Config
from gateway.core.clock import Clock, SystemClock
from gateway.core.command import Order, Severity, SoundSiren
from gateway.core.contract import Identity
from gateway.core.devices import DeviceStates
from gateway.core.errors import GatewayError
from gateway.core.items import Stage
from gateway.core.snapshots import ConsoleSnapshot
from gateway.core.timesync import SyncState
from gateway.ops import systemd
from gateway.ops.health import status_line
from gateway.ops.snapshot import GatewayInfo, GatewaySnapshot
from gateway.pipeline.stages import pipeline
from gateway.runtime import views
from gateway.runtime.commission import ModbusCommissioner, running_bus
from gateway.runtime.components import ALARMS, INPUTS, SERVICES, SINKS, Component, Components
from gateway.runtime.groups import RunningGroup, register_devices, run_group
from gateway.runtime.poller import Poller
from gateway.runtime.reporting import Reporting
from gateway.runtime.services import console_ports, local_services, run_alarms
from gateway.runtime.storage import open_store, stand_in_condition
from gateway.runtime.welfare import WelfareWatch
from gateway.sinks.mqtt import MqttSink
from gateway.store.outbox import Store

if TYPE_CHECKING:
    from gateway.alarms.linkage import FireLinkage
    from gateway.commands.service import CommandService
    from gateway.sinks.influx import InfluxSink

log = logging.getLogger(__name__)


def _dump(model: Any) -> Any:
    return None if model is None else model.model_dump(mode="json")


@dataclass(frozen=True, slots=True)
class Core:
    """What every other component is built around; it exists for the whole of ``run``."""

    store: Store
    alarms: AlarmEngine
    orders: Dispatcher  # the one way back to the devices
    components: Components


class Runtime:
    """Everything one gateway runs, built from a validated config."""

    def __init__(
        self, cfg: Config, clock: Clock | None = None, config_path: Path | None = None
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.clock = clock or SystemClock()
        self.ident = Identity(
            cfg.upstream.mqtt.topic_root, cfg.gateway.site_id, cfg.gateway.gateway_id
        )
        self.ready = asyncio.Event()
        self._core: Core | None = None  # from the start of ``run`` on
        # Components a reload restarts (or the config leaves out) are None while they are not
        # running; the snapshot says so.
        self.sink: MqttSink | None = None
        self.influx: InfluxSink | None = None  # imported only when configured
        self.api_up = asyncio.Event()
        self.groups: dict[str, RunningGroup] = {}  # driver groups running now, by name
        self.reloads = 0
        self.reload_failures = 0
        self.started = self.clock.wall()
        self.devices = DeviceStates()  # every device's state, whatever its kind
        self.reports = Reporting(cfg, self.clock)  # availability history, daily reports
        self.welfare = WelfareWatch()  # welfare checks, when configured
        self._reload_wanted = asyncio.Event()
        self._synced = SyncState(self.clock)
        self.commands: CommandService | None = None  # when the command channel is configured
        self.commands_dropped = 0  # command messages that arrived while it was not running
        self.linkage: FireLinkage | None = None  # when escape routes are configured
        self.console_view: Callable[[], ConsoleSnapshot] | None = None  # while it runs
        self.abandoned: list[str] = []  # components that did not finish after their stop
        self.stand_in = ""  # why the configured store is not used (``runtime.storage``)

    def _running(self) -> Core:
        if self._core is None:
            raise GatewayError("the gateway is not running: call run() first")
        return self._core

    @property
    def store(self) -> Store:
        """The outbox (from the start of ``run``)."""
        return self._running().store

    @property
    def alarms(self) -> AlarmEngine:
        """The alarm engine (from the start of ``run``)."""
        return self._running().alarms

    @property
    def pollers(self) -> list[Poller]:
        """Every device poller running now."""
        return [p for group in self.groups.values() for p in group.pollers]

    def _sound(self, severity: Severity) -> None:  # the engine's outputs: sirens and lights
        self._orders().submit(SoundSiren(severity))

    # -- components -------------------------------------------------------------------------

    def _wanted(self, cfg: Config) -> list[Component]:
        """Every component ``cfg`` asks for, keyed by the config each is built from."""
        engine, key = self.alarms, config_key  # a key: the JSON of what it is built from
        out = [
            Component("alarms", ALARMS, key(_dump(cfg.alarms), [_dump(c) for c in cfg.channels]),
                      lambda: run_alarms(engine, cfg)),
            Component("sink:mqtt", SINKS, key(_dump(cfg.upstream.mqtt), cfg.commands is not None),
                      lambda: self._run_mqtt(cfg)),
        ]  # fmt: skip
        if cfg.commands is not None:
            out.append(
                Component("commands", SERVICES, key(_dump(cfg.commands)),
                          lambda: self._run_commands(cfg))
            )  # fmt: skip
        if (influx := cfg.upstream.influx) is not None:
            out.append(
                Component("sink:influx", SINKS, key(_dump(influx)),
                          lambda: self._run_influx(influx))
            )  # fmt: skip
        zone = lambda: self.cfg.alarms.timezone  # noqa: E731  # the zone at each request
        reports = self.reports.service(self.store, zone)  # the API's and the console's
        ports = console_ports(cfg, engine, self.devices, self.snapshot, self.store.add,
                              self.clock, self._synced, self._commissioner(),
                              reports, self.welfare.desk)  # fmt: skip
        out += local_services(cfg, engine, self.api_up, self.snapshot, ports, self.clock,
                              lambda view: setattr(self, "console_view", view),
                              reports, self.welfare.desk)  # fmt: skip
        out += self.reports.components(cfg, self.store, self._synced)
        out += self.welfare.components(cfg, engine, self.store, self.clock,
                                       self.reports.recorder.begun)  # fmt: skip
        routes = cfg.escape_routes
        if routes:
            out.append(
                Component("linkage", ALARMS, key(routes, _dump(cfg.alarms)),
                          lambda: self._run_linkage(cfg, routes))
            )  # fmt: skip
        out.append(Component("dispatch", ALARMS, "", lambda: self._orders().run()))
        return out + self._driver_groups(cfg)

    def _driver_groups(self, cfg: Config) -> list[Component]:
        """A component per driver group, planned by each kind's factory; every configured
        device gets its ``DeviceState`` (and one no longer configured loses it)."""
        register_devices(self.devices, cfg)
        ports = Ports(self.clock, self._submit, self.devices.count, self.devices.set,
                      settled=self._settled)  # fmt: skip
        return [
            Component(g.name, INPUTS, g.key, functools.partial(self._run_drivers, g, cfg))
            for g in plan(cfg, ports)
        ]

    async def _run_mqtt(self, cfg: Config) -> None:
        on_command = self._on_command if cfg.commands is not None else None
        self.sink = MqttSink(
            cfg.upstream.mqtt, self.ident, self.store, self.clock, on_command, self._synced
        )
        await self.sink.run()

    def _on_command(self, name: str, payload: bytes) -> None:
        if self.commands is None:  # restarting after a reload: the platform will get no answer
            self.commands_dropped += 1
            return
        self.commands.submit(name, payload)

    async def _run_commands(self, cfg: Config) -> None:
        from gateway.ops.health import health
        from gateway.runtime.commands import run_commands

        def hold(service: "CommandService | None") -> None:
            self.commands = service

        await run_commands(
            cfg,
            self.store.add,
            self.clock,
            self._synced,
            self._orders(),
            lambda: self.linkage,
            lambda: health(self.snapshot()),
            self.welfare.desk,
            hold,
        )

    async def _run_linkage(self, cfg: Config, routes: list[str]) -> None:
        from gateway.runtime.linkage import run_linkage

        def hold(linkage: "FireLinkage | None") -> None:
            self.linkage = linkage

        await run_linkage(
            routes,
            cfg.fire_rules,
            self.alarms,
            self._orders(),
            self.store.add,
            self.clock,
            self._synced,
            hold,
        )

    async def _settled(self) -> None:
        """Return once what the pipeline took so far is committed: alarms, then records."""
        await self.alarms.settled()
        await self.store.settled()

    def _orders(self) -> Dispatcher:
        return self._running().orders

    def _submit(self, order: Order) -> None:
        self._orders().submit(order)

    async def _run_influx(self, cfg: InfluxConfig) -> None:
        from gateway.sinks.influx import InfluxSink  # its client library is heavy

        self.influx = InfluxSink(cfg, self.ident, self.store, self.clock)
        await self.influx.run()

    async def _run_drivers(self, plan: GroupPlan, cfg: Config) -> None:
        def emit_for(stages: Sequence[Stage]) -> Emit:
            add, recorder = self.store.add, self.reports.recorder
            return pipeline(cfg, self.devices, self.alarms, add, self._synced, stages, recorder,
                            self.welfare.see)  # fmt: skip

        await run_group(plan, emit_for, self._orders(), self.clock, self.devices, self.groups)

    def _commissioner(self) -> ModbusCommissioner:
        """Scans and reads on demand, over the buses the driver groups run (the API's port)."""
        base = None if self.config_path is None else self.config_path.resolve().parent
        groups = self.groups
        running = lambda bus: running_bus((g.drivers for g in groups.values()), bus)  # noqa: E731
        return ModbusCommissioner(lambda: self.cfg, base, running, self.clock)

    # -- reload -----------------------------------------------------------------------------

    def request_reload(self) -> None:
        """Ask for a reload of ``config_path`` (the SIGHUP handler calls this)."""
        self._reload_wanted.set()

    async def reload(self) -> bool:
        """Load, validate and apply ``config_path``; False (and the old config kept) if bad."""
        from gateway.runtime.reload import reload

        if self.config_path is None:
            log.error("reload asked, but the gateway was not started from a config file")
            return False
        parts = self._running().components
        new = await reload(self.config_path, self.cfg, lambda cfg: parts.apply(self._wanted(cfg)))
        if new is None:
            self.reload_failures += 1
            return False
        self.cfg = new
        self.reloads += 1
        return True

    async def _reload_loop(self) -> None:
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            await self.reload()

    # -- life -------------------------------------------------------------------------------

    async def _run(self, stop: asyncio.Event, store: Store) -> None:
        cfg = self.cfg
        orders = Dispatcher(lambda: self.alarms, store.add, self.clock, self._synced)
        engine = AlarmEngine(
            cfg.alarms,
            store,
            self.clock,
            self._synced,
            site=cfg.gateway.site_id,
            dispatcher=None,
            outputs=self._sound,
        )
        async with asyncio.TaskGroup() as tg:
            committer = tg.create_task(
                store.run_committer(cfg.store.commit_interval), name="store:commit"
            )
            parts = Components(tg)
            self._core = Core(store, engine, orders, parts)
            await parts.apply(self._wanted(cfg))
            log.info(
                "gateway %s/%s running: %d components, upstream %s:%d",
                cfg.gateway.site_id,
                cfg.gateway.gateway_id,
                len(parts.names),
                cfg.upstream.mqtt.host,
                cfg.upstream.mqtt.effective_port,
            )
            await engine.ready.wait()  # the local alarm path is up: that is "ready"
            if self.stand_in:  # staff and the platform learn that the buffer is in memory
                engine.condition(stand_in_condition(cfg, self.stand_in, self.clock.wall()))
            if cfg.api is not None:
                await self.api_up.wait()
            self.ready.set()
            systemd.notify("READY=1")
            line = lambda: status_line(self.snapshot())  # noqa: E731
            pinger = tg.create_task(systemd.keep_alive(line), name="systemd")
            reloader = tg.create_task(self._reload_loop(), name="reload")
            await stop.wait()
            systemd.notify("STOPPING=1")
            for task in (pinger, reloader):
                task.cancel()
            await asyncio.gather(pinger, reloader, return_exceptions=True)
            log.info("stopping: inputs first, then alarms, the store, and the uplink last")

            async def before(stage: int) -> None:
                if stage == SINKS:
                    await store.flush()

            await parts.stop_all(before)
            self.abandoned = parts.abandoned  # named in the log; the daemon exits without them
            await store.flush()
            committer.cancel()

    def snapshot(self) -> GatewaySnapshot:
        """The gateway as it is now, for health, metrics and status (from ``run`` on)."""
        core, cfg, groups = self._running(), self.cfg, self.groups.values()
        gw = cfg.gateway
        info = GatewayInfo(gw.site_id, gw.gateway_id, __version__, self.clock.wall() - self.started,
                           self.ready.is_set(), self.reloads, self.reload_failures,
                           self._synced())  # fmt: skip
        return GatewaySnapshot(
            gateway=info,
            store=dataclasses.replace(core.store.snapshot(), stand_in=self.stand_in),
            alarms=core.alarms.snapshot(),
            mqtt=None if self.sink is None else self.sink.snapshot(),
            influx=None if self.influx is None else self.influx.snapshot(),
            influx_configured=cfg.upstream.influx is not None,
            api=views.api(cfg.api, self.api_up),
            inputs=views.inputs(cfg, self.devices.snapshot(), [g.drivers for g in groups]),
            commands=views.commands(self.commands, self.commands_dropped),
            linkage=None if self.linkage is None else self.linkage.snapshot(),
            devices=views.devices(self.devices.snapshot()),
            console=None if self.console_view is None else self.console_view(),
            welfare=self.welfare.snapshot(),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down in order."""
        store, self.stand_in = await open_store(self.cfg)
        self.ident = dataclasses.replace(self.ident, epoch=store.epoch)  # before any sink starts
        try:
            await self._run(stop, store)
        finally:
            await store.close()
        if self.abandoned:
            log.error(
                "stopped, the store closed cleanly; left running: %s", ", ".join(self.abandoned)
            )
        else:
            log.info("stopped cleanly")
