"""Config models of generic MQTT JSON devices (``kind: mqtt_json``) on the local broker.

An *mqtt_json entry* is one topic filter of the local broker, and a *payload mapping* that says
where the vendor's JSON keeps the readings: JMESPath expressions (``gateway.config.jmes``) for
each point, the device id, the device's clock, and the list of records when one message
carries several devices (a data-collection terminal reporting its meters). The entry is one
device (its ``id``), or a fleet: the ids a ``+`` topic level or a payload field may name,
listed in ``devices``; a message naming any other id is refused.

A *point* is read, then scaled and judged like a Modbus point (``gateway.pipeline.scale``):
``value = raw * scale + offset``, and outside ``range`` its quality is ``bad``.

A *profile* (``gateway/profiles/mqtt/<name>.yaml`` with ``kind: mqtt_json``, or a site's own
in its profile folders) holds a mapping, its points and defaults; the loader merges it into the
entries that name it, as it merges Modbus profiles (``merge_profile``): the entry's points
override the profile's by name, ``enabled: false`` drops one, a new name adds one; an entry's
own ``payload`` replaces the profile's mapping whole; the profile's ``defaults`` fill
``interval``, ``offline_after`` and ``max_payload`` where the entry does not set them.

Checks that span entries (ids, topic filters) are in ``check_json_devices``.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import AfterValidator, Field, ValidationError, model_validator

from gateway.config.base import SUPPLIER, Model, Name, Supplier, check_filter, merge_points
from gateway.config.jmes import Expression
from gateway.config.mqtt_devices import FilterIndex, StateValue, filters_overlap
from gateway.core.errors import ConfigError
from gateway.profiles import SHIPPED

BUILTIN_JSON_PROFILES = SHIPPED / "mqtt"  # beside the buttons' mappings; ``kind`` tells them apart

PointType = Literal["number", "bool", "string"]
Filter = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(check_filter)]
MAX_STRING = 256  # characters of a string point


class JsonPointConfig(Model):
    """One value read from each message (or record) of a device."""

    name: Name = Field(description="Point name, unique within the device (e.g. pm25)")
    path: Expression | None = Field(
        None, description="JMESPath expression of the value in the record (required)"
    )
    type: PointType = Field(
        "number",
        description="number: a JSON number; bool: true/false or the integers 1/0; string: text"
        f" of at most {MAX_STRING} characters. Any other JSON type is refused (wrong_type)",
    )
    scale: float = Field(1.0, description="value = raw * scale + offset (numbers)")
    offset: float = Field(0.0, description="value = raw * scale + offset (numbers)")
    unit: str = Field("", max_length=16, description="Unit of the scaled value, e.g. ug/m3")
    range: tuple[float, float] | None = Field(
        None,
        description="Physical range [min, max] of the scaled value; outside it the reading "
        "is forwarded with quality 'bad'",
    )
    optional: bool = Field(
        False,
        description="A message without it (missing or null) is still taken, without this"
        " point; otherwise such a message is refused (missing_field)",
    )
    enabled: bool = Field(True, description="false drops a point inherited from a profile")
    description: str = Field("", max_length=200, description="Free text")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.enabled and self.path is None:
            raise ValueError("path: required key is missing")
        if self.range is not None and self.range[0] >= self.range[1]:
            raise ValueError(f"range {list(self.range)}: min must be below max")
        if self.scale == 0:
            raise ValueError("scale 0 would turn every reading into the offset")
        numeric = (self.scale, self.offset, self.range) != (1.0, 0.0, None)
        if self.type != "number" and numeric:
            raise ValueError(f"scale, offset and range apply to numbers, not to {self.type}")
        return self


class TimeMapConfig(Model):
    """Where the device's own time of a reading is, and how it is written."""

    path: Expression = Field(description="JMESPath expression of the time")
    format: Literal["epoch_s", "epoch_ms", "iso8601"] = Field(
        description="epoch_s: seconds since 1970; epoch_ms: milliseconds; iso8601: a string "
        "with its zone ('2024-12-07T14:00:00+08:00'; one without a zone is not read)"
    )
    scope: Literal["message", "record"] = Field(
        "message",
        description="With records: read the time from the whole message (one time for all) "
        "or from each record",
    )


class StatusMapConfig(Model):
    """What a message on the status topic (a will, a heartbeat) says."""

    path: Expression | None = Field(
        None, description="JMESPath expression of the status in a JSON payload; none: the "
        "whole payload is the status text (a bare 'offline' will)",
    )  # fmt: skip
    online_values: list[StateValue] = Field(
        ["online"], max_length=16, description="Status values meaning online (a heartbeat)"
    )
    offline_values: list[StateValue] = Field(
        ["offline"], max_length=16, description="Status values meaning offline (its will)"
    )

    @model_validator(mode="after")
    def _disjoint(self) -> Self:
        online = {(type(v), v) for v in self.online_values}
        both = [v for v in self.offline_values if (type(v), v) in online]
        if both:
            raise ValueError(f"{both[0]!r} is in both online_values and offline_values")
        return self


