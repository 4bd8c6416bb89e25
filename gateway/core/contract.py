"""The upstream contract: topics and payloads, version 1.4 (see docs/mqtt-api.md).

Every stream message is one JSON object: an envelope (``v``, ``gateway_id``, ``site_id``,
``epoch``, ``lane``, ``seq``, ``ts``, ``clock_synced``) followed by the fields of its kind.
``(site_id, gateway_id, epoch, lane, seq)`` is the dedup key: delivery is at-least-once, and a
store replaced by a fresh one (corrupt, or moved aside after a downgrade) starts its seqs again
under a new random epoch, so its messages never collide with what the old store sent. A JSON
Schema for every message kind ships in ``gateway/schemas/``; the tests validate what is
published against it.
"""

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from gateway.core.messages import DeviceStatus, Json, Lane, Point, Quality, Record, Sample

if TYPE_CHECKING:
    from gateway.core.access import AccessEvent

SCHEMA_VERSION = 1
# major.minor: 1.1 the store epoch, 1.2 the daily reports, 1.3 records, 1.4 provisional alarm
# transitions (``render_provisional``) and refused publishes
CONTRACT = "1.4"
PROVISIONAL = "alarm-provisional/"  # the topic of an alarm transition the store could not take
REFUSED_TOPIC = "publish-refused"


def iso(ts: float) -> str:
    """``1800000000.5`` -> ``2027-01-15T08:00:00.500Z`` (UTC, milliseconds).

    The text of ``datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")``: the
    microseconds rounded half to even, then cut to milliseconds. The date and time of a whole
    second are kept, as every message of a backlog drain asks for the same few seconds.
    """
    frac, whole = math.modf(ts)
    us = round(frac * 1e6)
    seconds = int(whole)
    if us >= 1_000_000:
        seconds, us = seconds + 1, us - 1_000_000
    elif us < 0:
        seconds, us = seconds - 1, us + 1_000_000
    stamp = _seconds.get(seconds)
    if stamp is None:
        if len(_seconds) > 4096:
            _seconds.clear()
        stamp = _seconds[seconds] = datetime.fromtimestamp(seconds, UTC).strftime(
            "%Y-%m-%dT%H:%M:%S"
        )
    return f"{stamp}.{us // 1000:03d}Z"


_seconds: dict[int, str] = {}


@dataclass(frozen=True, slots=True)
class Identity:
    """Who publishes: the topic prefix and the envelope's identity fields."""

    root: str
    site_id: str
    gateway_id: str
    epoch: str = ""  # the store's epoch (``Store.epoch``); "" only where no store is involved

    prefix: str = field(init=False, repr=False, compare=False)  # <root>/<site>/<gateway>
    head: str = field(init=False, repr=False, compare=False)  # the envelope up to the lane

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", f"{self.root}/{self.site_id}/{self.gateway_id}")
        epoch = f'"epoch":{json.dumps(self.epoch)},' if self.epoch else ""
        head = (
            f'{{"v":{SCHEMA_VERSION},"gateway_id":{json.dumps(self.gateway_id)},'
            f'"site_id":{json.dumps(self.site_id)},{epoch}"lane":"'
        )
        object.__setattr__(self, "head", head)

    def topic(self, suffix: str) -> str:
        """The full topic of a message whose topic below the gateway is ``suffix``."""
        return f"{self.prefix}/{suffix}"

    def status_payload(self, state: str, ts: float) -> bytes:
        """The retained gateway status (birth "online", last will "offline")."""
        body: dict[str, Json] = {
            "v": SCHEMA_VERSION,
            "contract": CONTRACT,
            "gateway_id": self.gateway_id,
            "site_id": self.site_id,
        }
        if self.epoch:
            body["epoch"] = self.epoch
        return _dumps({**body, "state": state, "ts": iso(ts)}).encode()


