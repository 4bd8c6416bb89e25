"""Config models of MQTT emergency buttons and contacts on the community's local broker.

The *local broker* is the mosquitto that vendor devices (call buttons, door contacts, smoke
sensors with a radio bridge) publish to inside the community; it is not the platform's upstream
broker. A *button* (``kind: mqtt_button``) is one topic filter, possibly with ``+`` wildcards
covering many devices, plus a *payload mapping* that says where the vendor's JSON keeps the
event id, the state and (optionally) the input name. A mapping is written inline (``payload:``)
or named (``profile:``) from ``gateway/profiles/mqtt/*.yaml``; ``resolve_payload`` finds it.

Checks that span several buttons (duplicate ids, overlapping topic filters) are in
``check_buttons``, to be run with the other cross-field checks at load time. ``RateLimitConfig``
is the per-device message budget every MQTT device kind takes (``drivers.mqtt.limit``).
"""

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, Self, TypeVar

import yaml
from pydantic import (
    BaseModel,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.config.base import SUPPLIER, Model, Name, Supplier, check_filter
from gateway.config.broker import BrokerConfig, TlsConfig
from gateway.core.errors import ConfigError
from gateway.profiles import SHIPPED

BUILTIN_MQTT_PROFILES = SHIPPED / "mqtt"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")  # the same rule as ``Name``

JsonPath = Annotated[
    str,
    Field(
        pattern=r"^[^.\s]+(\.[^.\s]+)*$",
        max_length=128,
        description="Dotted path into the JSON payload, e.g. 'data.eventId'; a numeric part "
        "indexes a list ('items.0.id')",
    ),
]
# A JSON scalar as written in YAML. Matching is type-exact: 1 matches 1, not true nor "1".
StateValue = bool | int | Annotated[str, StringConstraints(max_length=64)]


LocalTlsConfig = TlsConfig  # the same settings as towards the upstream broker


class LocalBrokerConfig(BrokerConfig):
    """The community's local MQTT broker that buttons and contacts publish to."""

    host: str = Field("127.0.0.1", min_length=1, description="Broker host")
    client_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Fixed client id, so the broker keeps our session and queues QoS 1 events "
        "while we reconnect; default cgw-<site_id>-<gateway_id>-local. Unique per broker",
    )
    keepalive: int = Field(15, ge=5, le=3600, description="MQTT keepalive (s)")
    timeout: float = Field(10.0, gt=0, le=60, description="Seconds to wait for CONNACK and SUBACK")

    def client_id_for(self, site_id: str, gateway_id: str) -> str:
        """``client_id``, or the default derived from the gateway's identity."""
        return self.client_id or f"cgw-{site_id}-{gateway_id}-local"


class RateLimitConfig(Model):
    """How much one device may send before the excess is dropped (``rate_limited``).

    A token bucket per device id: ``burst`` messages at once, refilled at ``rate`` a second.
    Beyond it a message is dropped and counted unless it changes a state the gateway holds for
    the device (a press after a release, a door opening): those are never dropped.
    """

    rate: float = Field(
        20.0, gt=0, le=100_000, description="Messages a second one device may send, sustained"
    )
    burst: int = Field(
        40, ge=1, le=1_000_000, description="Messages one device may send at once after a pause"
    )


