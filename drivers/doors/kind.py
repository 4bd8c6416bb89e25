"""The ``door_terminal`` kind: every door terminal in one group, one local-broker session.

The group's own pipeline stages, after the pseudonymise stage: dedup (its memory in
``<store>.door-ids.json``, event ids only, already made safe) and the door tracker.
"""

from drivers.base import DriverGroup, GroupPlan, Ports, config_key
from drivers.doors.terminals import DoorTerminals
from gateway.config.doors import DoorTerminalConfig
from gateway.config.models import Config
from gateway.pipeline.dedup import Dedup
from gateway.pipeline.doors import DoorTracking


def plan(cfg: Config, ports: Ports) -> list[GroupPlan]:
    """One group for all terminals: their events stream in, unlocks go out through it."""
    terminals = [d for d in cfg.devices if isinstance(d, DoorTerminalConfig)]
    if not terminals:
        return []
    broker, privacy = cfg.local_broker, cfg.privacy
    assert broker is not None  # the loader insists on both
    assert privacy is not None
    site, gateway = cfg.gateway.site_id, cfg.gateway.gateway_id
    key = config_key(
        broker.model_dump(mode="json"),
        privacy.model_dump(mode="json"),
        [d.model_dump(mode="json") for d in terminals],
        [str(p) for p in cfg.profile_dirs],
    )

    def build() -> DriverGroup:
        component = DoorTerminals(
            broker,
            terminals,
            # not the buttons' client id: two sessions with one id throw each other off
            client_id=broker.client_id_for(site, gateway) + "-doors",
            clock=ports.clock,
            profile_dirs=cfg.profile_dirs,
            count=ports.count,
            settled=ports.settled,
        )
        path = cfg.store.path.with_name(cfg.store.path.name + ".door-ids.json")
        windows = {t.id: (t.dedup_window, t.dedup_size) for t in terminals}
        dedup = Dedup.open(path, windows, ports.clock, ports.settled)

        return DriverGroup(
            streams=[("driver:door_terminals", component)],
            actuators=[component],
            probes={"local_broker:doors": component.connected.is_set},
            rejects={"door_terminals": lambda: dedup.merged(component.rejected)},
            closers=[dedup.memory.close],
            stages=[dedup, DoorTracking(component.tracker, ports.clock.mono)],
        )

    return [GroupPlan("door_terminals", key, build)]
