"""The ``http_push`` kind: every entry in one group, one HTTP listener.

Readings go through an mqtt_json inbox (``JsonDevices`` without a broker), door events through
a door-terminal inbox (``DoorTerminals`` without a broker), so a pushed message is mapped,
limited, timed out and pseudonymised exactly as the broker kind's. Door events get the door
kind's own stages: event-id dedup (its memory in ``<store>.push-ids.json``) and the tracker.
"""

from drivers.base import DriverGroup, GroupPlan, Ports, config_key
from drivers.doors.terminals import DoorTerminals
from drivers.mqtt_json.devices import JsonDevices
from gateway.config.http_push import HttpPushDeviceConfig
from gateway.config.models import Config
from gateway.core.items import Stage
from gateway.pipeline.dedup import Dedup
from gateway.pipeline.doors import DoorTracking


def plan(cfg: Config, ports: Ports) -> list[GroupPlan]:
    """One group for all entries (one listener)."""
    entries = [d for d in cfg.devices if isinstance(d, HttpPushDeviceConfig)]
    if not entries:
        return []
    listener = cfg.http_push
    assert listener is not None  # the loader insists on it
    key = config_key(
        listener.model_dump(mode="json"),
        [d.model_dump(mode="json") for d in entries],
        None if cfg.privacy is None else cfg.privacy.model_dump(mode="json"),
        [str(p) for p in cfg.profile_dirs],
    )

    def build() -> DriverGroup:
        from drivers.http_push.server import PushServer  # aiohttp: only where HTTP devices are

        json_entries = [e.as_json() for e in entries if e.readings is not None]
        terminals = [e.as_terminal() for e in entries if e.door is not None]
        readings = doors = None
        if json_entries:
            readings = JsonDevices(None, json_entries, client_id="", clock=ports.clock,
                                   count=ports.count, gauge=ports.gauge)  # fmt: skip
        if terminals:
            doors = DoorTerminals(None, terminals, client_id="", clock=ports.clock,
                                  profile_dirs=cfg.profile_dirs, count=ports.count)  # fmt: skip
        server = PushServer(listener, entries, readings=readings, doors=doors,
                            records=cfg.records, clock=ports.clock, settled=ports.settled,
                            count=ports.count)  # fmt: skip
        stages: list[Stage] = []
        closers = []
        rejects = {"http_push": lambda: dict(server.rejected)}
        if readings is not None:
            rejects["http_push:readings"] = lambda: dict(readings.rejected)
        if doors is not None:
            path = cfg.store.path.with_name(cfg.store.path.name + ".push-ids.json")
            windows = {t.id: (t.dedup_window, t.dedup_size) for t in terminals}
            dedup = Dedup.open(path, windows, ports.clock)
            stages = [dedup, DoorTracking(doors.tracker, ports.clock.mono)]
            closers.append(dedup.memory.close)
            rejects["http_push:doors"] = lambda: dedup.merged(doors.rejected)
        return DriverGroup(
            streams=[("driver:http_push", server)],
            probes={"http_push": server.listening.is_set},
            rejects=rejects,
            closers=closers,
            stages=stages,
        )

    return [GroupPlan("http_push", key, build)]
