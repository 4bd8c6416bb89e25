"""The daemon: one root TaskGroup holding the store committer, the sink and every poller.

Order of a stop (SIGTERM): pollers are cancelled first, queued readings are committed, then
the sink publishes "offline" and disconnects, and the store is closed cleanly. Any component
that fails with something other than a transient error stops the daemon with an error, so
systemd restarts it; a dead device or an unreachable broker never does.
"""

import asyncio
import functools
import logging
from contextlib import AsyncExitStack

from drivers.registry import DriverSet, build
from gateway import systemd
from gateway.alarms.engine import AlarmEngine, NotifierDispatcher
from gateway.api import LocalApi
from gateway.clock import Clock, SystemClock
from gateway.config.models import Config
from gateway.contract import Identity, status_record, telemetry_record
from gateway.messages import DeviceStatus, Lane, Sample
from gateway.notify import Notifier
from gateway.poller import Poller
from gateway.sinks.mqtt import MqttSink
from gateway.store import Store
from gateway.supervisor import supervise
from gateway.timesync import SyncState

log = logging.getLogger(__name__)


class StoreEmitter:
    """Turns what pollers learn into records in the store, and shows it to the alarm engine."""

    def __init__(self, store: Store, synced: SyncState, alarms: AlarmEngine) -> None:
        self.store = store
        self.synced = synced
        self.alarms = alarms

    def sample(self, sample: Sample) -> None:
        self.store.add(telemetry_record(sample, self.synced()))
        self.alarms.sample(sample)

    def status(self, status: DeviceStatus) -> None:
        self.store.add(status_record(status, self.synced()))
        self.alarms.status(status)


class Runtime:
    """Everything one gateway runs, built from a validated config."""

    def __init__(self, cfg: Config, clock: Clock | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.ident = Identity(
            cfg.upstream.mqtt.topic_root, cfg.gateway.site_id, cfg.gateway.gateway_id
        )
        self.ready = asyncio.Event()
        self.pollers: list[Poller] = []
        self.sink: MqttSink | None = None
        self.alarms: AlarmEngine | None = None

    def _alarms(
        self, store: Store, synced: SyncState, drivers: DriverSet, stack: AsyncExitStack
    ) -> AlarmEngine:
        notifier = Notifier.from_config(self.cfg.channels) if self.cfg.channels else None
        if notifier is not None:
            stack.push_async_callback(notifier.aclose)

        def sound(severity: str | None) -> None:
            for output in drivers.outputs:
                output(severity)

        return AlarmEngine(
            self.cfg.alarms,
            store,
            self.clock,
            synced,
            site=self.cfg.gateway.site_id,
            dispatcher=NotifierDispatcher(notifier) if notifier else None,
            outputs=sound,
        )

    async def _run(
        self, stop: asyncio.Event, store: Store, drivers: DriverSet, stack: AsyncExitStack
    ) -> None:
        cfg = self.cfg
        for context in drivers.contexts:
            await stack.enter_async_context(context)
        synced = SyncState(self.clock)
        self.alarms = alarms = self._alarms(store, synced, drivers, stack)
        emitter = StoreEmitter(store, synced, alarms)
        self.sink = sink = MqttSink(cfg.upstream.mqtt, self.ident, store, self.clock)
        self.pollers = [Poller(d, s, emitter, self.clock) for d, s in drivers.polled]
        async with asyncio.TaskGroup() as tg, AsyncExitStack() as api:
            committer = tg.create_task(
                store.run_committer(cfg.store.commit_interval), name="store:commit"
            )
            alarm_task = tg.create_task(alarms.run(), name="alarms")
            if cfg.api is not None:
                await api.enter_async_context(LocalApi(cfg.api, alarms))
            sinks = [tg.create_task(supervise("sink:mqtt", sink.run), name="sink:mqtt")]
            if cfg.upstream.influx is not None:
                from gateway.sinks.influx import InfluxSink  # its client library is heavy

                influx = InfluxSink(cfg.upstream.influx, self.ident, store, self.clock)
                sinks.append(
                    tg.create_task(supervise("sink:influx", influx.run), name="sink:influx")
                )
            inputs = [
                tg.create_task(
                    supervise(f"driver:{p.driver.id}", p.run), name=f"driver:{p.driver.id}"
                )
                for p in self.pollers
            ]
            inputs += [
                tg.create_task(supervise(name, functools.partial(run, alarms)), name=name)
                for name, run in drivers.streams
            ]
            log.info(
                "gateway %s/%s running: %d inputs, upstream %s:%d",
                cfg.gateway.site_id,
                cfg.gateway.gateway_id,
                len(inputs),
                cfg.upstream.mqtt.host,
                cfg.upstream.mqtt.effective_port,
            )
            await alarms.ready.wait()  # the local alarm path is up: that is "ready"
            self.ready.set()
            systemd.notify("READY=1")
            pinger = tg.create_task(systemd.keep_alive(self.status_line), name="systemd")
            await stop.wait()
            systemd.notify("STOPPING=1")
            pinger.cancel()
            log.info("stopping: inputs first, then alarms, the store, and the uplink last")
            await api.aclose()  # no acknowledgements mid-shutdown
            for task in inputs:
                task.cancel()
            await asyncio.gather(*inputs, return_exceptions=True)
            alarm_task.cancel()
            await asyncio.gather(alarm_task, return_exceptions=True)
            await store.flush()
            for task in sinks:
                task.cancel()
            committer.cancel()

    def status_line(self) -> str:
        """One line for ``systemctl status``: devices, uplink, backlog, open alarms."""
        online = sum(1 for p in self.pollers if p.online)
        uplink = "up" if self.sink is not None and self.sink.connected.is_set() else "down"
        backlog = self.sink.store.backlog(self.sink.name) if self.sink is not None else 0
        alarms = len(self.alarms.open_alarms()) if self.alarms is not None else 0
        return (
            f"{online}/{len(self.pollers)} devices online, uplink {uplink},"
            f" backlog {backlog}, {alarms} open alarms"
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down in order."""
        cfg = self.cfg
        store = await Store.open(
            cfg.store.path,
            quota=int(cfg.store.quota),
            reserve=int(cfg.store.reserve),
            sinks=[MqttSink.name] + (["influx"] if cfg.upstream.influx is not None else []),
            lanes={"influx": [Lane.TELEMETRY]},  # alarms and events go to MQTT only
        )
        drivers = build(cfg, self.clock)
        try:
            async with AsyncExitStack() as stack:
                await self._run(stop, store, drivers, stack)
        finally:
            drivers.close()
            await store.close()
        log.info("stopped cleanly")
