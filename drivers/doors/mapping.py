"""Pure mapping of door-terminal messages: (topic, payload bytes) -> ``AccessEvent`` or
``Heartbeat``, or a ``Reject``.

Contract:
- ``parse`` never raises anything but ``Reject``, whatever the topic and the bytes (fuzzed in
  the tests). It is ``match`` (the topic alone) then ``read`` (the payload). No I/O, no clock
  (the caller passes the gateway's wall time), no logging.
- Checks run cheapest first, each with its own reason: ``unknown_topic`` (no filter matches),
  ``unmapped`` for a terminal level that is no valid name or no configured terminal,
  ``too_large`` (on the length, before decoding), ``not_utf8``, ``not_json``, ``unmapped`` (a
  required field missing or of the wrong type, a kind or credential value not listed, a door
  the terminal does not have). Repeated event ids are the pipeline's dedup stage's business.
- Privacy: the person id goes out in ``AccessEvent.raw_person`` only (no ``repr``), for the
  pipeline's pseudonymise stage, which also tokenises an event id and drops a snapshot
  reference that embed it. ``Reject`` details name paths, types and config ids, never a
  payload value. Paths listed in ``drop`` are never read (the config refuses a mapping that
  would). A snapshot is kept only as an opaque reference: a ``data:`` URL, anything that looks
  like base64 content, or longer than 128 printable ASCII characters is dropped (the event is
  kept, ``snapshot_dropped`` set).
- Values are matched type-exactly, as for buttons (JSON ``1`` is not ``"1"`` nor ``true``). A
  terminal time that cannot be read leaves ``terminal_ts`` empty; the event is kept. A time
  further than ``MAX_SKEW`` from the arrival is dropped the same way (the event is flagged).
- A heartbeat is a sign of life only if it is well formed: a mapped time or status that is
  present must be a readable time and a JSON string, integer or boolean (a status of ``[]``
  is ``unmapped``, not alive); absent fields are allowed (a bare ``{}`` is alive).
"""

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from pydantic import JsonValue

from drivers.mqtt.mapping import REASONS, Reason, Reject, decode, topic_matches
from gateway.config.doors import (
    PLACEHOLDER,
    DoorConfig,
    DoorPayloadMapConfig,
    DoorTerminalConfig,
)
from gateway.config.mqtt_devices import NAME_RE
from gateway.core.access import DOOR_KINDS, AccessEvent, Credential, DenyReason
from gateway.core.device_time import plausible, read_time

__all__ = [
    "REASONS",
    "Heartbeat",
    "Parsed",
    "Reason",
    "Reject",
    "Terminal",
    "match",
    "parse",
    "read",
    "snapshot_ok",
    "terminal_time",
    "unlock_payload",
]
MAX_EVENT_ID = 128
MAX_PERSON = 256
MAX_SNAPSHOT = 128
_RUN = re.compile(r"[A-Za-z0-9+=_-]{32,}")  # base64 content between '/' and '.' separators


