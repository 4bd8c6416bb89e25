"""Config models of face/QR door terminals on the local broker, and of resident privacy.

A *door terminal* (``kind: door_terminal``) is one terminal, or a fleet of identical ones when
``device_from_topic`` takes the terminal id from a ``+`` level of its topics. It has an event
topic, a heartbeat topic, an optional command topic (for remote unlock), its doors, and a
*payload mapping* (inline ``payload:`` or named ``profile:`` from
``gateway/profiles/doors/<name>.yaml``) saying where the vendor's JSON keeps each field, how its
values translate into ours (``gateway.core.access``), which fields must never be read (face images
and templates), what a heartbeat looks like and how to word an unlock command.

``PrivacyConfig`` belongs at the config root (``privacy:``): the pseudonym key is per site.
Checks that span terminals are in ``check_terminals``; those that need the resolved mapping in
``check_mapping``; both return problems as ``path: reason`` lines.
"""

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    JsonValue,
    StrictInt,
    model_validator,
)

from gateway.config.base import (
    SUPPLIER,
    Model,
    Name,
    Supplier,
    check_filter,
    check_topic_text,
)
from gateway.config.mqtt_devices import (
    FilterIndex,
    JsonPath,
    RateLimitConfig,
    StateValue,
    filters_overlap,
    find_mapping_profile,
    load_mapping_profile,
)
from gateway.core.access import Credential, DenyReason, Kind
from gateway.profiles import SHIPPED

BUILTIN_DOOR_PROFILES = SHIPPED / "doors"
# a terminal sends more than a button: a busy gate's grants, openings and closings, heartbeats,
# and what it kept while the broker was away, replayed at once when it is back
DOOR_RATE, DOOR_BURST = 50.0, 500
PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)\}")
# what an unlock template may name; "{door}" and "{seconds}" alone in a string keep their type
PLACEHOLDERS = frozenset(
    {"terminal", "door", "door_id", "seconds", "reason", "request_id"}
    | {"ts", "ts_ms", "expires", "expires_ms"}
)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(value: object) -> object:
    if isinstance(value, str):
        m = re.fullmatch(r"(\d{1,9})\s*([smhd]?)", value.strip())
        if m is None:
            raise ValueError(f"{value!r}: whole seconds, or a number with s, m, h or d ('30d')")
        return int(m[1]) * _UNITS[m[2] or "s"]
    return value


Duration = Annotated[int, BeforeValidator(_seconds)]
DoorRef = StrictInt | Annotated[str, Field(min_length=1, max_length=64)]


Filter = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(check_filter)]


def _unique(values: Sequence[object], what: str) -> None:
    seen = [(type(v), v) for v in values]
    dup = next((v for i, v in enumerate(values) if seen[i] in seen[:i]), None)
    if dup is not None:
        raise ValueError(f"{what}: {dup!r} is listed twice")


class KindValue(Model):
    """A vendor value of the ``kind`` field and the event kind it means."""

    value: StateValue = Field(description="The vendor's value (type-exact: 1 is not '1')")
    kind: Kind = Field(description="Our event kind (not terminal_*: those come from heartbeats)")


class ReasonValue(Model):
    """A vendor value of the ``reason`` field and the deny reason it means."""

    value: StateValue = Field(description="The vendor's value")
    reason: DenyReason = Field(description="Our deny reason")


class CredentialValue(Model):
    """A vendor value of the ``credential`` field and the credential type it means."""

    value: StateValue = Field(description="The vendor's value")
    credential: Credential = Field(description="Our credential type")


class HeartbeatMapConfig(Model):
    """What a heartbeat carries. Without ``time`` and ``state`` any payload is a heartbeat."""

    time: JsonPath | None = Field(None, description="Path of the terminal's clock (skew)")
    state: JsonPath | None = Field(None, description="Path of the terminal's status")
    offline_values: list[StateValue] = Field(
        default_factory=list,
        max_length=16,
        description="Status values meaning 'going offline' (e.g. its will message)",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.state is None) != (not self.offline_values):
            raise ValueError("state and offline_values go together")
        return self