class StoredMessage(Protocol):
    """What ``render`` needs of a stored row."""

    @property
    def lane(self) -> Lane: ...
    @property
    def seq(self) -> int: ...
    @property
    def topic(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def ts(self) -> float: ...
    @property
    def synced(self) -> bool: ...
    @property
    def fields(self) -> Mapping[str, Json]: ...
    @property
    def points_json(self) -> str: ...


def render(ident: Identity, msg: StoredMessage) -> tuple[str, bytes]:
    """Topic and payload of a stored message: the envelope, then the fields of its kind.

    Called by sinks only: the store keeps typed fields, this is the one place that knows the
    wire format. A telemetry message's fields are ``device`` and ``points``; its points come
    as ``points_json`` (``points_json(points)``, which is how the store keeps them), spliced in
    as they are: a drain renders thousands of rows a second.
    """
    head = (
        f'{ident.head}{_LABELS[msg.lane]}","seq":{msg.seq},"ts":"{iso(msg.ts)}",'
        f'"clock_synced":{"true" if msg.synced else "false"}'
    )
    if msg.lane is Lane.TELEMETRY:
        device = _devices.get(msg.device)
        if device is None:
            device = _devices[msg.device] = f',"device":{_dumps(msg.device)},"points":'
            if len(_devices) > 4096:  # device ids come from the config: a small set
                _devices.clear()
        body = f"{device}{msg.points_json}}}"
    elif msg.fields:
        # as the fields were always written: a NaN from a command's arguments stays NaN
        body = "," + json.dumps(msg.fields, separators=(",", ":"), ensure_ascii=False)[1:]
    else:
        body = "}"
    return ident.topic(msg.topic), (head + body).encode()


def render_provisional(ident: Identity, rec: Record) -> tuple[str, bytes]:
    """Topic and payload of an alarm transition the store could not take (a full disk).

    The alarm lane's message without ``seq`` (it has none until the store takes it) and with
    ``"provisional": true``, on ``alarm-provisional/<alarm_id>``: the platform learns of the
    alarm at once, and the same transition comes again on ``alarm/<alarm_id>`` with its seq
    once the store has room. ``(site_id, gateway_id, alarm_id, state, ts)`` names a transition
    in both (docs/mqtt-api.md, contract 1.4).
    """
    head = (
        f'{ident.head}{_LABELS[rec.lane]}","provisional":true,"ts":"{iso(rec.ts)}",'
        f'"clock_synced":{"true" if rec.clock_synced else "false"}'
    )
    body = "," + json.dumps(rec.fields, separators=(",", ":"), ensure_ascii=False)[1:]
    topic = PROVISIONAL + rec.topic.removeprefix("alarm/")
    return ident.topic(topic), (head + body).encode()


_LABELS = {ln: ln.label for ln in Lane}
# rendered once, not per message: a drain renders thousands of rows a second
_devices: dict[str, str] = {}
_fragments: dict[tuple[str, str, Quality], tuple[str, str]] = {}


def points_json(points: Iterable[Point]) -> str:
    """The contract's ``points`` array of ``points``, compact, as ``render`` puts it on the wire.

    Exactly ``json.dumps`` with compact separators of the point objects (non-ASCII kept), but
    with the constant parts of each point rendered once per name, unit and quality.
    """
    return f"[{','.join(map(_point, points))}]"


def _point(p: Point) -> str:
    """``{"name":..,"value":..,"unit":..,"quality":..}``, as ``_dumps`` writes it."""
    key = (p.name, p.unit, p.quality)
    around = _fragments.get(key)
    if around is None:
        if len(_fragments) > 4096:  # names and units come from the config: a small set
            _fragments.clear()
        around = _fragments[key] = (
            f'{{"name":{_dumps(p.name)},"value":',
            f',"unit":{_dumps(p.unit)},"quality":"{p.quality.value}"}}',
        )
    v = p.value
    if type(v) is float:
        text = repr(v) if math.isfinite(v) else "null"  # refused by telemetry_record already
    elif v is None:
        text = "null"
    elif v is True:
        text = "true"
    elif v is False:
        text = "false"
    elif type(v) is int:
        text = repr(v)
    else:
        text = _dumps(v)
    return around[0] + text + around[1]


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def telemetry_record(sample: Sample, synced: bool) -> Record:
    """A telemetry message: every point of one device from one poll."""
    for r in sample.readings:
        if isinstance(r.value, float) and not math.isfinite(r.value):
            # as json.dumps(allow_nan=False) says it: JSON has no NaN (RFC 8259 section 6)
            raise ValueError(f"Out of range float values are not JSON compliant: {r.value!r}")
    return Record(
        Lane.TELEMETRY,
        f"telemetry/{sample.device}",
        sample.ts,
        synced,
        sample.device,
        points=tuple(Point(r.name, r.value, r.unit, r.quality) for r in sample.readings),
    )


def status_record(status: DeviceStatus, synced: bool) -> Record:
    """A device availability change, published retained on ``device/<id>/status``."""
    fields: dict[str, Json] = {
        "device": status.device,
        "state": "online" if status.online else "offline",
        "reason": status.reason,
    }
    if status.disabled:
        fields["disabled"] = list(status.disabled)
    return Record(
        Lane.EVENT,
        f"device/{status.device}/status",
        status.ts,
        synced,
        status.device,
        retain=True,
        fields=fields,
    )


def access_record(ev: "AccessEvent", synced: bool) -> Record:
    """A door-terminal event on ``event/<terminal>`` in the event lane.

    A personal event (it names a pseudonymised person or a snapshot) carries its retention:
    the store purges it then, delivered or not.
    """
    fields: dict[str, Json] = {
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
    expires = ev.gateway_ts + ev.retention if ev.retention is not None else None
    return Record(
        Lane.EVENT,
        f"event/{ev.device}",
        ev.gateway_ts,
        synced,
        ev.device,
        expires=expires,
        fields=fields,
    )


def refused_record(
    msg: StoredMessage, topic: str, size: int, attempts: int, ts: float, synced: bool
) -> Record:
    """The event that the broker refused ``msg`` (published on ``topic``, ``size`` bytes): it
    closed the connection on each of ``attempts`` publishes, so the gateway dead-lettered it."""
    fields: dict[str, Json] = {
        "refused_lane": msg.lane.label,
        "refused_seq": msg.seq,
        "refused_topic": topic,
        "refused_ts": iso(msg.ts),
        "bytes": size,
        "attempts": attempts,
    }
    return Record(Lane.EVENT, REFUSED_TOPIC, ts, synced, fields=fields)
