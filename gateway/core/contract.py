"""The upstream contract: topics and payloads, version 1 (see docs/mqtt-api.md).

Every stream message is one JSON object: an envelope (``v``, ``gateway_id``, ``site_id``,
``lane``, ``seq``, ``ts``, ``clock_synced``) followed by the fields of its kind. ``(gateway_id,
lane, seq)`` is the dedup key: delivery is at-least-once. A JSON Schema for every message
kind ships in ``gateway/schemas/`` and the tests validate what is published against it.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from gateway.core.messages import DeviceStatus, Lane, Record, Sample

if TYPE_CHECKING:
    from gateway.alarms.model import Transition
    from gateway.core.access import AccessEvent

SCHEMA_VERSION = 1


def iso(ts: float) -> str:
    """``1800000000.5`` -> ``2027-01-15T08:00:00.500Z`` (UTC, milliseconds)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who publishes: the topic prefix and the envelope's identity fields."""

    root: str
    site_id: str
    gateway_id: str

    @property
    def prefix(self) -> str:
        """``<root>/<site>/<gateway>``."""
        return f"{self.root}/{self.site_id}/{self.gateway_id}"

    def topic(self, suffix: str) -> str:
        """The full topic of a message whose topic below the gateway is ``suffix``."""
        return f"{self.prefix}/{suffix}"

    def status_payload(self, state: str, ts: float) -> bytes:
        """The retained gateway status (birth "online", last will "offline")."""
        return _dumps(
            {
                "v": SCHEMA_VERSION,
                "gateway_id": self.gateway_id,
                "site_id": self.site_id,
                "state": state,
                "ts": iso(ts),
            }
        ).encode()


class StoredMessage(Protocol):
    """What ``render`` needs of a stored row."""

    @property
    def lane(self) -> Lane: ...
    @property
    def seq(self) -> int: ...
    @property
    def topic(self) -> str: ...
    @property
    def ts(self) -> float: ...
    @property
    def synced(self) -> bool: ...
    @property
    def body(self) -> str: ...


def render(ident: Identity, msg: StoredMessage) -> tuple[str, bytes]:
    """Topic and payload of a stored message: the envelope spliced before the stored body."""
    head = (
        f'{{"v":{SCHEMA_VERSION},"gateway_id":{json.dumps(ident.gateway_id)},'
        f'"site_id":{json.dumps(ident.site_id)},"lane":"{msg.lane.label}","seq":{msg.seq},'
        f'"ts":"{iso(msg.ts)}","clock_synced":{"true" if msg.synced else "false"},'
    )
    return ident.topic(msg.topic), (head + msg.body[1:]).encode()


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def telemetry_record(sample: Sample, synced: bool) -> Record:
    """A telemetry message: every point of one device from one poll."""
    points = [
        {"name": r.name, "value": r.value, "unit": r.unit, "quality": r.quality.value}
        for r in sample.readings
    ]
    body = _dumps({"device": sample.device, "points": points})
    return Record(
        Lane.TELEMETRY, f"telemetry/{sample.device}", body, sample.ts, synced, sample.device
    )


def status_record(status: DeviceStatus, synced: bool) -> Record:
    """A device availability change, published retained on ``device/<id>/status``."""
    body = _dumps(
        {
            "device": status.device,
            "state": "online" if status.online else "offline",
            "reason": status.reason,
        }
        | ({"disabled": list(status.disabled)} if status.disabled else {})
    )
    return Record(
        Lane.EVENT,
        f"device/{status.device}/status",
        body,
        status.ts,
        synced,
        status.device,
        retain=True,
    )


def alarm_record(t: "Transition", synced: bool) -> Record:
    """An alarm transition, in the alarm lane on ``alarm/<alarm_id>``."""
    a = t.alarm
    body = _dumps(
        {
            "alarm_id": a.id,
            "state": a.state.value,
            "previous": None if t.previous is None else t.previous.value,
            "note": t.note,
            "cause": a.cause,
            "rule": a.rule,
            "kind": a.kind,
            "device": a.device,
            "severity": a.severity,
            "latched": a.latched,
            "active": a.active,
            "message": a.message,
            "value": a.value,
            "raised_at": iso(a.raised_at),
            "notified_at": None if a.notified_at is None else iso(a.notified_at),
            "acked_at": None if a.acked_at is None else iso(a.acked_at),
            "acked_by": a.acked_by or None,
            "cleared_at": None if a.cleared_at is None else iso(a.cleared_at),
            "time_to_ack_s": None if a.time_to_ack is None else round(a.time_to_ack, 3),
            "repeats": a.repeats,
            "escalation_step": a.tier + 1,
        }
    )
    ts = a.history[-1][0] if a.history else a.raised_at
    return Record(Lane.ALARM, f"alarm/{a.id}", body, ts, synced, a.device)


def access_record(ev: "AccessEvent", synced: bool) -> Record:
    """A door-terminal event on ``event/<terminal>`` in the event lane.

    A personal event (it names a pseudonymised person or a snapshot) carries its retention:
    the store purges it then, delivered or not.
    """
    body = _dumps(
        {
            "device": ev.device,
            "door": ev.door or None,
            "kind": ev.kind,
            "reason": ev.reason or None,
            "credential": ev.credential,
            "person": ev.person or None,
            "person_previous": ev.person_previous or None,
            "snapshot_ref": ev.snapshot_ref or None,
            "event_id": ev.event_id or None,
            "terminal_ts": None if ev.terminal_ts is None else iso(ev.terminal_ts),
            "gateway_ts": iso(ev.gateway_ts),
            "skew_s": None if ev.skew is None else round(ev.skew, 3),
            "skew_flagged": ev.skew_flagged,
            "data_class": ev.data_class,
            "retention_s": ev.retention,
        }
    )
    expires = ev.gateway_ts + ev.retention if ev.retention is not None else None
    return Record(
        Lane.EVENT, f"event/{ev.device}", body, ev.gateway_ts, synced, ev.device, expires=expires
    )