class DoorPayloadMapConfig(Model):
    """Where a vendor's JSON keeps each field of an access event, and what it means."""

    format: Literal["json"] = Field("json", description="Payload encoding (UTF-8 JSON only)")
    event_id: JsonPath | None = Field(None, description="Path of the event id (drops repeats)")
    kind: JsonPath = Field(description="Path of the event type or result code")
    kind_values: list[KindValue] = Field(min_length=1, max_length=64, description="Value -> kind")
    kind_default: Kind | None = Field(
        None,
        description="Kind of a value not listed (e.g. denied for any non-zero code); "
        "default: rejected as unmapped",
    )
    reason: JsonPath | None = Field(
        None, description="Path of the deny reason (may be the kind path: a result code)"
    )
    reason_values: list[ReasonValue] = Field([], max_length=64, description="Value -> reason")
    door: JsonPath | None = Field(None, description="Path of the door ref; none: single door")
    credential: JsonPath | None = Field(None, description="Path of the credential type")
    credential_values: list[CredentialValue] = Field([], max_length=32, description="Value -> type")
    credential_default: Credential | None = Field(
        None, description="Credential of a value not listed; default: rejected as unmapped"
    )
    person: JsonPath | None = Field(
        None, description="Path of the person id: pseudonymised at once, never kept raw"
    )
    snapshot: JsonPath | None = Field(None, description="Path of an opaque snapshot ref")
    time: JsonPath | None = Field(None, description="Path of the terminal's event time")
    time_format: Literal["epoch_s", "epoch_ms", "iso8601"] = Field(
        "epoch_s", description="Event and heartbeat time: epoch seconds, milliseconds or ISO 8601"
    )
    naive_offset: str = Field(
        "+08:00",
        pattern=r"^[+-](0\d|1[0-4]):[0-5]\d$",
        description="UTC offset of ISO times written without one (terminal local time)",
    )
    drop: list[JsonPath] = Field(
        default_factory=list,
        max_length=32,
        description="Fields never read (face images, templates, names): no mapped path may "
        "lie at, under or above them",
    )
    heartbeat: HeartbeatMapConfig = Field(
        default_factory=HeartbeatMapConfig, description="Heartbeat payloads"
    )
    unlock: dict[str, JsonValue] | None = Field(
        None,
        description="Unlock command template (JSON); placeholders: "
        + ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS)),
    )

    def read_paths(self) -> list[str]:
        """Every path the mapping reads."""
        fields = (self.event_id, self.kind, self.reason, self.door, self.credential, self.person)
        more = (self.snapshot, self.time, self.heartbeat.time, self.heartbeat.state)
        return [p for p in (*fields, *more) if p is not None]

    @model_validator(mode="after")
    def _check(self) -> Self:
        _unique([v.value for v in self.kind_values], "kind_values")
        _unique([v.value for v in self.reason_values], "reason_values")
        _unique([v.value for v in self.credential_values], "credential_values")
        kinds = [v.kind for v in self.kind_values] + [self.kind_default]
        if "terminal_offline" in kinds or "terminal_online" in kinds:
            raise ValueError("kind_values: terminal_* kinds come from heartbeats, not payloads")
        for dropped in self.drop:
            for path in self.read_paths():
                if f"{path}.".startswith(f"{dropped}.") or f"{dropped}.".startswith(f"{path}."):
                    raise ValueError(f"drop: {dropped!r} is read as {path!r}")
        names = set(PLACEHOLDER.findall(repr(self.unlock))) if self.unlock else set()
        if names - PLACEHOLDERS:
            raise ValueError(f"unlock: unknown placeholder {{{sorted(names - PLACEHOLDERS)[0]}}}")
        return self


