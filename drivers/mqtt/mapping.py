"""Pure mapping of button messages: (topic, payload bytes) -> ``ContactEvent``, or a ``Reject``.

Contract:
- ``parse`` never raises anything but ``Reject``, whatever the topic and the bytes (fuzzed in
  the tests). No I/O, no clock (the caller passes the timestamp), no logging.
- Checks run cheapest first, each with its own reason: ``unknown_topic`` (no button's filter
  matches), ``unmapped`` for a device level that is no valid name, ``unknown_device`` for one
  the entry's ``devices`` does not list (the reject names the entry, never the invented id),
  ``too_large`` (checked on the length before any decoding), ``not_utf8``, ``not_json``
  (including nesting too deep for the parser: ``RecursionError`` is caught, and integers over
  Python's digit limit), ``unmapped`` (a field missing, of the wrong type, or a state value in
  neither list). ``match`` is the part before any byte of the payload is read: the kinds ask
  their ``drivers.mqtt.limit.Limiter`` between the two (``rate_limited`` is theirs to count).
- Strings that reach a ``ContactEvent`` are safe to store and to put in topics: device and input
  follow the ``Name`` rule, an event id is 1-128 printable characters (an integer id is turned
  into its decimal text).
- Matching of state values is type-exact: JSON ``1`` matches a configured ``1``, not ``true``
  and not ``"1"``; floats never match.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from gateway.config.mqtt_devices import NAME_RE, MqttButtonConfig, PayloadMapConfig
from gateway.core.errors import PermanentError
from gateway.core.messages import ContactEvent

Reason = Literal[
    "too_large",
    "not_utf8",
    "not_json",
    "unmapped",
    "unknown_topic",
    "unknown_device",
    "duplicate",
    "rate_limited",  # beyond the device's budget (``drivers.mqtt.limit``), counted by the kind
    "shed",  # QoS 0, dropped unread while the gateway was behind (``gateway.transport.reader``)
]
REASONS: tuple[Reason, ...] = get_args(Reason)
MAX_EVENT_ID = 128


class Reject(PermanentError):
    """A message that will not become an event; ``device`` is known unless the topic was not."""

    def __init__(self, reason: Reason, detail: str, device: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason
        self.detail = detail
        self.device = device


@dataclass(frozen=True, slots=True)
class Button:
    """A button config with its mapping resolved, ready to match topics."""

    cfg: MqttButtonConfig
    mapping: PayloadMapConfig
    known: frozenset[str] = frozenset()  # cfg.devices, for the lookup on every message

    def __post_init__(self) -> None:
        object.__setattr__(self, "known", frozenset(self.cfg.devices))

    @property
    def levels(self) -> list[str]:
        """The filter's topic levels."""
        return self.cfg.topic.split("/")


def topic_matches(levels: Sequence[str], topic: str) -> bool:
    """Whether ``topic`` matches a filter given as levels (``+`` wildcards only, §4.7)."""
    parts = topic.split("/")
    if len(parts) != len(levels):
        return False
    if topic.startswith("$") and levels[0] == "+":
        return False  # §4.7.2: a wildcard in the first level never matches a '$' topic
    return all(f in ("+", p) for f, p in zip(levels, parts, strict=True))


def match(buttons: Sequence[Button], topic: str) -> tuple[Button, str]:
    """The button whose filter matches ``topic``, and the device id the topic names."""
    for button in buttons:
        if topic_matches(button.levels, topic):
            index = button.cfg.device_from_topic
            if index is None:
                return button, button.cfg.id
            device = topic.split("/")[index]
            if NAME_RE.fullmatch(device) is None:
                detail = f"topic level {index} {device[:64]!r} is no valid device id"
                raise Reject("unmapped", detail, button.cfg.id)
            if button.known and device not in button.known:  # counted on the entry, not the id
                raise Reject("unknown_device", f"{device!r} is not in devices", button.cfg.id)
            return button, device
    raise Reject("unknown_topic", f"no button subscribes to {topic[:200]!r}")


def decode(payload: bytes, limit: int, device: str = "") -> object:
    """The JSON document in ``payload``, refusing more than ``limit`` bytes."""
    if len(payload) > limit:
        raise Reject("too_large", f"{len(payload)} bytes, limit {limit}", device)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Reject("not_utf8", f"byte {exc.start}: {exc.reason}", device) from None
    try:
        doc: object = json.loads(text)
    except RecursionError:
        raise Reject("not_json", "nested too deep", device) from None
    except ValueError as exc:  # JSONDecodeError, and integers past the 4300-digit limit
        raise Reject("not_json", str(exc)[:120], device) from None
    return doc


_MISSING = object()


def lookup(doc: object, path: str) -> object:
    """The value at dotted ``path`` in ``doc``, or ``_MISSING``."""
    node = doc
    for part in path.split("."):
        if isinstance(node, dict):
            node = node.get(part, _MISSING)
        elif isinstance(node, list) and part.isascii() and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _field(doc: object, path: str, device: str) -> object:
    value = lookup(doc, path)
    if value is _MISSING:
        raise Reject("unmapped", f"no {path!r} in the payload", device)
    return value


def _event_id(value: object, path: str, device: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise Reject("unmapped", f"{path!r} is {type(value).__name__}, not text or integer", device)
    if not 0 < len(text) <= MAX_EVENT_ID or not text.isprintable():
        raise Reject("unmapped", f"{path!r} is empty, too long or not printable", device)
    return text


def _active(value: object, mapping: PayloadMapConfig, device: str) -> bool:
    if isinstance(value, bool | int | str):  # bool is an int: compare types exactly below
        for values, active in ((mapping.active_values, True), (mapping.inactive_values, False)):
            if any(type(v) is type(value) and v == value for v in values):
                return active
    shown = repr(value)[:40]
    raise Reject("unmapped", f"state {mapping.state!r} = {shown} is in neither list", device)


def to_event(button: Button, device: str, doc: object, ts: float) -> ContactEvent:
    """Apply the button's mapping to a decoded document."""
    m = button.mapping
    active = _active(_field(doc, m.state, device), m, device)
    event_id = (
        "" if m.event_id is None else _event_id(_field(doc, m.event_id, device), m.event_id, device)
    )
    inp = m.fixed_input
    if m.input_path is not None:
        value = _field(doc, m.input_path, device)
        if not isinstance(value, str) or NAME_RE.fullmatch(value) is None:
            raise Reject(
                "unmapped", f"input {m.input_path!r} = {repr(value)[:40]} is no name", device
            )
        inp = value
    return ContactEvent(device, inp, active, ts, event_id, source=button.cfg.id)


def read(button: Button, device: str, payload: bytes, ts: float) -> ContactEvent:
    """The event a message of ``button``'s ``device`` carries (after ``match``)."""
    return to_event(button, device, decode(payload, button.cfg.max_payload, device), ts)


def parse(
    buttons: Sequence[Button], topic: str, payload: bytes, ts: float
) -> tuple[Button, ContactEvent]:
    """The button a message belongs to and the event it carries.

    Raises ``Reject``, and nothing else, when it carries none.
    """
    button, device = match(buttons, topic)
    return button, read(button, device, payload, ts)
