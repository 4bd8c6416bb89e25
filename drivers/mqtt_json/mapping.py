"""Pure mapping of mqtt_json messages: (topic, payload bytes) -> readings or a status.

Contract:
- ``parse`` raises nothing but ``Reject``, whatever the topic and the bytes (fuzzed in the
  tests). No I/O, no clock (the caller passes the arrival time), no logging.
- Message checks run cheapest first, each with its reason: ``unknown_topic`` (no entry's
  filter matches), ``unknown_device`` (a topic level naming an id the entry does not list;
  the reject names no device, so the invented id gets no state), ``too_large`` (on the
  length, before decoding), ``not_utf8``, ``not_json`` (also nesting too deep for the
  parser), then ``missing_field`` / ``wrong_type`` for the records list.
- A message is one record, or (``payload.records``) a list of them. Each record is mapped on
  its own: its device (``payload.device``: ``missing_field``, ``wrong_type``,
  ``unknown_device``) and its points; a record that fails is returned as a ``Reject`` beside
  the readings of the others, so one bad meter never hides the rest of its terminal.
- A point's value, by type: ``number`` a JSON number (not a boolean; integers within +-2**53);
  ``bool`` true/false or the integers 1/0; ``string`` text of at most ``MAX_STRING``
  printable characters. Missing or null is ``missing_field`` unless the point is
  ``optional`` (then it is left out of that reading); any other JSON type is ``wrong_type``.
  Values leave unscaled (``RawSample``): the pipeline's scale stage scales and judges them.
- Time: the mapped device time is read (``gateway.core.device_time``) and kept if plausible;
  missing, unreadable (an ISO time without its zone) or implausible, the reading keeps the
  arrival time and says so (``time_ignored``).
- Status messages: a payload (or the value at ``status.path``) in ``online_values`` is a
  heartbeat, in ``offline_values`` a will; anything else is ``unmapped``; an empty payload
  (a cleared retained message) is no status at all (None). Matching is type-exact, as for
  buttons; a payload without a path is text, matched against string values (and integers by
  their decimal text).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from jmespath.parser import ParsedResult

from drivers.mqtt.mapping import Reject as DecodeReject
from drivers.mqtt.mapping import decode, topic_matches
from gateway.config.jmes import ExpressionError, compile_expression, search
from gateway.config.mqtt_devices import FilterIndex
from gateway.config.mqtt_json import MAX_STRING, JsonPointConfig, MqttJsonDeviceConfig
from gateway.core.device_time import plausible, read_time
from gateway.core.errors import PermanentError
from gateway.core.items import RawSample
from gateway.core.messages import Value

Reason = Literal[
    "too_large",
    "not_utf8",
    "not_json",
    "missing_field",
    "wrong_type",
    "unmapped",
    "unknown_topic",
    "unknown_device",
    "shed",  # QoS 0, dropped unread while the gateway was behind (``gateway.transport.reader``)
]
REASONS: tuple[Reason, ...] = get_args(Reason)
_DECODE: dict[str, Reason] = {"too_large": "too_large", "not_utf8": "not_utf8"}
MAX_RECORDS = 1000  # records one message may carry
MAX_INT = 2**53  # integers beyond this lose precision as floats and overflow SQLite


class Reject(PermanentError):
    """A message (or record) that yields nothing; ``device`` is set only for a known one."""

    def __init__(self, reason: Reason, detail: str, device: str = "", entry: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason
        self.detail = detail
        self.device = device
        self.entry = entry


@dataclass(frozen=True, slots=True)
class Entry:
    """An entry with its expressions compiled and its device ids indexed."""

    cfg: MqttJsonDeviceConfig
    points: tuple[tuple[JsonPointConfig, ParsedResult], ...]
    known: frozenset[str]
    records: ParsedResult | None = None
    device: ParsedResult | None = None
    time: ParsedResult | None = None
    status: ParsedResult | None = None

    @classmethod
    def resolve(cls, cfg: MqttJsonDeviceConfig) -> "Entry":
        """Compile every expression of ``cfg`` (cached: alike entries share them)."""
        m = cfg.payload
        points = tuple(
            (p, compile_expression(p.path)) for p in cfg.active_points if p.path is not None
        )

        def opt(text: str | None) -> ParsedResult | None:
            return None if text is None else compile_expression(text)

        return cls(
            cfg,
            points,
            frozenset(cfg.device_ids),
            opt(m.records),
            opt(m.device),
            opt(None if m.time is None else m.time.path),
            opt(m.status.path),
        )


@dataclass(frozen=True, slots=True)
class Status:
    """A device said it is alive (a heartbeat) or going away (its will)."""

    device: str
    online: bool


@dataclass(frozen=True, slots=True)
class Reading:
    """One record's values for one device, unscaled, with the time it is stamped with."""

    sample: RawSample
    device_ts: float | None  # the device's own time, when mapped and believed
    time_ignored: bool = False  # a mapped time was missing, unreadable or implausible