class DoorConfig(Model):
    """One door behind a terminal."""

    id: Name = Field(description="Door id, unique in the site (alarms and commands name it)")
    terminal: Name | None = Field(
        None, description="Terminal id (required with device_from_topic; default the config id)"
    )
    ref: DoorRef | None = Field(
        None, description="How the terminal names this door in payloads (default: the id)"
    )
    escape_route: bool = Field(False, description="On an escape route (fire linkage opens it)")
    held_open_after: float = Field(60.0, ge=1, le=86400, description="Held open after (s)")
    grant_window: float = Field(
        10.0, gt=0, le=600, description="An opening this soon (s) after a grant is no forced entry"
    )
    description: str = Field("", max_length=200, description="Free text, e.g. the location")

    @property
    def door_ref(self) -> int | str:
        """The value payloads and commands use for this door."""
        return self.id if self.ref is None else self.ref


class DoorTerminalConfig(Model):
    """Face/QR door terminals publishing on the local broker."""

    kind: Literal["door_terminal"] = Field(description="Device type: face/QR door terminal")
    id: Name = Field(description="Config id; also the terminal id unless device_from_topic")
    topic: Filter = Field(description="Event topic filter, subscribed at QoS 1 ('+' per level)")
    heartbeat_topic: Filter = Field(description="Heartbeat topic filter, subscribed at QoS 1")
    command_topic: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="Topic of unlock commands; '{terminal}' stands for the terminal id; "
        "omit if the gateway may not open these doors",
    )
    device_from_topic: int | None = Field(
        None, ge=0, le=31, description="0-based '+' level of both filters naming the terminal"
    )
    doors: list[DoorConfig] = Field(min_length=1, max_length=256, description="The doors")
    profile: Name | None = Field(None, description="Named mapping (profiles/doors/<name>.yaml)")
    payload: DoorPayloadMapConfig | None = Field(None, description="Inline payload mapping")
    heartbeat_timeout: float = Field(
        90.0, ge=5, le=86400, description="Offline after this long (s) without any message"
    )
    max_payload: int = Field(
        262144, ge=256, le=1048576, description="Larger payloads are rejected unread (bytes)"
    )
    rate_limit: RateLimitConfig = Field(
        default_factory=lambda: RateLimitConfig(rate=DOOR_RATE, burst=DOOR_BURST),
        description="Per terminal: messages beyond this budget are dropped (rate_limited), but "
        "never an event that changes what a door did last (a grant, an opening, a closing)",
    )
    dedup_window: float = Field(3600.0, gt=0, le=7 * 86400, description="Id memory (s)")
    dedup_size: int = Field(10000, ge=1, le=100_000, description="Event ids remembered at most")
    skew_limit: float = Field(
        30.0, gt=0, le=86400, description="Terminal clock skew (s) above which events are flagged"
    )
    retention: Duration = Field(
        30 * 86400,
        ge=3600,
        le=366 * 86400,
        description="Longest time personal events may be kept, e.g. '30d' (seconds)",
    )
    command_ttl: float = Field(10.0, ge=1, le=300, description="Unlock valid for (s): {expires}")
    description: str = Field("", max_length=200, description="Free text, e.g. the location")
    supplier: Supplier | None = Field(None, description=SUPPLIER)

    @property
    def terminals(self) -> list[str]:
        """The terminal ids this config covers, sorted."""
        if self.device_from_topic is None:
            return [self.id]
        return sorted({d.terminal for d in self.doors if d.terminal is not None})

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.profile is None) == (self.payload is None):
            raise ValueError("give exactly one of profile (a named mapping) or payload (inline)")
        i = self.device_from_topic
        for name, topic in (("topic", self.topic), ("heartbeat_topic", self.heartbeat_topic)):
            levels = topic.split("/")
            if i is not None and (i >= len(levels) or levels[i] != "+"):
                raise ValueError(f"device_from_topic {i}: level {i} of {name} must be '+'")
        if filters_overlap(self.topic, self.heartbeat_topic):
            raise ValueError("topic and heartbeat_topic overlap: a message must be one or other")
        for door in self.doors:
            if i is not None and door.terminal is None:
                raise ValueError(f"doors: {door.id} needs a terminal (device_from_topic is set)")
            if i is None and door.terminal not in (None, self.id):
                raise ValueError(f"doors: {door.id}: terminal must be {self.id!r} or omitted")
        _unique([d.id for d in self.doors], "doors")
        _unique([(d.terminal or self.id, d.door_ref) for d in self.doors], "doors (terminal, ref)")
        if self.command_topic is not None:
            topic = check_topic_text(self.command_topic)
            if any(c in topic for c in "+#\0") or topic.startswith("$"):
                raise ValueError(f"command_topic {topic!r}: no wildcards, NUL or '$' topics")
            if set(PLACEHOLDER.findall(topic)) - {"terminal"}:
                raise ValueError("command_topic: '{terminal}' is its only placeholder")
        return self