class PayloadMapConfig(Model):
    """Where a vendor's JSON payload keeps the event id, the state and the input name."""

    format: Literal["json"] = Field("json", description="Payload encoding (UTF-8 JSON only)")
    event_id: JsonPath | None = Field(
        None,
        description="Path of the device's event id (string or integer), used to drop repeats; "
        "without it a redelivered or replayed message alarms again",
    )
    state: JsonPath = Field(description="Path of the value that says pressed / released")
    active_values: list[StateValue] = Field(
        min_length=1, max_length=32, description="State values meaning 'in alarm' (pressed)"
    )
    inactive_values: list[StateValue] = Field(
        default_factory=list,
        max_length=32,
        description="State values meaning 'normal' (released); any other value is rejected",
    )
    input: Name | None = Field(None, description="Fixed input name; default 'button'")
    input_path: JsonPath | None = Field(
        None, description="Path of the input name in the payload, instead of a fixed 'input'"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.input is not None and self.input_path is not None:
            raise ValueError("give either input (fixed) or input_path (from the payload)")
        active = {(type(v), v) for v in self.active_values}
        both = [v for v in self.inactive_values if (type(v), v) in active]
        if both:
            raise ValueError(f"{both[0]!r} is in both active_values and inactive_values")
        return self

    @property
    def fixed_input(self) -> str:
        """The input name when the payload does not carry one."""
        return self.input or "button"


class MqttButtonConfig(Model):
    """Emergency buttons or contacts publishing on one topic filter of the local broker."""

    kind: Literal["mqtt_button"] = Field(description="Device type: a button or contact on MQTT")
    id: Name = Field(description="Button id; also the device id unless device_from_topic is set")
    topic: str = Field(
        min_length=1,
        max_length=256,
        description="Topic filter subscribed with QoS 1; '+' stands for one whole level "
        "(e.g. 'vendor/+/event'); '#' is not allowed",
    )
    device_from_topic: int | None = Field(
        None,
        ge=0,
        le=31,
        description="0-based topic level that names the device; it must be a '+' level",
    )
    devices: list[Name] = Field(
        default_factory=list,
        max_length=10_000,
        description="With device_from_topic: the device ids the topic may name. A message naming"
        " another is refused (counted as unknown_device): it never creates state or an alarm."
        " Empty: any valid name (check-config warns)",
    )
    profile: Name | None = Field(
        None, description="Named payload mapping (gateway/profiles/mqtt/<name>.yaml)"
    )
    payload: PayloadMapConfig | None = Field(None, description="Inline payload mapping")
    max_payload: int = Field(
        4096, ge=64, le=65536, description="Larger payloads are rejected unread (bytes)"
    )
    rate_limit: RateLimitConfig = Field(
        default_factory=RateLimitConfig,
        description="Per device: messages beyond this budget are dropped (rate_limited), but "
        "never one that changes a contact's state; a press and its release are two messages",
    )
    dedup_window: float = Field(
        3600.0, gt=0, le=7 * 86400, description="Seconds an event id is remembered"
    )
    dedup_size: int = Field(
        10000, ge=1, le=100_000, description="Event ids remembered at most (oldest go first)"
    )
    description: str = Field("", max_length=200, description="Free text, e.g. the location")
    supplier: Supplier | None = Field(None, description=SUPPLIER)

    @field_validator("topic")
    @classmethod
    def _topic(cls, topic: str) -> str:
        return check_filter(topic)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.profile is None) == (self.payload is None):
            raise ValueError("give exactly one of profile (a named mapping) or payload (inline)")
        if self.device_from_topic is not None:
            levels = self.topic.split("/")
            i = self.device_from_topic
            if i >= len(levels) or levels[i] != "+":
                raise ValueError(f"device_from_topic {i}: level {i} of {self.topic!r} must be '+'")
        elif self.devices:
            raise ValueError("devices lists the ids a topic level names: set device_from_topic")
        return self


def filters_overlap(a: str, b: str) -> bool:
    """Whether some topic matches both ``+``-only filters ``a`` and ``b``."""
    la, lb = a.split("/"), b.split("/")
    return len(la) == len(lb) and all(x == y or "+" in (x, y) for x, y in zip(la, lb, strict=True))


class FilterIndex:
    """``+``-only topic filters, each with an owner number, indexed for ``overlapping``.

    Filters are grouped by level count, and by the value (a literal or ``+``) each level has.
    A query looks only at the filters of its level count whose value at its most selective
    literal level is that literal or ``+``, and checks each with ``filters_overlap``; so
    distinct topics and filters that differ in some literal level cost O(levels) each, not a
    scan of all the others. The result is exact: every owner of an overlapping filter.
    """

    def __init__(self) -> None:
        self._by_level: dict[tuple[int, int, str], list[int]] = defaultdict(list)
        self._by_count: dict[int, list[int]] = defaultdict(list)
        self._filters: list[tuple[str, int]] = []  # (filter, owner), in the order added

    def add(self, topic: str, owner: int) -> None:
        """Index ``topic`` as belonging to ``owner``."""
        levels = topic.split("/")
        n = len(self._filters)
        self._filters.append((topic, owner))
        self._by_count[len(levels)].append(n)
        for k, level in enumerate(levels):
            self._by_level[len(levels), k, level].append(n)

    def overlapping(self, topic: str) -> set[int]:
        """The owners of the filters added so far that some topic matching ``topic`` matches."""
        levels = topic.split("/")
        count = len(levels)
        literal = [
            (self._by_level.get((count, k, level), []), self._by_level.get((count, k, "+"), []))
            for k, level in enumerate(levels)
            if level != "+"
        ]
        groups = min(literal, key=lambda g: len(g[0]) + len(g[1]), default=None)
        candidates = self._by_count.get(count, []) if groups is None else [*groups[0], *groups[1]]
        return {
            owner
            for topic_b, owner in (self._filters[n] for n in candidates)
            if filters_overlap(topic, topic_b)
        }


