"""The daemon: the store, the alarm engine and every restartable component in one TaskGroup.

Order of a stop (SIGTERM): the local API and monitor close (no acknowledgements
mid-shutdown), inputs are cancelled, the alarm engine stops, queued readings are committed,
then the sinks publish "offline" and disconnect, and the store is closed cleanly. A component
failing with something other than a transient error stops the daemon with an error, so
systemd restarts it; a dead device or an unreachable broker never does.

Reload (SIGHUP, ``request_reload``): the file is loaded and checked first
(``gateway.runtime.reload``); a bad file, or a change that needs a full restart, keeps the
running config and logs why. A good one restarts only the components whose config changed
(see ``gateway.runtime.components``); open alarms live in the store and survive it.
"""

import asyncio
import functools
import json
import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.base import DriverGroup, GroupPlan, Ports
from drivers.registry import plan
from gateway.alarms.engine import AlarmEngine, NotifierDispatcher
from gateway.commands.dispatch import Dispatcher
from gateway.config.alarms import ContactRuleConfig
from gateway.config.models import Config
from gateway.core.clock import Clock, SystemClock
from gateway.core.command import Order, Severity, SoundSiren, UnlockDoor
from gateway.core.contract import Identity
from gateway.core.devices import DeviceStates
from gateway.core.messages import Lane
from gateway.core.timesync import SyncState
from gateway.notify import Notifier
from gateway.ops import systemd
from gateway.pipeline.stages import pipeline
from gateway.runtime.components import ALARMS, INPUTS, SERVICES, SINKS, Component, Components
from gateway.runtime.poller import Poller
from gateway.runtime.supervisor import supervise
from gateway.sinks.mqtt import MqttSink
from gateway.store.outbox import Store

if TYPE_CHECKING:
    from gateway.alarms.linkage import FireLinkage
    from gateway.commands.service import CommandService
    from gateway.sinks.influx import InfluxSink

log = logging.getLogger(__name__)


