"""What the store hands out and reports: rows, figures, the full error, row sizes."""

from collections.abc import Mapping
from typing import NamedTuple

from gateway.core.errors import TransientError
from gateway.core.messages import Json, Lane, Point, Record
from gateway.store.codec import decode_points

ROW_OVERHEAD = 64  # bytes per row on top of topic and body: ids, stamps, index entry


class StoreFullError(TransientError):
    """An alarm or event did not fit even after evicting all telemetry."""


class Row(NamedTuple):
    """A stored message as a sink sees it.

    A named tuple rather than a dataclass: a drain builds thousands a second, and a tuple is
    built without an ``__init__`` call per field.
    """

    id: int
    lane: Lane
    seq: int
    topic: str
    device: str
    ts: float
    synced: bool
    retain: bool
    fields: Mapping[str, Json]  # every lane but telemetry: the fields of its kind
    points_json: str  # telemetry: the readings of one poll, as stored (``gateway.store.codec``)

    @property
    def points(self) -> tuple[Point, ...]:
        """The readings of one poll, decoded (empty for other lanes)."""
        return decode_points(self.points_json) if self.points_json else ()


def size(rec: Record, body: str) -> int:
    """The bytes a record is charged against the quota, ``body`` being its stored form."""
    return len(body) + len(rec.topic) + len(rec.device) + ROW_OVERHEAD


def gap_fields(device: str, first: str, last: str, count: int) -> dict[str, Json]:
    """The fields of a data-gap report: which device lost how many readings, and when."""
    return {"device": device, "reason": "quota", "count": count, "from": first, "to": last}