def check_terminals(
    terminals: Sequence[DoorTerminalConfig], labels: Sequence[str] | None = None
) -> list[str]:
    """Problems between configs: duplicate ids, terminals, doors; overlapping topic filters.

    Reported under the later config, for each earlier one in order. Ids, terminals, doors and
    topics are indexed, so many configs check in linear time when they do not clash.
    """
    names = (
        list(labels) if labels is not None else [f"terminals[{i}]" for i in range(len(terminals))]
    )
    problems: list[str] = []
    ids: dict[str, set[int]] = defaultdict(set)
    owners: dict[str, set[int]] = defaultdict(set)  # terminal id -> configs
    doors: dict[str, set[int]] = defaultdict(set)  # door id -> configs
    topics = FilterIndex()
    for j, b in enumerate(terminals):
        mine, my_doors = set(b.terminals), {d.id for d in b.doors}
        overlaps = [topics.overlapping(x) for x in (b.topic, b.heartbeat_topic)]
        clashes = set(ids[b.id]).union(*(owners[t] for t in mine), *(doors[d] for d in my_doors))
        for i in sorted(clashes.union(*overlaps)):
            a = terminals[i]
            if a.id == b.id:
                problems.append(f"{names[j]}.id: duplicate id {b.id!r} (also {names[i]})")
            for t in sorted(set(a.terminals) & mine):
                problems.append(f"{names[j]}: terminal {t!r} is also in {names[i]}")
            for d in sorted({d.id for d in a.doors} & my_doors):
                problems.append(f"{names[j]}.doors: door {d!r} is also in {names[i]}")
            for x, over in zip((b.topic, b.heartbeat_topic), overlaps, strict=True):
                if i in over:
                    problems.append(f"{names[j]}: topic {x!r} overlaps a topic of {names[i]}")
        ids[b.id].add(j)
        for t in mine:
            owners[t].add(j)
        for d in my_doors:
            doors[d].add(j)
        topics.add(b.topic, j)
        topics.add(b.heartbeat_topic, j)
    return problems


def check_mapping(cfg: DoorTerminalConfig, mapping: DoorPayloadMapConfig) -> list[str]:
    """Problems between a terminal and its resolved mapping."""
    problems = []
    if mapping.door is None:
        for t in cfg.terminals:
            if sum(1 for d in cfg.doors if (d.terminal or cfg.id) == t) > 1:
                problems.append(
                    f"{cfg.id}.doors: terminal {t!r} has several doors but the "
                    "mapping has no door path"
                )
    if cfg.command_topic is not None and mapping.unlock is None:
        problems.append(f"{cfg.id}.command_topic: the mapping has no unlock template")
    return problems


# -- named payload mappings -----------------------------------------------------------------


def load_door_profile(path: Path) -> DoorPayloadMapConfig:
    """Read one door mapping file; raises ``ConfigError``."""
    extra = frozenset({"heartbeat_example"})
    return load_mapping_profile(path, DoorPayloadMapConfig, "door profile", extra)


def resolve_door_payload(
    cfg: DoorTerminalConfig, dirs: Sequence[Path] = ()
) -> DoorPayloadMapConfig:
    """The terminal's mapping: inline, or its profile from ``dirs`` then the shipped ones."""
    if cfg.payload is not None:
        return cfg.payload
    assert cfg.profile is not None  # the model guarantees one of the two
    return find_mapping_profile(cfg.id, cfg.profile, dirs, BUILTIN_DOOR_PROFILES, load_door_profile)