@dataclass(frozen=True, slots=True)
class Parsed:
    """What one message carried, for one entry."""

    entry: Entry = field(repr=False)
    readings: tuple[Reading, ...] = ()
    rejects: tuple[Reject, ...] = ()  # records refused, beside the readings of the others
    status: Status | None = None


class Router:
    """Finds the entry a topic belongs to: exact topics by dict, wildcard ones by index."""

    def __init__(self, entries: Sequence[Entry]) -> None:
        self.entries = list(entries)
        self._exact: dict[str, tuple[int, bool]] = {}
        self._index = FilterIndex()
        self._filters: list[tuple[int, bool, list[str]]] = []
        for k, e in enumerate(self.entries):
            for is_status, topic in ((False, e.cfg.topic), (True, e.cfg.status_topic)):
                if topic is None:
                    continue
                if "+" in topic:
                    self._index.add(topic, len(self._filters))
                    self._filters.append((k, is_status, topic.split("/")))
                else:
                    self._exact[topic] = (k, is_status)

    def match(self, topic: str) -> tuple[Entry, str, bool]:
        """The entry of ``topic``, the device it names ("" if the payload names it), and
        whether it is a status topic."""
        hit = self._exact.get(topic)
        if hit is None:
            owners = sorted(self._index.overlapping(topic)) if "+" not in topic else []
            found = next((n for n in owners if topic_matches(self._filters[n][2], topic)), None)
            if found is None:
                raise Reject("unknown_topic", f"no mqtt_json entry subscribes to {topic[:200]!r}")
            hit = self._filters[found][:2]
        entry, is_status = self.entries[hit[0]], hit[1]
        level = entry.cfg.device_from_topic
        if level is None:
            return entry, "" if entry.device is not None else entry.cfg.id, is_status
        device = topic.split("/")[level]
        if device not in entry.known:  # refused on the entry: an invented id gets no state
            shown = device[:64]
            raise Reject("unknown_device", f"{shown!r} is not in devices", entry=entry.cfg.id)
        return entry, device, is_status


def _decode(payload: bytes, limit: int, device: str, entry: str) -> object:
    try:
        return decode(payload, limit, device)
    except DecodeReject as rej:
        raise Reject(_DECODE.get(rej.reason, "not_json"), rej.detail, device, entry) from None


def _search(expr: ParsedResult, doc: object, what: str, device: str, entry: str) -> object:
    try:
        return search(expr, doc)
    except ExpressionError as exc:
        raise Reject("wrong_type", f"{what}: {exc}", device, entry) from None


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _value(p: JsonPointConfig, raw: object, device: str, entry: str) -> Value | None:
    """The point's value; None when an optional point is absent."""
    if raw is None:
        if p.optional:
            return None
        raise Reject("missing_field", f"point {p.name}: {p.path!r} is missing", device, entry)
    if p.type == "number":
        if isinstance(raw, float) or (
            isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) <= MAX_INT
        ):
            return raw
    elif p.type == "bool":
        if isinstance(raw, bool):
            return raw
        if type(raw) is int and raw in (0, 1):
            return bool(raw)
    elif isinstance(raw, str) and len(raw) <= MAX_STRING and raw.isprintable():
        return raw
    detail = f"point {p.name}: {p.path!r} is {_kind(raw)}, not a {p.type}"
    raise Reject("wrong_type", detail, device, entry)


def _record_device(entry: Entry, record: object) -> str:
    assert entry.device is not None
    eid = entry.cfg.id
    value = _search(entry.device, record, "device", "", eid)
    if value is None:
        raise Reject("missing_field", f"device {entry.cfg.payload.device!r} is missing", entry=eid)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise Reject("wrong_type", f"device is {_kind(value)}, not text", entry=eid)
    if value not in entry.known:
        raise Reject("unknown_device", f"{value[:64]!r} is not in devices", entry=eid)
    return value


