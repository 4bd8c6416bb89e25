"""What the operations side reads of a running gateway: one aggregate of the parts' snapshots.

Contract:
- Each part is the frozen snapshot a component publishes (``gateway.core.snapshots``, taken by
  its ``snapshot()``); health, metrics, ``cgw status`` and the ``status`` platform action read
  nothing else of the running gateway.
- ``GatewaySnapshot`` is the aggregate the composition root builds when asked (each scrape,
  each ``/health``, each status line); nothing in ``gateway.ops`` knows where its parts came
  from. A part is None only when the component is absent: not configured, or between two
  runs while a reload restarts it.
"""

from dataclasses import dataclass

from gateway.core.snapshots import (
    AlarmsSnapshot,
    ApiSnapshot,
    CommandsSnapshot,
    ConsoleSnapshot,
    DeviceSnapshot,
    InputsSnapshot,
    LinkageSnapshot,
    SinkSnapshot,
    StoreSnapshot,
    WelfareSnapshot,
)


@dataclass(frozen=True, slots=True)
class GatewayInfo:
    """Who the gateway is and how long it has run."""

    site_id: str
    gateway_id: str
    version: str
    uptime_s: float
    ready: bool  # the local alarm path (and the local API, when configured) is up
    reloads: int  # config reloads applied
    reload_failures: int  # config reloads refused
    clock_synced: bool  # NTP has set the clock; platform commands are refused until it has


@dataclass(frozen=True, slots=True)
class GatewaySnapshot:
    """Everything health, metrics and status read, taken at one moment."""

    gateway: GatewayInfo
    store: StoreSnapshot
    alarms: AlarmsSnapshot
    mqtt: SinkSnapshot | None  # None until the sink first runs, and while a reload restarts it
    influx: SinkSnapshot | None  # None when not configured (``influx_configured`` says which)
    influx_configured: bool
    api: ApiSnapshot | None  # None when not configured
    inputs: InputsSnapshot
    commands: CommandsSnapshot
    linkage: LinkageSnapshot | None  # None when not configured or not running
    devices: tuple[DeviceSnapshot, ...]
    console: ConsoleSnapshot | None = None  # None when not configured or not running
    welfare: WelfareSnapshot | None = None  # None when not configured or not running
