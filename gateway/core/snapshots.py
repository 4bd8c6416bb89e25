"""What components publish about themselves: frozen snapshots, taken on demand.

Contract:
- Every type here is a frozen, slotted value: a component's ``snapshot()`` copies its figures
  out, so a reader can keep it, compare it or render it later without seeing it change and
  without reaching into the component. Health, metrics, ``cgw status`` and the ``status``
  platform action read nothing else of a running gateway (``gateway.ops.snapshot`` holds the
  aggregate the composition root builds from these).
- They live in the core so that every layer can publish one without importing the layers that
  read them.
- Counters are as the component keeps them: they start over when a reload restarts it.
- Mappings are fresh copies; nobody mutates them after the snapshot is taken.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Figures for status and metrics."""

    rows: dict[str, int]
    used_bytes: int
    quota_bytes: int
    evicted: int
    dropped: int
    quarantined: int
    purged: int = 0  # personal data deleted at the end of its retention
    problem: str = ""  # why the store cannot write now (a full disk); "" when it can


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    """The outbox's in-memory figures and where its files are."""

    stats: StoreStats
    path: Path  # the database; its WAL is ``<path>-wal``
    stand_in: str = ""  # why the configured store cannot be used: ``path`` is a stand-in

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
    provisional: int = 0  # MQTT: alarm transitions published before the store took them
    dead_by_lane: Mapping[str, int] = field(default_factory=dict)  # lane label -> dead-lettered


@dataclass(frozen=True, slots=True)
class OpenAlarm:
    """What health and metrics need of one open alarm."""

    id: str
    severity: str  # critical | warning | info
    unacknowledged: bool  # nobody took it on yet


CHANNEL_DOWN_AFTER = 3  # failed messages in a row that make a staff channel down


@dataclass(frozen=True, slots=True)
class ModemState:
    """A local 4G modem, as its last check found it (``gateway.notify.modem``)."""

    port: str
    open: bool = False  # the AT session is up
    sim: str = "unknown"  # ready | PIN required | PUK required | not inserted | unknown
    registered: bool = False  # on the mobile network (home or roaming)
    csq: int | None = None  # signal quality 0-31 (AT+CSQ); None when unknown
    operator: str = ""
    checked: float | None = None  # wall time of the last check
    last_send: float | None = None  # wall time of the last SMS or call that went through
    resets: int = 0  # faults that closed the session (or kept it from opening)
    problem: str = ""  # why it cannot send now; "" when it can

    @property
    def ok(self) -> bool:
        """Can send: open, SIM ready, registered."""
        return not self.problem


@dataclass(frozen=True, slots=True)
class ChannelState:
    """One staff channel's deliveries (``gateway.alarms.channels``)."""

    delivered: int = 0  # messages that got through
    failed: int = 0  # messages that did not, after every retry
    in_a_row: int = 0  # failed messages since the last delivered one
    last_ok: float | None = None  # wall time of the last delivered message
    last_error: str = ""
    modem: ModemState | None = None  # a modem channel's modem, as last checked

    @property
    def down(self) -> bool:
        """Failed ``CHANNEL_DOWN_AFTER`` messages in a row, or its modem cannot send."""
        return self.in_a_row >= CHANNEL_DOWN_AFTER or (self.modem is not None and not self.modem.ok)


@dataclass(frozen=True, slots=True)
class AlarmsSnapshot:
    """The alarm engine: whether it has loaded its open alarms, which are open, acks so far."""

    ready: bool
    open: tuple[OpenAlarm, ...]
    acked: Mapping[str, tuple[int, float]]  # severity -> (acknowledged, sum of seconds to ack)
    channels: Mapping[str, ChannelState] = field(default_factory=dict)  # staff channels, by id
    samples_dropped: int = 0  # readings the engine refused while too many waited
    siren: str | None = None  # the severity the siren sounds for; None while quiet


@dataclass(frozen=True, slots=True)
class ApiSnapshot:
    """The local alarm API."""

    where: str  # host:port
    listening: bool


@dataclass(frozen=True, slots=True)
class ConsoleSnapshot:
    """The field console: who is signed in, who watches, and how sign-ins went."""

    sessions: int  # open sessions
    streams: int  # pages following the live stream now
    streams_dropped: int  # streams ended for not keeping up
    logins_ok: int
    logins_failed: int
    throttled: int  # failed sign-ins answered "too many attempts" at once
    cert_ends: float | None = None  # when its HTTPS certificate runs out; None without HTTPS
    cert_days_left: float | None = None  # days from now to ``cert_ends`` (negative: expired)


@dataclass(frozen=True, slots=True)
class InputState:
    """One configured input device: GPIO, MQTT button, door terminal, Modbus contact points."""

    id: str
    kind: str
    running: bool | None  # None until known
    reason: str  # why it does not run ("" while it does)
    alarmed: bool  # a contact rule names it: not running is then a gateway failure


@dataclass(frozen=True, slots=True)
class InputsSnapshot:
    """Inputs: broker connections, rejected messages, input devices, contacts no rule names."""

    connections: Mapping[str, bool]  # e.g. "local_broker:buttons" -> subscribed
    rejects: Mapping[str, Mapping[str, int]]  # input -> reason -> count
    devices: tuple[InputState, ...] = ()
    unmatched: Mapping[str, int] = field(default_factory=dict)  # device -> contacts no rule names


@dataclass(frozen=True, slots=True)
class CommandsSnapshot:
    """The platform command channel; ``executed`` and friends count only while it runs."""

    running: bool
    executed: int
    unaudited: int  # rejections counted but not audited (rate limit)
    rejected: Mapping[str, int]  # reason -> count
    dropped: int  # command messages that arrived while it was not running
    received: Mapping[str, int] = field(default_factory=dict)  # wire form -> messages read


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
    implausible: int = 0  # readings outside their point's physical range (quality "bad")
    disabled: Mapping[str, str] = field(default_factory=dict)  # point -> why it is not read
    reason: str = ""  # why it is offline (the last failed poll's error), "" while online


@dataclass(frozen=True, slots=True)
class WelfareSnapshot:
    """Welfare checks: households watched, quiet too long now, on a planned absence."""

    watched: int
    quiet: int  # a welfare check is open
    absent: int  # on a planned absence now
    paused: int  # a source of theirs is offline: their quiet is not counted
