"""The core's message types: small, frozen, slotted dataclasses.

Values are ``bool | int | float | str``; a value that could not be read is ``None`` with a
quality that says why. A missing value is never turned into 0.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import NamedTuple

Value = bool | int | float | str
Json = None | bool | int | float | str | Sequence["Json"] | Mapping[str, "Json"]


class Lane(IntEnum):
    """Store lanes, in drain order: a lower number always drains first."""

    ALARM = 0
    EVENT = 1
    TELEMETRY = 2

    @property
    def label(self) -> str:
        """The lane's name in the upstream contract."""
        return self.name.lower()


class Quality(StrEnum):
    """How far a reading can be trusted."""

    GOOD = "good"
    STALE = "stale"  # last known value, repeated
    COMM_ERROR = "comm_error"  # the device did not deliver this point on this poll
    BAD = "bad"  # delivered, but outside the point's physical range


@dataclass(frozen=True, slots=True)
class Reading:
    """One point of one poll."""

    name: str
    value: Value | None
    unit: str
    quality: Quality


@dataclass(frozen=True, slots=True)
class Sample:
    """All points of one device from one poll."""

    device: str
    ts: float  # wall-clock seconds at the end of the poll
    readings: tuple[Reading, ...]


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """A device's availability changed."""

    device: str
    online: bool
    ts: float
    reason: str  # why it went offline ("timeout", "connection refused", ...) or "ok"
    disabled: tuple[str, ...] = ()  # points no longer read (the device refused them)


@dataclass(frozen=True, slots=True)
class ContactEvent:
    """A contact input changed: an emergency button, a fire-panel relay, a tamper switch.

    ``active`` is the alarm sense, already corrected for normally-open/normally-closed wiring
    and the input's active level: True means "pressed" / "in alarm". ``event_id`` is the
    source's own id where it has one (MQTT buttons), so repeats can be recognised; ``source``
    names the config that mapped it (an MQTT button's id), whose dedup window applies.
    """

    device: str
    input: str
    active: bool
    ts: float
    event_id: str = ""
    held: bool = False  # the input stayed active for its hold time (a long press)
    source: str = field(default="", compare=False)


class Point(NamedTuple):
    """One reading of a telemetry record, as stored and handed to sinks."""

    name: str
    value: Value | None
    unit: str
    quality: Quality


@dataclass(frozen=True, slots=True)
class Record:
    """A message for the store: what happened, as typed fields; sinks choose the wire format.

    ``topic`` is below the gateway's root. A telemetry record (lane ``TELEMETRY``) carries the
    readings of one poll of ``device`` in ``points``; every other record carries the fields of
    its kind in ``fields``, in the order the upstream contract lists them. The envelope
    (gateway id, lane, seq, timestamp, clock flag) is added by the sink that publishes it.
    """

    lane: Lane
    topic: str
    ts: float
    clock_synced: bool
    device: str = ""
    retain: bool = False
    expires: float | None = None  # wall time its retention ends: purged then, delivered or not
    fields: Mapping[str, Json] = field(default_factory=dict)
    points: tuple[Point, ...] = ()
