"""Config of door terminals and privacy: good configs load, every bad one is refused.

As for buttons, the bad-config corpus is a table: each case breaks one thing in a good config
and names a fragment of the error. The shipped door profiles load and map their own example
event and heartbeat, and their unlock template renders to JSON with every placeholder filled.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from drivers.doors.mapping import Heartbeat, Terminal, parse, unlock_payload
from gateway.config.doors import (
    BUILTIN_DOOR_PROFILES,
    PLACEHOLDER,
    PLACEHOLDERS,
    CredentialValue,
    DoorConfig,
    DoorPayloadMapConfig,
    DoorTerminalConfig,
    HeartbeatMapConfig,
    KindValue,
    ReasonValue,
    check_mapping,
    check_terminals,
    load_door_profile,
    resolve_door_payload,
)
from gateway.config.secret_keys import PrivacyConfig
from gateway.core.access import AccessEvent
from gateway.core.errors import ConfigError
from gateway.pipeline.privacy import Pseudonymiser
from tests.support.privacy import private_parse

Doc = dict[str, Any]
PROFILES = sorted(BUILTIN_DOOR_PROFILES.glob("*.yaml"))
NAMES = Pseudonymiser("site-1", bytes(range(32)))


def _terminal() -> Doc:
    return {
        "kind": "door_terminal",
        "id": "facegate",
        "topic": "facegate/+/event",
        "heartbeat_topic": "facegate/+/heartbeat",
        "command_topic": "facegate/{terminal}/cmd",
        "device_from_topic": 1,
        "doors": [
            {"id": "A1-main", "terminal": "FG-A1", "ref": 1},
            {"id": "A1-side", "terminal": "FG-A1", "ref": 2},
            {"id": "A2-main", "terminal": "FG-A2", "ref": 1},
        ],
        "payload": {
            "event_id": "eventId",
            "kind": "eventType",
            "kind_values": [{"value": "PASS", "kind": "granted"}, {"value": 7, "kind": "denied"}],
            "door": "doorNo",
            "person": "personId",
            "drop": ["faceImage"],
            "unlock": {"cmd": "open", "door": "{door}", "s": "{seconds}"},
        },
    }


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value

    return mutate


def _drop(path: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        del node[last]

    return mutate


# -- terminals --------------------------------------------------------------------------------


def test_a_good_terminal_and_its_defaults() -> None:
    t = DoorTerminalConfig.model_validate(_terminal())
    assert (t.heartbeat_timeout, t.max_payload, t.skew_limit) == (90.0, 262144, 30.0)
    assert (t.retention, t.command_ttl, t.dedup_window, t.dedup_size) == (
        2592000,
        10.0,
        3600.0,
        10000,
    )
    assert t.terminals == ["FG-A1", "FG-A2"]
    door = t.doors[0]
    assert (door.held_open_after, door.grant_window, door.escape_route) == (60.0, 10.0, False)
    assert (door.door_ref, DoorConfig(id="B2-east").door_ref) == (1, "B2-east")
    assert t.payload is not None
    assert (t.payload.time_format, t.payload.naive_offset, t.payload.format) == (
        "epoch_s",
        "+08:00",
        "json",
    )
    single = _terminal() | {
        "device_from_topic": None,
        "topic": "gate/evt",
        "heartbeat_topic": "gate/hb",
    }
    single["doors"] = [{"id": "G1"}, {"id": "G2", "terminal": "facegate"}]
    assert DoorTerminalConfig.model_validate(single).terminals == ["facegate"]


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        ("30d", 2592000),
        ("12h", 43200),
        ("90m", 5400),
        ("7200", 7200),
        (" 2d ", 172800),
        (3600, 3600),
    ],
)
def test_retention_durations(given: object, seconds: int) -> None:
    assert (
        DoorTerminalConfig.model_validate(_terminal() | {"retention": given}).retention == seconds
    )


BAD: list[tuple[str, Callable[[Doc], None], str]] = [
    ("unknown key", _set("colour", "red"), "Extra inputs are not permitted"),
    ("wrong kind", _set("kind", "door"), "Input should be 'door_terminal'"),
    ("bad id", _set("id", "a b"), "String should match pattern"),
    ("hash wildcard", _set("topic", "facegate/#"), "'#' and NUL are not allowed"),
    ("partial plus", _set("heartbeat_topic", "f/x+/hb"), "'+' must fill a whole topic level"),
    ("broker topic", _set("topic", "$SYS/+/e"), "'$' topics belong to the broker"),
    ("device level literal", _set("device_from_topic", 0), "level 0 of topic must be '+'"),
    ("heartbeat level", _set("heartbeat_topic", "hb/x/+"), "level 1 of heartbeat_topic must be"),
    ("same topics", _set("heartbeat_topic", "facegate/+/event"), "overlap"),
    ("no doors", _set("doors", []), "at least 1 item"),
    ("door without terminal", _drop("doors.0.terminal"), "needs a terminal"),
    ("duplicate door", _set("doors.1.id", "A1-main"), "'A1-main' is listed twice"),
    ("duplicate ref", _set("doors.1.ref", 1), "is listed twice"),
    ("door ref bool", _set("doors.0.ref", True), "doors.0.ref"),
    ("held open zero", _set("doors.0.held_open_after", 0), "greater than or equal to 1"),
    ("grant window zero", _set("doors.0.grant_window", 0), "greater than 0"),
    ("two mappings", _set("profile", "facegate-json"), "exactly one of profile"),
    ("no mapping", _drop("payload"), "exactly one of profile"),
    ("command wildcard", _set("command_topic", "f/+/cmd"), "no wildcards"),
    ("command newline", _set("command_topic", "f/{terminal}/cmd\nx"), "no control characters"),
    ("heartbeat newline", _set("heartbeat_topic", "f/hb\rx"), "no control characters"),
    ("command placeholder", _set("command_topic", "f/{door}/cmd"), "'{terminal}' is its only"),
    ("heartbeat too fast", _set("heartbeat_timeout", 1), "greater than or equal to 5"),
    ("payload too big", _set("max_payload", 2 << 20), "less than or equal to 1048576"),
    ("bad duration", _set("retention", "30 days"), "whole seconds, or a number with s, m, h or d"),
    ("short retention", _set("retention", "10m"), "greater than or equal to 3600"),
    ("long retention", _set("retention", "400d"), "less than or equal to 31622400"),
    ("no skew limit", _set("skew_limit", 0), "greater than 0"),
    # the payload mapping
    ("unknown payload key", _set("payload.path", "x"), "Extra inputs are not permitted"),
    ("no kind values", _set("payload.kind_values", []), "at least 1 item"),
    (
        "unknown kind",
        _set("payload.kind_values", [{"value": 1, "kind": "open"}]),
        "kind_values.0.kind",
    ),
    (
        "heartbeat kind",
        _set("payload.kind_values", [{"value": 1, "kind": "terminal_online"}]),
        "terminal_* kinds come from heartbeats",
    ),
    ("heartbeat default", _set("payload.kind_default", "terminal_offline"), "come from heartbeats"),
    (
        "duplicate value",
        _set(
            "payload.kind_values", [{"value": 1, "kind": "granted"}, {"value": 1, "kind": "denied"}]
        ),
        "kind_values: 1 is listed twice",
    ),
    ("float value", _set("payload.kind_values", [{"value": 1.5, "kind": "granted"}]), "value"),
    ("unknown reason", _set("payload.reason_values", [{"value": 1, "reason": "sad"}]), "reason"),
    (
        "unknown credential",
        _set("payload.credential_values", [{"value": "F", "credential": "iris"}]),
        "credential",
    ),
    ("drop what is read", _set("payload.drop", ["personId"]), "'personId' is read as 'personId'"),
    ("drop under a read", _set("payload.drop", ["doorNo.x"]), "is read as 'doorNo'"),
    ("read under a drop", _set("payload.person", "faceImage.id"), "'faceImage' is read as"),
    ("bad time format", _set("payload.time_format", "rfc2822"), "time_format"),
    ("bad offset", _set("payload.naive_offset", "+8"), "String should match pattern"),
    (
        "unknown placeholder",
        _set("payload.unlock", {"x": "{door_no}"}),
        "unknown placeholder {door_no}",
    ),
    ("not json template", _set("payload.unlock", {"x": {1, 2}}), "unlock.x"),
    ("state without values", _set("payload.heartbeat", {"state": "s"}), "go together"),
    ("values without state", _set("payload.heartbeat", {"offline_values": [0]}), "go together"),
]


@pytest.mark.parametrize(("mutate", "fragment"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_terminal_is_refused(mutate: Callable[[Doc], None], fragment: str) -> None:
    doc = copy.deepcopy(_terminal())
    mutate(doc)
    with pytest.raises(ValidationError) as info:
        DoorTerminalConfig.model_validate(doc)
    assert fragment in str(info.value)


def test_single_terminal_doors_must_name_it_or_nothing() -> None:
    doc = _terminal() | {"device_from_topic": None}
    with pytest.raises(ValidationError, match="terminal must be 'facegate' or omitted"):
        DoorTerminalConfig.model_validate(doc)
    doc["doors"] = [{"id": "G1", "ref": 1}, {"id": "G2", "terminal": "facegate", "ref": 1}]
    with pytest.raises(ValidationError, match=r"\('facegate', 1\) is listed twice"):
        DoorTerminalConfig.model_validate(doc)


def test_check_terminals_finds_clashes() -> None:
    a = DoorTerminalConfig.model_validate(_terminal())
    fine = DoorTerminalConfig.model_validate(
        _terminal()
        | {
            "id": "qr",
            "topic": "qr/+/e",
            "heartbeat_topic": "qr/+/h",
            "doors": [{"id": "B2", "terminal": "QR-1"}],
        }
    )
    clash = DoorTerminalConfig.model_validate(
        _terminal()
        | {
            "topic": "x/+/e",
            "heartbeat_topic": "facegate/FG-9/heartbeat",
            "device_from_topic": None,
        }
        | {"doors": [{"id": "A1-main"}]}
    )
    assert check_terminals([a, fine]) == []
    assert check_terminals([a, fine, clash], ["devices[0]", "devices[3]", "devices[5]"]) == [
        "devices[5].id: duplicate id 'facegate' (also devices[0])",
        "devices[5].doors: door 'A1-main' is also in devices[0]",
        "devices[5]: topic 'facegate/FG-9/heartbeat' overlaps a topic of devices[0]",
    ]
    same_terminal = DoorTerminalConfig.model_validate(
        _terminal()
        | {"id": "fg2", "topic": "y/+/e", "heartbeat_topic": "y/+/h"}
        | {"doors": [{"id": "Z", "terminal": "FG-A2"}]}
    )
    assert check_terminals([a, same_terminal]) == [
        "terminals[1]: terminal 'FG-A2' is also in terminals[0]"
    ]


def test_check_mapping() -> None:
    cfg = DoorTerminalConfig.model_validate(_terminal())
    mapping = resolve_door_payload(cfg)
    assert check_mapping(cfg, mapping) == []
    no_door = mapping.model_copy(update={"door": None, "unlock": None})
    assert check_mapping(cfg, no_door) == [
        "facegate.doors: terminal 'FG-A1' has several doors but the mapping has no door path",
        "facegate.command_topic: the mapping has no unlock template",
    ]


# -- privacy ----------------------------------------------------------------------------------


def _names(cfg: PrivacyConfig) -> Pseudonymiser:
    """The pseudonymiser the pipeline builds from ``cfg``."""
    return Pseudonymiser.from_files("site-1", cfg.key_file, cfg.previous_key_file)


def test_privacy_config_loads_the_keys(tmp_path: Path) -> None:
    key, old = tmp_path / "pseudonym.key", tmp_path / "old.key"
    key.write_bytes(bytes(range(32)).hex().encode() + b"\n")
    old.write_bytes(bytes(range(160, 192)))
    for path in (key, old):
        path.chmod(0o600)
    cfg = PrivacyConfig.model_validate({"key_file": str(key)})
    assert _names(cfg).pseudonym("R-1") == NAMES.pseudonym("R-1")
    both = PrivacyConfig.model_validate({"key_file": str(key), "previous_key_file": str(old)})
    assert _names(both).previous_key_id is not None
    old.chmod(0o640)
    with pytest.raises(ValidationError, match="readable by group or others"):
        PrivacyConfig.model_validate({"key_file": str(key), "previous_key_file": str(old)})
    with pytest.raises(ValidationError, match="does not point to a file"):
        PrivacyConfig.model_validate({"key_file": str(tmp_path / "missing")})
    key.write_bytes(b"letmein-letmein-letmein-letmein!")
    with pytest.raises(ConfigError, match="a passphrase is not a key"):
        _names(cfg)


# -- door profiles ----------------------------------------------------------------------------


def test_the_documented_profiles_ship() -> None:
    assert {p.stem for p in PROFILES} >= {"facegate-json", "qrpass-v2"}


def _lookup(doc: Any, path: str) -> Any:
    for part in path.split("."):
        doc = doc[part]
    return doc


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_profile_loads_and_maps_its_examples(path: Path) -> None:
    mapping = load_door_profile(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key in ("description", "vendor", "notes", "example", "heartbeat_example"):
        assert isinstance(data[key], str)
        assert data[key].strip()
    example = json.loads(data["example"])
    assert mapping.door is not None
    assert mapping.person is not None
    assert mapping.event_id is not None
    ref = _lookup(example, mapping.door)
    cfg = DoorTerminalConfig.model_validate(
        {"kind": "door_terminal", "id": "t", "topic": "v/+/e", "heartbeat_topic": "v/+/h"}
        | {"command_topic": "v/{terminal}/c", "device_from_topic": 1, "profile": path.stem}
        | {"doors": [{"id": "D1", "terminal": "T1", "ref": ref}]}
    )
    assert resolve_door_payload(cfg) == mapping
    terminal = Terminal.resolve(cfg, mapping)
    parsed = private_parse([terminal], "v/T1/e", data["example"].encode(), 1_795_806_700.0, NAMES)
    event = parsed.message
    assert isinstance(event, AccessEvent)
    assert (event.device, event.door, event.kind, event.data_class) == (
        "T1",
        "D1",
        "granted",
        "personal",
    )
    raw = str(_lookup(example, mapping.person))
    assert event.person == NAMES.pseudonym(raw)
    assert event.event_id == str(_lookup(example, mapping.event_id))
    assert event.terminal_ts is not None
    assert event.snapshot_ref
    assert not parsed.snapshot_dropped
    for dropped in mapping.drop:  # what the example carries there never reaches the event
        try:
            value = _lookup(example, dropped)
        except KeyError:
            continue
        if isinstance(value, str) and value:
            assert value not in repr(event)
    assert raw not in repr(event)
    beat = parse([terminal], "v/T1/h", data["heartbeat_example"].encode(), 1_795_806_700.0)
    assert isinstance(beat.message, Heartbeat)
    assert beat.message.online is True
    assert beat.message.terminal_ts is not None
    assert mapping.unlock is not None
    values = {name: f"<{name}>" for name in PLACEHOLDERS}
    rendered = unlock_payload(mapping.unlock, values).decode()
    assert not PLACEHOLDER.search(rendered)
    assert "<door>" in rendered
    assert "<seconds>" in rendered
    assert check_mapping(cfg, mapping) == []


def test_site_profile_shadows_the_shipped_one(tmp_path: Path) -> None:
    own = {
        "name": "qrpass-v2",
        "description": "site variant",
        "payload": {"kind": "r", "kind_values": [{"value": "OK", "kind": "granted"}]},
    }
    (tmp_path / "qrpass-v2.yaml").write_text(yaml.safe_dump(own))
    cfg = DoorTerminalConfig.model_validate(
        {"kind": "door_terminal", "id": "q", "topic": "q/e", "heartbeat_topic": "q/h"}
        | {"profile": "qrpass-v2", "doors": [{"id": "D"}]}
    )
    assert resolve_door_payload(cfg, [tmp_path]).kind == "r"
    assert resolve_door_payload(cfg).kind == "body.result.code"


def test_unknown_profile_names_what_was_searched(tmp_path: Path) -> None:
    cfg = DoorTerminalConfig.model_validate(
        {"kind": "door_terminal", "id": "q", "topic": "q/e", "heartbeat_topic": "q/h"}
        | {"profile": "nope", "doors": [{"id": "D"}]}
    )
    with pytest.raises(ConfigError) as info:
        resolve_door_payload(cfg, [tmp_path])
    (line,) = info.value.errors
    assert "unknown profile 'nope'" in line
    assert str(tmp_path) in line


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "name: p\npayload: {kind: k, kind_values: [{value: 1, kind: granted}]}\nx: 1\n",
            "x: unknown key",
        ),
        ("name: q\npayload: {kind: k, kind_values: [{value: 1, kind: granted}]}\n", "must be 'p'"),
        ("name: p\npayload: {kind: k}\n", "payload.kind_values: Field required"),
        ("name: p\n", "a mapping with a 'payload' mapping"),
        ("name: [p\n", "cannot read"),
    ],
)
def test_bad_profile_is_refused(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_door_profile(path)
    assert any(fragment in e for e in info.value.errors), info.value.errors


@pytest.mark.parametrize(
    "model",
    [
        DoorTerminalConfig,
        DoorConfig,
        DoorPayloadMapConfig,
        HeartbeatMapConfig,
        KindValue,
        ReasonValue,
        CredentialValue,
        PrivacyConfig,
    ],
)
def test_every_field_is_described(model: type[BaseModel]) -> None:
    schema = model.model_json_schema()
    assert schema["additionalProperties"] is False
    missing = [name for name, field in model.model_fields.items() if not field.description]
    assert missing == []
