"""What the store hands out and reports: rows, figures, the full error, row sizes."""

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from gateway.core.errors import TransientError
from gateway.core.messages import Json, Lane, Point, Record
from gateway.store.codec import decode_fields, decode_points
from gateway.store.db import left_in

INSERT = (
    "INSERT INTO outbox(lane, seq, topic, device, ts, synced, retain, body, size, expires)"
    " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
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


Stored = tuple[int, int, int, str, str, float, int, int, str]  # a row as SELECTed by the ledger
_NONE: Mapping[str, Json] = MappingProxyType({})  # the fields of every telemetry row
_TELEMETRY = int(Lane.TELEMETRY)
_LANES = tuple(Lane)  # Lane(n) is _LANES[n], without the enum call


def rows(stored: Sequence[Stored]) -> list[Row]:
    """Typed rows of ``select``'s result: fields decoded, points as stored (``Row.points``)."""
    fields = decode_fields
    return [
        Row(i, _LANES[ln], seq, topic, device, ts, bool(synced), bool(retain), _NONE, body)
        if ln == _TELEMETRY
        else Row(
            i, _LANES[ln], seq, topic, device, ts, bool(synced), bool(retain), fields(body), ""
        )
        for i, ln, seq, topic, device, ts, synced, retain, body in stored
    ]


def replaced_record(moved: Path) -> Record:
    """The upstream event that the store's file was replaced: why, where it went, what it held.

    ``moved`` is where ``gateway.store.db`` moved the old file (``<name>.<why>-<stamp>``); what
    it still held is read from it read-only, best effort (``left_in``).
    """
    left = left_in(moved, {int(ln): ln.label for ln in Lane})
    reason = "newer" if ".newer-" in moved.name else "corrupt"
    fields: dict[str, Json] = {
        "reason": reason,
        "moved_to": moved.name,
        "rows_left": None if left is None else sum(left.values()),
        "alarms_left": None if left is None else left.get(Lane.ALARM.label, 0),
    }
    return Record(Lane.EVENT, "store-replaced", time.time(), False, fields=fields)
