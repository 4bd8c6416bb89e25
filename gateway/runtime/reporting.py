"""The daemon's proof-of-service parts: the availability recorder, its writer, the daily reports.

Contract:
- ``Reporting`` lives as long as the ``Runtime``: its ``recorder`` is what every pipeline's
  availability stage hands changes and readings to, whichever component restarts.
- ``components`` are the recorder's writer (``reports:recorder``) and, unless
  ``reports.publish_at`` is null, the daily publisher (``reports:daily``). Both stop with the
  alarm engine, after the inputs, so the last readings are written before the store closes.
  A reload restarts the writer when a device's kind, supplier or interval, the zone or the
  retention changed (its ``begin`` then records the devices as configured, not a restart), and
  the publisher when the reports or alarms section changed.
- ``service`` is the local API's ``AvailabilitySource``; it reads the zone at each request.
"""

import dataclasses
from collections.abc import Callable

from drivers.base import config_key
from gateway.config.doors import DoorTerminalConfig
from gateway.config.http_push import HttpPushDeviceConfig
from gateway.config.models import Config, DeviceConfig
from gateway.config.mqtt_json import MqttJsonDeviceConfig
from gateway.core.clock import Clock
from gateway.reports.daily import DailyReports
from gateway.reports.history import DeviceInfo
from gateway.reports.recorder import Recorder
from gateway.reports.service import ReportService
from gateway.runtime.components import ALARMS, Component
from gateway.store import Store


def device_info(d: DeviceConfig) -> list[DeviceInfo]:
    """What the reports show of a config entry's devices: each device a fleet lists (an
    mqtt_json or http_push entry's ids, a door config's terminals), with the entry's kind,
    supplier and expected interval (of a kind that polls or reports on a schedule)."""
    interval = getattr(d, "interval", None)
    supplier = getattr(d, "supplier", None)
    if isinstance(d, DoorTerminalConfig):
        ids = d.terminals
    elif isinstance(d, MqttJsonDeviceConfig | HttpPushDeviceConfig):
        ids = d.device_ids
    else:
        ids = [d.id]
    every = float(interval) if interval else None
    return [DeviceInfo(device, d.kind, supplier, every) for device in ids]


class Reporting:
    """The recorder for the whole run, and the components that write and publish."""

    def __init__(self, cfg: Config, clock: Clock) -> None:
        self.clock = clock
        self.recorder = Recorder(clock, cfg.alarms.timezone)
        self.daily: DailyReports | None = None  # while it runs

    def service(self, store: Store, zone: Callable[[], str]) -> ReportService:
        """Availability reports of the running gateway, in the zone ``zone()`` names."""
        return ReportService(store, self.recorder, zone, self.clock)

    def components(self, cfg: Config, store: Store, synced: Callable[[], bool]) -> list[Component]:
        """The recorder's writer and, if configured, the daily publisher."""
        devices = [info for d in cfg.devices for info in device_info(d)]
        zone, keep = cfg.alarms.timezone, cfg.reports.retention_days
        key = config_key([dataclasses.asdict(d) for d in devices], zone, keep)
        out = [
            Component("reports:recorder", ALARMS, key,
                      lambda: self.recorder.run(store, devices, zone, keep)),
        ]  # fmt: skip
        if cfg.reports.publish_at is not None:
            key = config_key(
                cfg.reports.model_dump(mode="json"), cfg.alarms.model_dump(mode="json")
            )
            out.append(Component("reports:daily", ALARMS, key,
                                 lambda: self._run_daily(cfg, store, synced)))  # fmt: skip
        return out

    async def _run_daily(self, cfg: Config, store: Store, synced: Callable[[], bool]) -> None:
        zone = cfg.alarms.timezone
        daily = DailyReports(
            self.service(store, lambda: zone), store, self.clock, synced, cfg.reports, cfg.alarms
        )
        self.daily = daily
        try:
            await daily.run()
        finally:
            self.daily = None
