"""The daemon's welfare checks: the monitor, while the config has a ``welfare`` section.

Contract:
- ``WelfareWatch`` lives as long as the ``Runtime``: ``see`` is what every pipeline's welfare
  stage hands items to, whichever component restarts; it drops them while no monitor runs
  (between two runs of a reload: a few milliseconds).
- ``components`` is the monitor (``welfare``), stopped with the alarm engine after the inputs,
  so the last signs are saved before the store closes; a reload restarts it when the welfare
  section, the zone or the doors' terminals changed. ``desk`` and ``snapshot`` read the monitor
  running now, or None.
"""

import asyncio

from drivers.base import config_key
from gateway.config.doors import DoorTerminalConfig
from gateway.config.models import Config
from gateway.config.welfare import WelfareConfig
from gateway.core.clock import Clock
from gateway.core.items import Item
from gateway.core.snapshots import WelfareSnapshot
from gateway.runtime.components import ALARMS, Component
from gateway.store import Store
from gateway.welfare.monitor import AlarmPort, Parts, WelfareMonitor


def terminals(cfg: Config) -> dict[str, str]:
    """Door id -> the id of the terminal that reports it."""
    return {
        door.id: door.terminal or dev.id
        for dev in cfg.devices
        if isinstance(dev, DoorTerminalConfig)
        for door in dev.doors
    }


class WelfareWatch:
    """The monitor of the current config, when it has one."""

    def __init__(self) -> None:
        self.monitor: WelfareMonitor | None = None

    def see(self, item: Item) -> None:
        """The pipeline's welfare stage: every item, to the monitor running now."""
        if self.monitor is not None:
            self.monitor.item(item)

    def desk(self) -> WelfareMonitor | None:
        """The monitor running now (the local API's port), or None."""
        return self.monitor

    def snapshot(self) -> WelfareSnapshot | None:
        """Its counts, for health and metrics; None when not configured or not running."""
        return None if self.monitor is None else self.monitor.snapshot()

    def components(
        self, cfg: Config, alarms: AlarmPort, store: Store, clock: Clock, begun: asyncio.Event
    ) -> list[Component]:
        """The monitor, if ``cfg`` has a ``welfare`` section."""
        welfare = cfg.welfare
        if welfare is None:
            return []
        zone, doors = cfg.alarms.timezone, terminals(cfg)
        key = config_key(welfare.model_dump(mode="json"), zone, doors)
        parts = Parts(alarms, store, clock, begun)
        return [Component("welfare", ALARMS, key, lambda: self._run(welfare, zone, doors, parts))]

    async def _run(
        self, cfg: WelfareConfig, zone: str, doors: dict[str, str], parts: Parts
    ) -> None:
        monitor = WelfareMonitor(cfg, zone, doors, parts)
        self.monitor = monitor
        try:
            await monitor.run()
        finally:
            self.monitor = None
