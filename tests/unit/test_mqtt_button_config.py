"""Config of MQTT buttons and the local broker: good configs load, every bad one is refused.

The bad-config corpus is one table: each case starts from a good button, breaks one thing and
names a fragment of the error pydantic must report. The shipped payload profiles load and map
their own example payload to an "in alarm" event.
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

from drivers.mqtt.mapping import Button, Reject, lookup, parse
from gateway.config.mqtt_devices import (
    BUILTIN_MQTT_PROFILES,
    LocalBrokerConfig,
    LocalTlsConfig,
    MqttButtonConfig,
    PayloadMapConfig,
    check_buttons,
    filters_overlap,
    load_payload_profile,
    resolve_payload,
)
from gateway.core.errors import ConfigError

Doc = dict[str, Any]
PROFILES = sorted(  # the folder also holds mqtt_json profiles, marked by their kind
    p
    for p in BUILTIN_MQTT_PROFILES.glob("*.yaml")
    if yaml.safe_load(p.read_text(encoding="utf-8")).get("kind") != "mqtt_json"
)


def _button() -> Doc:
    return {
        "kind": "mqtt_button",
        "id": "sos",
        "topic": "acme/+/event",
        "device_from_topic": 1,
        "payload": {
            "event_id": "id",
            "state": "state",
            "active_values": ["pressed", 1, True],
            "inactive_values": ["released", 0, False],
        },
    }


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[key]
        node[last] = value

    return mutate


def _drop(path: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


# -- buttons ----------------------------------------------------------------------------------


def test_a_good_button_and_its_defaults() -> None:
    b = MqttButtonConfig.model_validate(_button())
    assert (b.max_payload, b.dedup_window, b.dedup_size) == (4096, 3600.0, 10000)
    assert b.payload is not None
    assert b.payload.format == "json"
    assert b.payload.fixed_input == "button"
    # values keep their JSON type: 1 is an int, True a bool, "1" would stay a str
    assert [type(v) for v in b.payload.active_values] == [str, int, bool]


BAD: list[tuple[str, Callable[[Doc], None], str]] = [
    ("unknown key", _set("colour", "red"), "Extra inputs are not permitted"),
    ("unknown payload key", _set("payload.path", "x"), "Extra inputs are not permitted"),
    ("wrong kind", _set("kind", "mqtt"), "Input should be 'mqtt_button'"),
    ("bad id", _set("id", "a b"), "String should match pattern"),
    ("hash wildcard", _set("topic", "acme/#"), "'#' and NUL are not allowed"),
    ("partial plus", _set("topic", "acme/b+/event"), "'+' must fill a whole topic level"),
    ("broker topic", _set("topic", "$SYS/+/x"), "'$' topics belong to the broker"),
    ("nul in topic", _set("topic", "acme/\0/x"), "no control characters"),
    ("newline in topic", _set("topic", "acme/+/event\ntopic readwrite #"), "no control characters"),
    ("blank around topic", _set("topic", " acme/+/event"), "surrounding blanks"),
    ("empty topic", _set("topic", ""), "at least 1 character"),
    ("device level literal", _set("device_from_topic", 0), "level 0 of 'acme/+/event' must be"),
    ("device level past end", _set("device_from_topic", 3), "level 3 of 'acme/+/event' must be"),
    ("no mapping", _drop("payload"), "exactly one of profile"),
    ("two mappings", _set("profile", "sos-state-json"), "exactly one of profile"),
    ("payload too small", _set("max_payload", 10), "greater than or equal to 64"),
    ("payload too big", _set("max_payload", 1 << 20), "less than or equal to 65536"),
    ("no window", _set("dedup_window", 0), "greater than 0"),
    ("no dedup size", _set("dedup_size", 0), "greater than or equal to 1"),
    ("no state", _drop("payload.state"), "Field required"),
    ("no active values", _set("payload.active_values", []), "at least 1 item"),
    ("float state value", _set("payload.active_values", [1.5]), "active_values.0"),
    ("in both lists", _set("payload.inactive_values", ["pressed"]), "in both active_values"),
    ("bad path", _set("payload.event_id", "a..b"), "String should match pattern"),
    ("spaced path", _set("payload.state", "a b"), "String should match pattern"),
    ("not json", _set("payload.format", "xml"), "Input should be 'json'"),
    ("bad fixed input", _set("payload.input", "s o s"), "String should match pattern"),
]


@pytest.mark.parametrize(("mutate", "fragment"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_button_is_refused(mutate: Callable[[Doc], None], fragment: str) -> None:
    doc = copy.deepcopy(_button())
    mutate(doc)
    with pytest.raises(ValidationError) as info:
        MqttButtonConfig.model_validate(doc)
    assert fragment in str(info.value)


def test_fixed_input_and_input_path_exclude_each_other() -> None:
    doc = _button()
    doc["payload"] |= {"input": "sos", "input_path": "evt"}
    with pytest.raises(ValidationError, match="either input"):
        MqttButtonConfig.model_validate(doc)


def test_values_of_other_types_may_be_in_both_lists() -> None:
    """1, true and "1" are different values: type-exact matching makes this consistent."""
    doc = _button()
    doc["payload"] |= {"active_values": [1], "inactive_values": [True, "1"]}
    assert MqttButtonConfig.model_validate(doc).payload is not None


def test_topic_without_wildcard_names_one_device() -> None:
    doc = _button() | {"topic": "lobby/sos", "device_from_topic": None}
    assert MqttButtonConfig.model_validate(doc).topic == "lobby/sos"


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("a/+/e", "a/x/e", True),
        ("a/+/e", "a/+/e", True),
        ("+/x/e", "a/+/e", True),
        ("a/+/e", "a/+/f", False),
        ("a/+", "a/+/e", False),
        ("a/b", "a/c", False),
    ],
)
def test_filters_overlap(a: str, b: str, overlap: bool) -> None:
    assert filters_overlap(a, b) is overlap
    assert filters_overlap(b, a) is overlap


def test_check_buttons_finds_duplicate_ids_and_overlaps() -> None:
    one = MqttButtonConfig.model_validate(_button())
    same_id = MqttButtonConfig.model_validate(_button() | {"topic": "other/+/x"})
    overlap = MqttButtonConfig.model_validate(
        _button() | {"id": "sos-2", "topic": "acme/btn-1/event", "device_from_topic": None}
    )
    fine = MqttButtonConfig.model_validate(_button() | {"id": "fine", "topic": "acme/+/state"})
    assert check_buttons([one, fine]) == []
    assert check_buttons([one, same_id, overlap], ["devices[0]", "devices[4]", "devices[7]"]) == [
        "devices[4].id: duplicate button id 'sos' (also devices[0])",
        "devices[7].topic: 'acme/btn-1/event' overlaps devices[0] ('acme/+/event'):"
        " a message must belong to one button",
    ]


# -- payload profiles -------------------------------------------------------------------------


def test_the_documented_profiles_ship() -> None:
    assert {p.stem for p in PROFILES} >= {"sos-state-json", "data-alarm-json"}


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_profile_loads_and_maps_its_example(path: Path) -> None:
    mapping = load_payload_profile(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key in ("description", "vendor", "notes", "example"):
        assert isinstance(data[key], str)
        assert data[key].strip()
    cfg = MqttButtonConfig.model_validate(
        {"kind": "mqtt_button", "id": "b", "topic": "v/+/e", "device_from_topic": 1}
        | {"profile": path.stem}
    )
    assert resolve_payload(cfg) == mapping
    _, event = parse([Button(cfg, mapping)], "v/dev-1/e", data["example"].encode(), 5.0)
    assert (event.device, event.active, event.ts) == ("dev-1", True, 5.0)
    assert mapping.event_id is not None  # both shipped shapes carry an event id
    assert event.event_id == str(lookup(json.loads(data["example"]), mapping.event_id))


def test_site_profile_shadows_the_shipped_one(tmp_path: Path) -> None:
    own = {
        "name": "sos-state-json",
        "description": "site variant",
        "payload": {"state": "s", "active_values": ["SOS"], "input": "red"},
    }
    (tmp_path / "sos-state-json.yaml").write_text(yaml.safe_dump(own))
    cfg = MqttButtonConfig.model_validate(
        {"kind": "mqtt_button", "id": "b", "topic": "v/e", "profile": "sos-state-json"}
    )
    assert resolve_payload(cfg, [tmp_path]).fixed_input == "red"
    assert resolve_payload(cfg).input_path == "evt"


def test_unknown_profile_names_what_was_searched(tmp_path: Path) -> None:
    cfg = MqttButtonConfig.model_validate(
        {"kind": "mqtt_button", "id": "b", "topic": "v/e", "profile": "nope"}
    )
    with pytest.raises(ConfigError) as info:
        resolve_payload(cfg, [tmp_path])
    (line,) = info.value.errors
    assert "unknown profile 'nope'" in line
    assert str(tmp_path) in line


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: p\npayload: {state: s, active_values: [1]}\nextra: 1\n", "extra: unknown key"),
        ("name: other\npayload: {state: s, active_values: [1]}\n", "must be 'p'"),
        ("name: p\npayload: {state: s}\n", "payload.active_values: Field required"),
        ("name: p\n", "a mapping with a 'payload' mapping"),
        ("name: [p\n", "cannot read"),
    ],
)
def test_bad_profile_is_refused(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_payload_profile(path)
    assert any(fragment in e for e in info.value.errors), info.value.errors


# -- the local broker -------------------------------------------------------------------------


def test_local_broker_defaults_and_ports(tmp_path: Path) -> None:
    broker = LocalBrokerConfig.model_validate({})
    assert (broker.host, broker.effective_port, broker.keepalive) == ("127.0.0.1", 1883, 15)
    assert broker.client_id_for("s1", "g1") == "cgw-s1-g1-local"
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    tls = LocalBrokerConfig.model_validate({"tls": {"ca_file": str(ca)}, "client_id": "gw-a"})
    assert (tls.effective_port, tls.client_id_for("s1", "g1")) == (8883, "gw-a")


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"port": 0}, "greater than or equal to 1"),
        ({"client_id": "a/b"}, "String should match pattern"),
        ({"client_id": ""}, "String should match pattern"),
        ({"keepalive": 1}, "greater than or equal to 5"),
        ({"reconnect_max": 0.1}, "greater than or equal to 1"),
        ({"hostname": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_local_broker_is_refused(doc: Doc, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        LocalBrokerConfig.model_validate(doc)


def test_password_file_rules(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    pw.chmod(0o600)
    with pytest.raises(ValidationError, match="password_file needs a username"):
        LocalBrokerConfig.model_validate({"password_file": str(pw)})
    assert LocalBrokerConfig.model_validate({"username": "gw", "password_file": str(pw)})
    pw.chmod(0o640)
    with pytest.raises(ValidationError, match="readable by group or others"):
        LocalBrokerConfig.model_validate({"username": "gw", "password_file": str(pw)})


def test_tls_cert_and_key_go_together(tmp_path: Path) -> None:
    for name in ("ca", "crt"):
        (tmp_path / name).write_text("x")
    with pytest.raises(ValidationError, match="cert_file and key_file go together"):
        LocalTlsConfig.model_validate(
            {"ca_file": str(tmp_path / "ca"), "cert_file": str(tmp_path / "crt")}
        )


@pytest.mark.parametrize(
    "model", [LocalBrokerConfig, LocalTlsConfig, MqttButtonConfig, PayloadMapConfig]
)
def test_every_field_is_described(model: type[BaseModel]) -> None:
    schema = model.model_json_schema()
    assert schema["additionalProperties"] is False
    missing = [name for name, field in model.model_fields.items() if not field.description]
    assert missing == []


def test_a_device_the_entry_does_not_list_is_refused_without_naming_it() -> None:
    cfg = MqttButtonConfig.model_validate(
        {
            "kind": "mqtt_button",
            "id": "flats",
            "topic": "sos/+/event",
            "device_from_topic": 1,
            "devices": ["flat-101"],
            "payload": {"state": "s", "active_values": ["on"], "inactive_values": ["off"]},
        }
    )
    button = Button(cfg, resolve_payload(cfg))
    _, event = parse([button], "sos/flat-101/event", b'{"s": "on"}', 5.0)
    assert event.device == "flat-101"
    with pytest.raises(Reject) as info:
        parse([button], "sos/invented-3000/event", b'{"s": "on"}', 5.0)
    assert (info.value.reason, info.value.device) == ("unknown_device", "flats")


def test_devices_needs_device_from_topic_and_an_open_wildcard_is_warned_about() -> None:
    with pytest.raises(ValidationError, match="set device_from_topic"):
        MqttButtonConfig.model_validate(
            {"kind": "mqtt_button", "id": "b", "topic": "b/1", "devices": ["x"],
             "profile": "sos-state-json"}
        )  # fmt: skip
