"""What the operations side reads of a running gateway: frozen snapshots, taken on demand.

Contract:
- Every type here is a frozen, slotted value: taking one copies the figures out of the live
  component, so a reader can keep it, compare it or render it later without seeing it change
  and without reaching into the component. Health, metrics, ``cgw status`` and the ``status``
  platform action read nothing else of the running gateway.
- ``GatewaySnapshot`` is the aggregate the composition root builds when asked (each scrape,
  each ``/health``, each status line); nothing in ``gateway.ops`` knows where its parts came
  from. A part is None only when the component is absent: not configured, or between two
  runs while a reload restarts it.
- Counters are as the component keeps them: they start over when a reload restarts it.
- Mappings are fresh copies; nobody mutates them after the snapshot is taken.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.store.outbox import StoreStats


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


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    """The outbox's in-memory figures and where its files are."""

    stats: StoreStats
    path: Path  # the database; its WAL is ``<path>-wal``

    @property
    def backlog(self) -> Mapping[str, int]:
        """Rows each sink has not confirmed (an upper bound), by sink name."""
        return self.stats.rows


@dataclass(frozen=True, slots=True)
class SinkSnapshot:
    """One upstream sink: its connection and its counters."""

    connected: bool  # MQTT: the session is up; InfluxDB: the last write succeeded
    last_error: str  # "" when there was none
    delivered: int  # messages (MQTT) or rows (InfluxDB) the server confirmed
    reconnects: int = 0  # connections lost or refused
    dead_lettered: int = 0  # rows the server refused for good
    retries: int = 0  # failed writes retried


@dataclass(frozen=True, slots=True)
class OpenAlarm:
    """What health and metrics need of one open alarm."""

    id: str
    severity: str  # critical | warning | info
    unacknowledged: bool  # nobody took it on yet


@dataclass(frozen=True, slots=True)
class AlarmsSnapshot:
    """The alarm engine: whether it has loaded its open alarms, which are open, acks so far."""

    ready: bool
    open: tuple[OpenAlarm, ...]
    acked: Mapping[str, tuple[int, float]]  # severity -> (acknowledged, sum of seconds to ack)


@dataclass(frozen=True, slots=True)
class ApiSnapshot:
    """The local alarm API."""

    where: str  # host:port
    listening: bool


@dataclass(frozen=True, slots=True)
class InputsSnapshot:
    """Streaming inputs: their broker connections and the messages they rejected."""

    connections: Mapping[str, bool]  # e.g. "local_broker:buttons" -> subscribed
    rejects: Mapping[str, Mapping[str, int]]  # input -> reason -> count


@dataclass(frozen=True, slots=True)
class CommandsSnapshot:
    """The platform command channel; ``executed`` and friends count only while it runs."""

    running: bool
    executed: int
    unaudited: int  # rejections counted but not audited (rate limit)
    rejected: Mapping[str, int]  # reason -> count
    dropped: int  # command messages that arrived while it was not running


@dataclass(frozen=True, slots=True)
class LinkageSnapshot:
    """The fire linkage of escape routes."""

    active: bool  # escape routes are held released
    unlocks_sent: int


@dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    """One polled device: availability and polling figures."""

    id: str
    online: bool | None  # None until its first poll
    polls: int
    failed_polls: int
    latency_sum: float  # seconds over all polls
    last_latency: float  # seconds
    bad_frames: int = 0  # answers that did not fit their request (never taken as values)
    disabled: Mapping[str, str] = field(default_factory=dict)  # point -> why it is not read


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