class JsonMapConfig(Model):
    """Where a vendor's JSON keeps records, device ids and times (the points are beside it)."""

    format: Literal["json"] = Field("json", description="Payload encoding (UTF-8 JSON only)")
    records: Expression | None = Field(
        None,
        description="JMESPath expression of the list of records one message carries (a "
        "terminal's meters); none: the message is one record",
    )
    device: Expression | None = Field(
        None, description="JMESPath expression of the device id in each record"
    )
    time: TimeMapConfig | None = Field(
        None, description="The device's time of the reading; none: the arrival time"
    )
    status: StatusMapConfig = Field(
        default_factory=StatusMapConfig, description="Messages on the entry's status_topic"
    )


class MqttJsonDeviceConfig(Model):
    """A device, or a fleet of alike devices, publishing JSON on the local broker."""

    kind: Literal["mqtt_json"] = Field(description="Device type: JSON readings over MQTT")
    id: Name = Field(
        description="Device id; with device_from_topic or payload.device, the entry's id"
    )
    supplier: Supplier | None = Field(None, description=SUPPLIER)
    topic: Filter = Field(description="Data topic filter, subscribed at QoS 1 ('+' per level)")
    status_topic: Filter | None = Field(
        None, description="Topic of the device's will or heartbeat (status), if it has one"
    )
    device_from_topic: int | None = Field(
        None, ge=0, le=31, description="0-based '+' level of the topic(s) naming the device"
    )
    devices: list[Name] = Field(
        default_factory=list,
        max_length=10_000,
        description="The device ids the topic level or payload.device may name (required with "
        "either); a message naming another is refused (unknown_device) and creates no state",
    )
    profile: Name | None = Field(
        None, description="Profile merged in at load (gateway/profiles/mqtt/<name>.yaml)"
    )
    payload: JsonMapConfig = Field(
        default_factory=JsonMapConfig, description="The mapping (from the profile by default)"
    )
    points: list[JsonPointConfig] = Field(
        min_length=1,
        description="Points; with a profile, entries override its points by name or add some",
    )
    interval: float = Field(
        60.0, ge=0.1, le=86400, description="Seconds between a device's messages, expected"
    )
    offline_after: int = Field(
        3, ge=1, le=1000, description="Intervals without data or heartbeat before offline"
    )
    max_payload: int = Field(
        16384, ge=64, le=262144, description="Larger payloads are rejected unread (bytes)"
    )
    description: str = Field("", max_length=200, description="Free text, e.g. the location")

    @property
    def device_ids(self) -> list[str]:
        """The devices this entry stands for."""
        return list(self.devices) if self.devices else [self.id]

    @property
    def named(self) -> bool:
        """Whether each message names its device (a topic level or a payload field)."""
        return self.device_from_topic is not None or self.payload.device is not None

    @property
    def timeout(self) -> float:
        """Seconds of silence after which a device is offline."""
        return self.interval * self.offline_after

    @property
    def active_points(self) -> list[JsonPointConfig]:
        """Points that are enabled."""
        return [p for p in self.points if p.enabled]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        i = self.device_from_topic
        topics = [("topic", self.topic)]
        if self.status_topic is not None:
            topics.append(("status_topic", self.status_topic))
            if filters_overlap(self.topic, self.status_topic):
                raise ValueError("topic and status_topic overlap: a message must be one or other")
        for key, topic in topics:
            levels = topic.split("/")
            if i is not None and (i >= len(levels) or levels[i] != "+"):
                raise ValueError(f"device_from_topic {i}: level {i} of {key} must be '+'")
        if i is not None and self.payload.device is not None:
            raise ValueError("the device id comes from device_from_topic or payload.device")
        if self.named and not self.devices:
            raise ValueError(
                "devices: list the device ids the topic or payload may name (others are refused)"
            )
        if self.devices and not self.named:
            raise ValueError("devices lists ids a message names: set device_from_topic or"
                             " payload.device")  # fmt: skip
        if len(set(self.devices)) != len(self.devices):
            dup = next(d for k, d in enumerate(self.devices) if d in self.devices[:k])
            raise ValueError(f"devices: {dup!r} is listed twice")
        if self.payload.device is not None and self.status_topic is not None:
            raise ValueError("status_topic needs the device in the topic (device_from_topic)")
        names = [p.name for p in self.points]
        dup_point = next((n for k, n in enumerate(names) if n in names[:k]), None)
        if dup_point is not None:
            raise ValueError(f"points: duplicate point name {dup_point!r}")
        if not self.active_points:
            raise ValueError("points: every point is disabled")
        return self


