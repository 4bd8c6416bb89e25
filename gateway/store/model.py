"""What the store hands out and reports: rows, figures, the full error, row sizes."""

import json
from dataclasses import dataclass

from gateway.core.errors import TransientError
from gateway.core.messages import Lane, Record

ROW_OVERHEAD = 64  # bytes per row on top of topic and body: ids, stamps, index entry


class StoreFullError(TransientError):
    """An alarm or event did not fit even after evicting all telemetry."""


@dataclass(frozen=True, slots=True)
class Row:
    """A stored message as a sink sees it."""

    id: int
    lane: Lane
    seq: int
    topic: str
    device: str
    ts: float
    synced: bool
    retain: bool
    body: str


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


def size(rec: Record) -> int:
    """The bytes a record is charged against the quota."""
    return len(rec.body) + len(rec.topic) + len(rec.device) + ROW_OVERHEAD


def gap_body(device: str, first: str, last: str, count: int) -> str:
    """The body of a data-gap report: which device lost how many readings, and when."""
    return json.dumps(
        {"device": device, "reason": "quota", "count": count, "from": first, "to": last},
        separators=(",", ":"),
    )