def _key(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


def _dump(model: Any) -> Any:
    return None if model is None else model.model_dump(mode="json")


@dataclass(frozen=True)
class RunningGroup:
    """A driver group while it runs: what it built and its pollers."""

    drivers: DriverGroup
    pollers: list[Poller]


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
        self.store: Store | None = None
        self.sink: MqttSink | None = None
        self.influx: InfluxSink | None = None  # imported only when configured
        self.alarms: AlarmEngine | None = None
        self.api_up = asyncio.Event()
        self.groups: dict[str, RunningGroup] = {}  # driver groups running now, by name
        self.reloads = 0
        self.reload_failures = 0
        self.started = self.clock.wall()
        self.devices = DeviceStates()  # every device's state, whatever its kind
        self.dispatcher: Dispatcher | None = None  # the one way back to the devices
        self._reload_wanted = asyncio.Event()
        self._components: Components | None = None
        self._synced: SyncState | None = None
        self.commands: CommandService | None = None  # when the command channel is configured
        self.commands_dropped = 0  # command messages that arrived while it was not running
        self.linkage: FireLinkage | None = None  # when escape routes are configured

    @property
    def pollers(self) -> list[Poller]:
        """Every device poller running now."""
        return [p for group in self.groups.values() for p in group.pollers]

    # -- outputs ----------------------------------------------------------------------------

    def _sound(self, severity: Severity) -> None:
        assert self.dispatcher is not None
        self.dispatcher.submit(SoundSiren(severity))

    # -- components -------------------------------------------------------------------------

    def _wanted(self, cfg: Config) -> list[Component]:
        """Every component ``cfg`` asks for, keyed by the config each is built from."""
        out = [
            Component("alarms", ALARMS, _key(_dump(cfg.alarms), [_dump(c) for c in cfg.channels]),
                      lambda: self._run_alarms(cfg)),
            Component("sink:mqtt", SINKS, _key(_dump(cfg.upstream.mqtt), cfg.commands is not None),
                      lambda: self._run_mqtt(cfg)),
        ]  # fmt: skip
        if cfg.commands is not None:
            out.append(
                Component("commands", SERVICES, _key(_dump(cfg.commands)),
                          lambda: self._run_commands(cfg))
            )  # fmt: skip
        if cfg.upstream.influx is not None:
            out.append(
                Component("sink:influx", SINKS, _key(_dump(cfg.upstream.influx)),
                          lambda: self._run_influx(cfg))
            )  # fmt: skip
        if cfg.api is not None:
            out.append(Component("api", SERVICES, _key(_dump(cfg.api)), lambda: self._run_api(cfg)))
        if cfg.monitor is not None:
            out.append(
                Component("monitor", SERVICES, _key(_dump(cfg.monitor)),
                          lambda: self._run_monitor(cfg))
            )  # fmt: skip
        routes = cfg.escape_routes
        if routes:
            out.append(
                Component("linkage", ALARMS, _key(routes, _dump(cfg.alarms)),
                          lambda: self._run_linkage(cfg, routes))
            )  # fmt: skip
        out.append(Component("dispatch", ALARMS, "", self._run_dispatch))
        return out + self._driver_groups(cfg)

    def _driver_groups(self, cfg: Config) -> list[Component]:
        """A component per driver group, planned by each kind's factory; every configured
        device gets its ``DeviceState`` (and one no longer configured loses it)."""
        wanted = {d.id: d.kind for d in cfg.devices}
        for device in set(self.devices.snapshot()) - set(wanted):
            self.devices.forget(device)
        for device, kind in wanted.items():
            self.devices.register(device, kind)
        ports = Ports(self.clock, self._submit, self.devices.count)
        return [
            Component(g.name, INPUTS, g.key, functools.partial(self._run_drivers, g, cfg))
            for g in plan(cfg, ports)
        ]

    async def _run_alarms(self, cfg: Config) -> None:
        assert self.alarms is not None
        notifier = Notifier.from_config(cfg.channels) if cfg.channels else None
        try:
            self.alarms.reconfigure(cfg.alarms, NotifierDispatcher(notifier) if notifier else None)
            await self.alarms.run()
        finally:
            if notifier is not None:
                await notifier.aclose()

    async def _run_mqtt(self, cfg: Config) -> None:
        assert self.store is not None
        on_command = self._on_command if cfg.commands is not None else None
        self.sink = MqttSink(cfg.upstream.mqtt, self.ident, self.store, self.clock, on_command)
        await self.sink.run()

    def _on_command(self, name: str, payload: bytes) -> None:
        if self.commands is None:  # restarting after a reload: the platform will get no answer
            self.commands_dropped += 1
            return
        self.commands.submit(name, payload)

    async def _run_commands(self, cfg: Config) -> None:
        from gateway.commands.actions import GatewayActions
        from gateway.commands.service import CommandService
        from gateway.ops.health import health

        assert cfg.commands is not None
        assert self.store is not None
        assert self._synced is not None
        service = CommandService(
            cfg.commands,
            cfg.store.path,
            cfg.gateway.site_id,
            cfg.gateway.gateway_id,
            self.store.add,
            self.clock,
            self._synced,
            GatewayActions(self._orders(), lambda: self.linkage, functools.partial(health, self)),
        )
        self.commands = service
        try:
            await service.run()
        finally:
            self.commands = None

    async def _run_linkage(self, cfg: Config, routes: list[str]) -> None:
        from gateway.alarms.linkage import FireLinkage

        assert self.store is not None
        assert self.alarms is not None
        assert self._synced is not None
        engine = self.alarms
        fire_rules = {
            r.id for r in cfg.alarms.rules if isinstance(r, ContactRuleConfig) and r.type == "fire"
        }

        def fire_alarms() -> list[str]:
            return [a.id for a in engine.open_alarms() if a.rule in fire_rules]

        orders = self._orders()

        async def unlock(door: str, seconds: int, why: str) -> None:
            # the linkage audits its releases; each repeated unlock is logged only
            await orders.execute(UnlockDoor(door, seconds, why, "linkage"), audited=True)

        linkage = FireLinkage(routes, unlock, fire_alarms, self.store.add, self.clock, self._synced)
        self.linkage = linkage
        engine.listeners.append(linkage.wake)
        try:
            await linkage.run()
        finally:
            engine.listeners.remove(linkage.wake)
            self.linkage = None

    def _orders(self) -> Dispatcher:
        assert self.dispatcher is not None
        return self.dispatcher

    def _submit(self, order: Order) -> None:
        self._orders().submit(order)

    async def _run_dispatch(self) -> None:
        await self._orders().run()

    async def _run_influx(self, cfg: Config) -> None:
        from gateway.sinks.influx import InfluxSink  # its client library is heavy

        assert self.store is not None
        assert cfg.upstream.influx is not None
        self.influx = InfluxSink(cfg.upstream.influx, self.ident, self.store, self.clock)
        await self.influx.run()

    async def _run_api(self, cfg: Config) -> None:
        from gateway.ops.api import LocalApi

        assert cfg.api is not None
        assert self.alarms is not None
        try:
            async with LocalApi(cfg.api, self.alarms):
                self.api_up.set()
                await asyncio.Future()  # until cancelled
        finally:
            self.api_up.clear()

    async def _run_monitor(self, cfg: Config) -> None:
        from gateway.ops.monitor import Monitor

        assert cfg.monitor is not None
        async with Monitor(cfg.monitor, self):
            await asyncio.Future()  # until cancelled

    async def _run_drivers(self, plan: GroupPlan, cfg: Config) -> None:
        """One driver group: its pollers, streams and actuators, all emitting to the pipeline."""
        assert self.store is not None
        assert self.alarms is not None
        assert self._synced is not None
        orders = self._orders()
        group = plan.build()
        emit = pipeline(cfg, self.devices, self.alarms, self.store.add, self._synced, group.stages)
        pollers = [Poller(d, s, emit, self.clock, self.devices) for d, s in group.polled]
        try:
            async with AsyncExitStack() as stack:
                for close in group.closers:
                    stack.callback(close)
                for context in group.contexts:
                    await stack.enter_async_context(context)
                self.groups[plan.name] = RunningGroup(group, pollers)
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
            self.groups.pop(plan.name, None)

    # -- reload -----------------------------------------------------------------------------

    def request_reload(self) -> None:
        """Ask for a reload of ``config_path`` (the SIGHUP handler calls this)."""
        self._reload_wanted.set()

    async def reload(self) -> bool:
        """Load, validate and apply ``config_path``; False (and the old config kept) if bad."""
        from gateway.runtime.reload import checked

        assert self._components is not None
        if self.config_path is None:
            log.error("reload asked, but the gateway was not started from a config file")
            return False
        systemd.notify("RELOADING=1")
        try:
            new = checked(self.config_path, self.cfg)
            if new is None:
                self.reload_failures += 1
                return False
            changes = await self._components.apply(self._wanted(new))
            self.cfg = new
            logging.getLogger().setLevel(new.log_level)
            self.reloads += 1
            log.info("config %s reloaded: %s", self.config_path, changes.summary())
            return True
        finally:
            systemd.notify("READY=1")

    async def _reload_loop(self) -> None:
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            await self.reload()

    # -- life -------------------------------------------------------------------------------

    async def _run(self, stop: asyncio.Event, store: Store) -> None:
        cfg = self.cfg
        self._synced = SyncState(self.clock)
        self.dispatcher = Dispatcher(lambda: self.alarms, store.add, self.clock, self._synced)
        self.alarms = AlarmEngine(
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
            self._components = parts = Components(tg)
            await parts.apply(self._wanted(cfg))
            log.info(
                "gateway %s/%s running: %d components, upstream %s:%d",
                cfg.gateway.site_id,
                cfg.gateway.gateway_id,
                len(parts.names),
                cfg.upstream.mqtt.host,
                cfg.upstream.mqtt.effective_port,
            )
            await self.alarms.ready.wait()  # the local alarm path is up: that is "ready"
            if cfg.api is not None:
                await self.api_up.wait()
            self.ready.set()
            systemd.notify("READY=1")
            pinger = tg.create_task(systemd.keep_alive(self.status_line), name="systemd")
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
            await store.flush()
            committer.cancel()

    def status_line(self) -> str:
        """One line for ``systemctl status``: devices, uplink, backlog, open alarms."""
        pollers = self.pollers
        online = sum(1 for p in pollers if p.online)
        uplink = "up" if self.sink is not None and self.sink.connected.is_set() else "down"
        backlog = self.store.backlog(MqttSink.name) if self.store is not None else 0
        alarms = len(self.alarms.open_alarms()) if self.alarms is not None else 0
        return (
            f"{online}/{len(pollers)} devices online, uplink {uplink},"
            f" backlog {backlog}, {alarms} open alarms"
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down in order."""
        cfg = self.cfg
        self.store = store = await Store.open(
            cfg.store.path,
            quota=int(cfg.store.quota),
            reserve=int(cfg.store.reserve),
            sinks=[MqttSink.name] + (["influx"] if cfg.upstream.influx is not None else []),
            lanes={"influx": [Lane.TELEMETRY]},  # alarms and events go to MQTT only
        )
        try:
            await self._run(stop, store)
        finally:
            await store.close()
        log.info("stopped cleanly")