def check_json_devices(
    entries: Sequence[MqttJsonDeviceConfig],
    labels: Sequence[str],
    others: dict[str, str],
    topics: FilterIndex,
    owners: Sequence[str],
) -> list[str]:
    """Problems between entries: device ids named twice, topic filters that overlap.

    ``others`` maps the ids of every other device (and door) to its label; ``topics`` holds
    the filters of the other MQTT kinds, owned by the labels in ``owners``. Each problem is
    reported under the later entry.
    """
    problems: list[str] = []
    seen: dict[str, tuple[str, bool]] = {}  # device -> (first entry's label, of a fleet)
    own = FilterIndex()
    for j, e in enumerate(entries):
        where, fleet = labels[j], bool(e.devices)
        for dev in e.device_ids:  # two plain entries' ids clash in the loader's own id check
            clash = others.get(dev) if fleet else None
            prior = seen.get(dev)
            if prior is not None and (fleet or prior[1]):
                clash = clash or prior[0]
            if clash is not None and clash != where:
                key = "devices" if fleet else "id"
                problems.append(f"{where}.{key}: device {dev!r} is also {clash}")
            seen.setdefault(dev, (where, fleet))
        if e.devices and e.id in others:
            problems.append(f"{where}.id: {e.id!r} is also {others[e.id]}")
        for key, topic in (("topic", e.topic), ("status_topic", e.status_topic)):
            if topic is None:
                continue
            for k in sorted(own.overlapping(topic)):
                problems.append(f"{where}.{key}: {topic!r} overlaps a topic of {labels[k]}")
            for k in sorted(topics.overlapping(topic)):
                problems.append(f"{where}.{key}: {topic!r} overlaps a topic of {owners[k]}")
        own.add(e.topic, j)
        if e.status_topic is not None:
            own.add(e.status_topic, j)
    return problems


# -- profiles ----------------------------------------------------------------------------------


class JsonProfileConfig(Model):
    """One mqtt_json profile file: a vendor's payload shape, its points and defaults."""

    kind: Literal["mqtt_json"] = Field(description="Marks an mqtt_json profile")
    name: Name = Field(description="The file name without .yaml")
    description: str = Field("", max_length=200, description="One line")
    vendor: str = Field("", max_length=200, description="Who makes it")
    model: str = Field("", max_length=200, description="Which models it covers")
    notes: str = Field("", description="Free text for installers")
    defaults: dict[Literal["interval", "offline_after", "max_payload"], float] = Field(
        default_factory=dict, description="Settings entries inherit unless they set them"
    )
    payload: JsonMapConfig = Field(default_factory=JsonMapConfig, description="The mapping")
    points: list[JsonPointConfig] = Field(min_length=1, description="The points")


def load_json_profile(path: Path) -> dict[str, Any]:
    """Read and check one profile file; raises ``ConfigError`` with one line per problem."""
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from exc
    if not isinstance(data, dict) or data.get("kind") != "mqtt_json":
        raise ConfigError([f"{path}: an mqtt_json profile is a mapping with 'kind: mqtt_json'"])
    problems = []
    if data.get("name") != path.stem:
        problems.append(f"{path}: name: must be {path.stem!r} (the file name)")
    try:
        JsonProfileConfig.model_validate(data)
    except ValidationError as exc:
        problems += [
            f"{path}: {'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        ]
    if problems:
        raise ConfigError(problems)
    return data


def json_profile_target(dev: object, where: str) -> tuple[dict[str, Any], str] | None:
    """The raw mapping an mqtt_json profile merges into, and its position: an mqtt_json entry
    itself, or an http_push entry's ``readings``. None: no profile to merge."""
    if not isinstance(dev, dict):
        return None
    if dev.get("kind") == "mqtt_json" and "profile" in dev:
        return dev, where
    readings = dev.get("readings")
    if dev.get("kind") == "http_push" and isinstance(readings, dict) and "profile" in readings:
        return readings, f"{where}.readings"
    return None


def apply_json_profile(dev: dict[str, Any], where: str, dirs: Sequence[Path]) -> list[str]:
    """Merge the profile a raw entry names into it (in place); the problems, if any.

    Looked up in ``dirs`` (the site's profile folders), then in the shipped ones.
    """
    name = str(dev.get("profile"))
    searched = [*dirs, BUILTIN_JSON_PROFILES]
    found = next((d / f"{name}.yaml" for d in searched if (d / f"{name}.yaml").is_file()), None)
    if found is None:
        listing = ", ".join(str(d) for d in searched)
        return [f"{where}.profile: unknown profile {name!r} (searched {listing})"]
    try:
        profile = load_json_profile(found)
    except ConfigError as exc:
        return [f"{where}.profile: {e}" for e in exc.errors]
    own = dev.get("points") or []
    dev["points"] = merge_points(profile["points"], own if isinstance(own, list) else [])
    dev.setdefault("payload", profile.get("payload") or {})
    for key, value in (profile.get("defaults") or {}).items():
        if key != "max_payload" or "topic" in dev:  # a post is bounded by http_push max_body
            dev.setdefault(key, value)
    return []