def _time(entry: Entry, doc: object, arrival: float) -> tuple[float | None, bool]:
    """(the believed device time or None, whether a mapped time was ignored)."""
    t = entry.cfg.payload.time
    if t is None or entry.time is None:
        return None, False
    try:
        value = search(entry.time, doc)
    except ExpressionError:
        return None, True
    believed = plausible(read_time(value, t.format, None), arrival)
    return believed, believed is None


def _reading(entry: Entry, device: str, record: object, ts: tuple[float | None, bool],
             arrival: float) -> Reading:  # fmt: skip
    eid = entry.cfg.id
    values: list[tuple[str, Value | None]] = []
    for p, expr in entry.points:
        value = _value(p, _search(expr, record, f"point {p.name}", device, eid), device, eid)
        if value is not None:
            values.append((p.name, value))
    if not values:
        raise Reject("missing_field", "no point of the mapping is in the record", device, eid)
    device_ts, ignored = ts
    stamp = arrival if device_ts is None else device_ts
    return Reading(RawSample(device, stamp, tuple(values)), device_ts, ignored)


def _records(entry: Entry, doc: object) -> list[object]:
    if entry.records is None:
        return [doc]
    eid = entry.cfg.id
    found = _search(entry.records, doc, "records", "", eid)
    if found is None:
        path = entry.cfg.payload.records
        raise Reject("missing_field", f"records {path!r} is missing", entry=eid)
    if not isinstance(found, list):
        raise Reject("wrong_type", f"records is {_kind(found)}, not a list", entry=eid)
    if len(found) > MAX_RECORDS:
        raise Reject("wrong_type", f"{len(found)} records, more than {MAX_RECORDS}", entry=eid)
    return found


def _status(entry: Entry, device: str, payload: bytes) -> Status | None:
    m, eid = entry.cfg.payload.status, entry.cfg.id
    if not payload:
        return None
    if entry.status is None:  # the payload is the status, as text
        if len(payload) > entry.cfg.max_payload:
            limit = entry.cfg.max_payload
            raise Reject("too_large", f"{len(payload)} bytes, limit {limit}", device, eid)
        try:
            text = payload.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise Reject("not_utf8", f"byte {exc.start}: {exc.reason}", device, eid) from None
        for online, values in ((True, m.online_values), (False, m.offline_values)):
            if any(_text_match(v, text) for v in values):
                return Status(device, online)
        raise Reject("unmapped", f"status {text[:40]!r} is in neither list", device, eid)
    value = _search(entry.status, _decode(payload, entry.cfg.max_payload, device, eid),
                    "status", device, eid)  # fmt: skip
    if value is None:
        raise Reject("missing_field", f"status {m.path!r} is missing", device, eid)
    for online, values in ((True, m.online_values), (False, m.offline_values)):
        if any(type(v) is type(value) and v == value for v in values):
            return Status(device, online)
    raise Reject("unmapped", f"status ({_kind(value)}) is in neither list", device, eid)


def _text_match(value: bool | int | str, text: str) -> bool:
    if isinstance(value, str):
        return value == text
    return not isinstance(value, bool) and str(value) == text


def parse(router: Router, topic: str, payload: bytes, arrival: float) -> Parsed:
    """What a message carries; ``arrival`` is the gateway's wall time. Raises ``Reject``."""
    entry, device, is_status = router.match(topic)
    if is_status:
        return Parsed(entry, status=_status(entry, device, payload))
    doc = _decode(payload, entry.cfg.max_payload, device, entry.cfg.id)
    t = entry.cfg.payload.time
    shared = t is None or t.scope == "message"
    message_ts = _time(entry, doc, arrival) if shared else (None, False)
    readings: list[Reading] = []
    rejects: list[Reject] = []
    for record in _records(entry, doc):
        try:
            named = device or _record_device(entry, record)
            ts = message_ts if shared else _time(entry, record, arrival)
            readings.append(_reading(entry, named, record, ts, arrival))
        except Reject as rej:
            rejects.append(rej)
    if entry.records is None and rejects:
        raise rejects[0]  # a single-record message fails whole
    return Parsed(entry, tuple(readings), tuple(rejects))