def check_buttons(
    buttons: Sequence[MqttButtonConfig], labels: Sequence[str] | None = None
) -> list[str]:
    """Problems between buttons: duplicate ids, and topic filters a message could match twice.

    ``labels`` name each button in the messages (default ``buttons[i]``). Each problem is
    reported under the later button, for each earlier one in order; the ids and topics are
    indexed, so thousands of buttons check in linear time when they do not clash.
    """
    names = list(labels) if labels is not None else [f"buttons[{i}]" for i in range(len(buttons))]
    problems: list[str] = []
    ids: dict[str, list[int]] = defaultdict(list)
    topics = FilterIndex()
    for j, b in enumerate(buttons):
        same_id, overlaps = set(ids[b.id]), topics.overlapping(b.topic)
        for i in sorted(same_id | overlaps):
            if i in same_id:
                problems.append(f"{names[j]}.id: duplicate button id {b.id!r} (also {names[i]})")
            if i in overlaps:
                problems.append(
                    f"{names[j]}.topic: {b.topic!r} overlaps {names[i]} ({buttons[i].topic!r}):"
                    " a message must belong to one button"
                )
        ids[b.id].append(j)
        topics.add(b.topic, j)
    return problems


# -- named payload mappings -----------------------------------------------------------------

_PROFILE_KEYS = frozenset({"name", "description", "vendor", "notes", "example", "payload"})
M = TypeVar("M", bound=BaseModel)


def load_mapping_profile(
    path: Path,
    model: type[M],
    what: str = "payload profile",
    extra_keys: frozenset[str] = frozenset(),
) -> M:
    """Read one mapping file (``name``, ``description``, ..., ``payload``); raises ConfigError.

    ``model`` validates the ``payload`` mapping; ``extra_keys`` are further documentation keys
    the file may carry. ``what`` names the kind of file in the messages.
    """
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from exc
    if not isinstance(data, dict) or not isinstance(data.get("payload"), dict):
        raise ConfigError([f"{path}: a {what} is a mapping with a 'payload' mapping"])
    allowed = _PROFILE_KEYS | extra_keys
    problems = [f"{path}: {key}: unknown key" for key in data if key not in allowed]
    if data.get("name") != path.stem:
        problems.append(f"{path}: name: must be {path.stem!r} (the file name)")
    try:
        mapping = model.model_validate(data["payload"])
    except ValidationError as exc:
        problems += [
            f"{path}: payload.{'.'.join(map(str, e['loc']))}: {e['msg']}"
            for e in exc.errors(include_url=False)
        ]
    if problems:
        raise ConfigError(problems)
    return mapping


def find_mapping_profile(
    owner: str, name: str, dirs: Sequence[Path], builtin: Path, load: Callable[[Path], M]
) -> M:
    """Profile ``name`` of device ``owner``: from ``dirs``, then ``builtin``; else ConfigError."""
    searched = [*dirs, builtin]
    for folder in searched:
        candidate = folder / f"{name}.yaml"
        if candidate.is_file():
            return load(candidate)
    where = ", ".join(str(d) for d in searched)
    raise ConfigError([f"{owner}.profile: unknown profile {name!r} (searched {where})"])


class _Mapped(Protocol):
    """A device with a payload mapping, inline or named."""

    @property
    def profile(self) -> str | None: ...

    @property
    def payload(self) -> object: ...


D = TypeVar("D", bound=_Mapped)


def profiles_once(resolve: Callable[[D, list[Path]], M], dirs: list[Path]) -> Callable[[D], M]:
    """``resolve`` with each named profile read once for all the devices that name it.

    A failure is not kept: its message names the device, so each device gets its own.
    """
    found: dict[str, M] = {}

    def get(dev: D) -> M:
        if dev.payload is not None or dev.profile is None:
            return resolve(dev, dirs)
        if dev.profile not in found:
            found[dev.profile] = resolve(dev, dirs)
        return found[dev.profile]

    return get


def load_payload_profile(path: Path) -> PayloadMapConfig:
    """Read one button mapping file; raises ConfigError."""
    return load_mapping_profile(path, PayloadMapConfig)


def resolve_payload(button: MqttButtonConfig, dirs: Sequence[Path] = ()) -> PayloadMapConfig:
    """The button's mapping: inline, or its profile from ``dirs`` then the shipped ones."""
    if button.payload is not None:
        return button.payload
    assert button.profile is not None  # the model guarantees one of the two
    return find_mapping_profile(
        button.id, button.profile, dirs, BUILTIN_MQTT_PROFILES, load_payload_profile
    )