@dataclass(frozen=True, slots=True)
class Terminal:
    """A terminal config with its mapping resolved and its doors indexed by terminal id."""

    cfg: DoorTerminalConfig
    mapping: DoorPayloadMapConfig
    doors: Mapping[str, tuple[DoorConfig, ...]]
    levels: tuple[tuple[str, ...], tuple[str, ...]]  # event filter, heartbeat filter

    @classmethod
    def resolve(cls, cfg: DoorTerminalConfig, mapping: DoorPayloadMapConfig) -> "Terminal":
        """Index ``cfg``'s doors; ``mapping`` is its resolved payload mapping."""
        doors = {
            t: tuple(d for d in cfg.doors if (d.terminal or cfg.id) == t) for t in cfg.terminals
        }
        levels = (tuple(cfg.topic.split("/")), tuple(cfg.heartbeat_topic.split("/")))
        return cls(cfg, mapping, doors, levels)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A terminal said it is alive (or, ``online=False``, that it is going away)."""

    terminal: str
    gateway_ts: float
    terminal_ts: float | None
    online: bool = True


@dataclass(frozen=True, slots=True)
class Parsed:
    """What one message carried, and for which terminal config."""

    terminal: Terminal = field(repr=False)
    message: AccessEvent | Heartbeat
    snapshot_dropped: bool = False


class _Valued(Protocol):
    @property
    def value(self) -> bool | int | str: ...


def _get(doc: object, path: str) -> object:
    """The value at dotted ``path``; None if missing (or JSON null)."""
    node = doc
    for part in path.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isascii() and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _same(a: object, b: object) -> bool:
    return type(a) is type(b) and a == b


_V = TypeVar("_V", bound=_Valued)


def _find(entries: Sequence[_V], value: object) -> _V | None:
    return next((e for e in entries if _same(e.value, value)), None)


def _kind_name(value: object) -> str:
    return "missing" if value is None else type(value).__name__


def match(terminals: Sequence[Terminal], topic: str) -> tuple[Terminal, str, bool]:
    """The config a topic belongs to, the terminal it names, and whether it is a heartbeat."""
    for term in terminals:
        for heartbeat, levels in ((False, term.levels[0]), (True, term.levels[1])):
            if not topic_matches(levels, topic):
                continue
            index = term.cfg.device_from_topic
            if index is None:
                return term, term.cfg.id, heartbeat
            device = topic.split("/")[index]
            if NAME_RE.fullmatch(device) is None:
                raise Reject(
                    "unmapped", f"topic level {index} is no valid terminal id", term.cfg.id
                )
            if device not in term.doors:  # counted on the entry: an invented id makes no state
                raise Reject(
                    "unknown_device", f"terminal {device[:64]!r} is not configured", term.cfg.id
                )
            return term, device, heartbeat
    raise Reject("unknown_topic", f"no door terminal subscribes to {topic[:200]!r}")


def terminal_time(value: object, fmt: str, naive_offset: str) -> float | None:
    """Epoch seconds of a terminal time in ``fmt``; None if it cannot be read."""
    return read_time(value, fmt, naive_offset)


def snapshot_ok(ref: str) -> bool:
    """Whether ``ref`` can only be a reference, not image or template content."""
    if not 0 < len(ref) <= MAX_SNAPSHOT or not ref.isascii() or not ref.isprintable():
        return False
    if "data:" in ref.lower():
        return False
    # mixed case and digits in one long run: random bytes, not a name, a date or a hex id
    checks = (str.isupper, str.islower, str.isdigit)
    return not any(all(any(f(c) for c in run) for f in checks) for run in _RUN.findall(ref))


def _event_id(value: object, path: str, device: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise Reject("unmapped", f"{path!r} is {_kind_name(value)}, not text or integer", device)
    if not 0 < len(text) <= MAX_EVENT_ID or not text.isprintable():
        raise Reject("unmapped", f"{path!r} is empty, too long or not printable", device)
    return text


def _person(value: object, path: str, device: str) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Reject("unmapped", f"{path!r} is {_kind_name(value)}, not text or integer", device)
    text = str(value)
    if len(text) > MAX_PERSON:
        raise Reject("unmapped", f"{path!r} is longer than {MAX_PERSON} characters", device)
    return text


def _door(term: Terminal, device: str, doc: object, kind: str) -> str:
    doors = term.doors[device]
    path = term.mapping.door
    value = None if path is None else _get(doc, path)
    if value is None:
        if len(doors) == 1:
            return doors[0].id
        if kind in DOOR_KINDS:
            raise Reject("unmapped", f"{kind} without a door ({path!r} missing)", device)
        return ""
    door = next((d for d in doors if _same(d.door_ref, value)), None)
    if door is None:
        detail = f"{path!r} ({_kind_name(value)}) names no door of terminal {device!r}"
        raise Reject("unmapped", detail, device)
    return door.id


def _credential(m: DoorPayloadMapConfig, doc: object, device: str) -> Credential:
    value = None if m.credential is None else _get(doc, m.credential)
    if value is None:
        return "none"
    entry = _find(m.credential_values, value)
    if entry is not None:
        return entry.credential
    if m.credential_default is not None:
        return m.credential_default
    detail = f"{m.credential!r} ({_kind_name(value)}) is not in credential_values"
    raise Reject("unmapped", detail, device)


def _reason(m: DoorPayloadMapConfig, doc: object) -> DenyReason:
    entry = None if m.reason is None else _find(m.reason_values, _get(doc, m.reason))
    return "other" if entry is None else entry.reason


def _event(term: Terminal, device: str, doc: object, ts: float) -> tuple[AccessEvent, bool]:
    m = term.mapping
    value = _get(doc, m.kind)
    entry = _find(m.kind_values, value)
    kind = entry.kind if entry is not None else m.kind_default
    if kind is None:
        detail = f"{m.kind!r} ({_kind_name(value)}) is not in kind_values"
        raise Reject("unmapped", detail, device)
    door = _door(term, device, doc, kind)
    event_id = "" if m.event_id is None else _event_id(_get(doc, m.event_id), m.event_id, device)
    credential = _credential(m, doc, device)
    reason = _reason(m, doc) if kind == "denied" else ""
    terminal_ts = (
        None if m.time is None else terminal_time(_get(doc, m.time), m.time_format, m.naive_offset)
    )
    snapshot = "" if m.snapshot is None else _get(doc, m.snapshot)
    dropped = snapshot not in (None, "") and not (
        isinstance(snapshot, str) and snapshot_ok(snapshot)
    )
    ref = snapshot if isinstance(snapshot, str) and not dropped else ""
    raw = "" if m.person is None else _person(_get(doc, m.person), m.person, device)
    event = AccessEvent.build(
        device,
        door,
        kind,
        ts,
        skew_limit=term.cfg.skew_limit,
        retention=term.cfg.retention,
        terminal_ts=terminal_ts,
        reason=reason,
        credential=credential,
        raw_person=raw,
        snapshot_ref=ref,
        event_id=event_id,
        source=term.cfg.id,
    )
    return event, dropped


def _heartbeat(term: Terminal, device: str, payload: bytes, ts: float) -> Heartbeat:
    hb, m = term.mapping.heartbeat, term.mapping
    if hb.time is None and hb.state is None:
        if len(payload) > term.cfg.max_payload:
            raise Reject("too_large", f"{len(payload)} bytes, limit {term.cfg.max_payload}", device)
        return Heartbeat(device, ts, None)  # any payload will do: it is not even decoded
    doc = decode(payload, term.cfg.max_payload, device)
    when = None
    if hb.time is not None and (value := _get(doc, hb.time)) is not None:
        when = terminal_time(value, m.time_format, m.naive_offset)
        if when is None:
            raise Reject("unmapped", f"{hb.time!r} ({_kind_name(value)}) is no time", device)
    state = None if hb.state is None else _get(doc, hb.state)
    if state is not None and (isinstance(state, float) or not isinstance(state, str | int)):
        raise Reject("unmapped", f"{hb.state!r} ({_kind_name(state)}) is no status", device)
    online = not any(_same(v, state) for v in hb.offline_values)
    return Heartbeat(device, ts, plausible(when, ts), online)


def parse(
    terminals: Sequence[Terminal],
    topic: str,
    payload: bytes,
    ts: float,
) -> Parsed:
    """What a message carries: an access event or a heartbeat, for one terminal config.

    ``ts`` is the gateway's wall time. Raises ``Reject``, and nothing else, when the message
    is no use.
    """
    return read(*match(terminals, topic), payload, ts)


def read(term: Terminal, device: str, heartbeat: bool, payload: bytes, ts: float) -> Parsed:
    """What a message of ``term``'s terminal ``device`` carries (after ``match``)."""
    if heartbeat:
        return Parsed(term, _heartbeat(term, device, payload, ts))
    doc = decode(payload, term.cfg.max_payload, device)
    event, dropped = _event(term, device, doc, ts)
    return Parsed(term, event, dropped)


def unlock_payload(template: Mapping[str, JsonValue], values: Mapping[str, JsonValue]) -> bytes:
    """The unlock command: ``template`` with its ``{placeholders}`` filled from ``values``.

    A string that is exactly one placeholder takes the value with its type (``"{seconds}"``
    becomes ``5``); placeholders inside longer strings are replaced by their text.
    """

    def text(node: str) -> str:
        return PLACEHOLDER.sub(lambda m: str(values.get(m[1], m[0])), node)

    def fill(node: JsonValue) -> JsonValue:
        if isinstance(node, str):
            whole = PLACEHOLDER.fullmatch(node)
            return values[whole[1]] if whole and whole[1] in values else text(node)
        if isinstance(node, list):
            return [fill(item) for item in node]
        if isinstance(node, dict):
            return {text(k): fill(v) for k, v in node.items()}
        return node

    return json.dumps(fill(dict(template)), ensure_ascii=False, separators=(",", ":")).encode()
