"""The config loader refuses every bad config with ``key.path: reason``, and loads good ones.

The bad-config corpus is one table: each case starts from a good config (or is raw YAML text),
breaks one thing, and names the error line it must produce. Every case also checks that this is
the *only* error, so a fault never hides behind (or drowns in) follow-on noise.
"""

from __future__ import annotations

import copy
import json
import os
import typing
from collections.abc import Callable
from datetime import time
from pathlib import Path
from typing import Any

import pytest
import yaml

# jsonschema ships no type information and the test extras have no stubs for it
from jsonschema import Draft202012Validator

from gateway.cli.main import main
from gateway.config import Config, load_config
from gateway.config.loader import BUILTIN_PROFILES
from gateway.config.models import DeviceConfig
from gateway.core.errors import ConfigError
from tests.support.configs import as_modbus

Doc = dict[str, Any]
Mutation = Callable[[Doc], None]

SECRET = "hunter2-do-not-echo"


def _base() -> Doc:
    """A good config: two buses, two devices, a password file; paths relative to its folder."""
    return {
        "gateway": {"site_id": "s1", "gateway_id": "g1"},
        "store": {"path": "data/store.db", "quota": "4MiB", "reserve": "1MiB"},
        "upstream": {"mqtt": {"host": "broker.example", "username": "gw", "password_file": "pw"}},
        "buses": [
            {"kind": "modbus_tcp", "id": "tcp", "host": "10.0.0.2"},
            {"kind": "modbus_rtu", "id": "rs", "port": "/dev/ttyUSB0"},
        ],
        "devices": [
            {
                "kind": "modbus",
                "id": "d1",
                "bus": "tcp",
                "unit_id": 1,
                "points": [
                    {"name": "a", "address": 0},
                    {"name": "b", "address": 1, "type": "int16", "scale": 0.1},
                ],
            },
            {
                "kind": "modbus",
                "id": "d2",
                "bus": "rs",
                "unit_id": 1,
                "points": [{"name": "t", "table": "input", "address": 0}],
            },
        ],
    }


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    """A config folder with the files the corpus refers to (secrets private unless named open)."""
    folder = tmp_path.resolve()
    _write(folder / "pw", SECRET + "\n", 0o600)
    _write(folder / "pw-open", SECRET + "\n", 0o644)
    _write(folder / "pw-group", SECRET + "\n", 0o640)
    _write(folder / "ca.pem", "any file will do: the loader only checks it exists\n", 0o644)
    _write(folder / "client.pem", "certificate\n", 0o644)
    _write(folder / "client.key", "private key\n", 0o600)
    _write(folder / "client-open.key", "private key\n", 0o644)
    broken = "name: broken\npoints:\n  - name: x\n    address: 70000\n"
    _write(folder / "profiles" / "broken.yaml", broken, 0o644)
    return folder


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)


def _save(folder: Path, doc: Doc | str) -> Path:
    path = folder / "gateway.yaml"
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def _errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


# -- building mutations -------------------------------------------------------------------------


def _node(doc: Doc, path: tuple[str | int, ...]) -> Any:
    node: Any = doc
    for key in path:
        node = node[key]
    return node


def _set(*path: str | int, value: object) -> Mutation:
    def mutate(doc: Doc) -> None:
        _node(doc, path[:-1])[path[-1]] = value

    return mutate


def _drop(*path: str | int) -> Mutation:
    def mutate(doc: Doc) -> None:
        del _node(doc, path[:-1])[path[-1]]

    return mutate


def _add(*path: str | int, item: object) -> Mutation:
    def mutate(doc: Doc) -> None:
        _node(doc, path).append(item)

    return mutate


def _all(*mutations: Mutation) -> Mutation:
    def mutate(doc: Doc) -> None:
        for m in mutations:
            m(doc)

    return mutate


MQTT = ("upstream", "mqtt")
D0 = ("devices", 0)
P0 = ("devices", 0, "points", 0)
P1 = ("devices", 0, "points", 1)

SECOND_D1 = {
    "kind": "modbus",
    "id": "d1",
    "bus": "rs",
    "unit_id": 2,
    "points": [{"name": "x", "address": 0}],
}
OVERLAPPING = [  # a float32 at 10..11 and a uint16 at 11
    {"name": "f", "address": 10, "type": "float32"},
    {"name": "u", "address": 11, "type": "uint16"},
]
BACKWARDS = [  # the later point starts below the earlier one and runs into it
    {"name": "u", "address": 11, "type": "uint16"},
    {"name": "f", "address": 10, "type": "float32"},
]
OPEN_KEY_TLS = {"ca_file": "ca.pem", "cert_file": "client.pem", "key_file": "client-open.key"}

BAD_YAML = """\
gateway:
  site_id: s1
  gateway_id: g1
store: {path: store.db
upstream:
  mqtt: {host: broker.example}
"""

# (id, mutation of _base() or whole YAML text, the error line's start, substrings of its rest)
# "{dir}" stands for the config's folder.
CASES: list[tuple[str, Mutation | str, str, tuple[str, ...]]] = [
    # unknown keys, at several depths
    ("unknown-top-key", _set("logging", value={"level": "INFO"}), "logging: ", ("unknown key",)),
    ("unknown-store-key", _set("store", "size", value="1GiB"), "store.size: ", ("unknown key",)),
    (
        "inline-password",
        _set(*MQTT, "password", value=SECRET),
        "upstream.mqtt.password: ",
        ("unknown key",),
    ),
    (
        "unknown-bus-key",
        _set("buses", 1, "baud", value=9600),
        "buses[1] (rs).baud: ",
        ("unknown key",),
    ),
    (
        "unknown-point-key",
        _set(*P1, "register", value=3),
        "devices[0] (d1).points[1].register: ",
        ("unknown key",),
    ),
    # wrong types
    (
        "unit-id-not-int",
        _set(*D0, "unit_id", value="one"),
        "devices[0] (d1).unit_id: ",
        ("valid integer",),
    ),
    (
        "points-not-list",
        _set(*D0, "points", value="a,b"),
        "devices[0] (d1).points: ",
        ("valid list",),
    ),
    ("gateway-not-mapping", _set("gateway", value="g1"), "gateway: ", ("valid dictionary",)),
    (
        "host-not-string",
        _set(*MQTT, "host", value=["a"]),
        "upstream.mqtt.host: ",
        ("valid string",),
    ),
    (
        "address-not-int",
        _set(*P1, "address", value="0x10"),
        "devices[0] (d1).points[1].address: ",
        ("valid integer",),
    ),
    # missing required keys
    (
        "missing-site-id",
        _drop("gateway", "site_id"),
        "gateway.site_id: ",
        ("required key is missing",),
    ),
    ("missing-upstream", _drop("upstream"), "upstream: ", ("required key is missing",)),
    (
        "missing-point-address",
        _drop(*P0, "address"),
        "devices[0] (d1).points[0].address: ",
        ("required key is missing",),
    ),
    (
        "missing-bus-kind",
        _drop("buses", 0, "kind"),
        "buses[0] (tcp).kind: ",
        ("required key is missing",),
    ),
    # ranges
    ("unit-id-0", _set(*D0, "unit_id", value=0), "devices[0] (d1).unit_id: ", ("equal to 1",)),
    (
        "unit-id-248",
        _set(*D0, "unit_id", value=248),
        "devices[0] (d1).unit_id: ",
        ("equal to 247",),
    ),
    ("bus-port-0", _set("buses", 0, "port", value=0), "buses[0] (tcp).port: ", ("equal to 1",)),
    (
        "mqtt-port-70000",
        _set(*MQTT, "port", value=70000),
        "upstream.mqtt.port: ",
        ("equal to 65535",),
    ),
    ("interval-0", _set(*D0, "interval", value=0), "devices[0] (d1).interval: ", ("equal to 0.1",)),
    (
        "negative-timeout",
        _set("buses", 0, "timeout", value=-1),
        "buses[0] (tcp).timeout: ",
        ("greater than 0",),
    ),
    (
        "max-block-126",
        _set(*D0, "max_block", value=126),
        "devices[0] (d1).max_block: ",
        ("equal to 125",),
    ),
    (
        "address-past-65535",
        _all(_set(*P1, "address", value=65535), _set(*P1, "type", value="int32")),
        "devices[0] (d1).points[1]: ",
        ("address 65535 + 2 registers passes 65535",),
    ),
    ("bad-device-id", _set(*D0, "id", value="d 1"), "devices[0] (d 1).id: ", ("pattern",)),
    ("bad-parity", _set("buses", 1, "parity", value="X"), "buses[1] (rs).parity: ", ("'N', 'E'",)),
    ("bad-log-level", _set("log_level", value="TRACE"), "log_level: ", ("pattern",)),
    # cross-field rules
    (
        "interval-below-request-budget",
        _all(
            _set("buses", 0, "timeout", value=2),
            _set("buses", 0, "retries", value=2),
            _set(*D0, "interval", value=5),
        ),
        "devices[0] (d1).interval: ",
        ("5.0 s is shorter than one request's worst case", "(2.0 s x 3 attempts)"),
    ),
    (
        "duplicate-device-id",
        _add("devices", item=SECOND_D1),
        "devices[2] (d1).id: ",
        ("duplicate device id 'd1' (also devices[0])",),
    ),
    (
        "duplicate-bus-id",
        _add("buses", item={"kind": "modbus_tcp", "id": "tcp", "host": "10.0.0.3"}),
        "buses[2] (tcp).id: ",
        ("duplicate bus id 'tcp' (also buses[0])",),
    ),
    ("unknown-bus", _set(*D0, "bus", value="rs9"), "devices[0] (d1).bus: ", ("unknown bus 'rs9'",)),
    (
        "same-unit-on-one-bus",
        _set("devices", 1, "bus", value="tcp"),
        "devices[1] (d2).unit_id: ",
        ("unit 1 is already used on bus 'tcp' by devices[0]",),
    ),
    (
        "duplicate-point-name",
        _set(*P1, "name", value="a"),
        "devices[0] (d1).points[1].name: ",
        ("duplicate point name 'a'",),
    ),
    (
        "overlapping-registers",
        _set(*D0, "points", value=OVERLAPPING),
        "devices[0] (d1).points[1].address: ",
        ("holding 11..11 overlaps points[0] (10..11)",),
    ),
    (
        "overlap-listed-backwards",
        _set(*D0, "points", value=BACKWARDS),
        "devices[0] (d1).points[1].address: ",
        ("holding 10..11 overlaps points[0] (11..11)",),
    ),
    (
        "float32-wider-than-max-block",
        _all(_set(*D0, "max_block", value=1), _set(*P1, "type", value="float32")),
        "devices[0] (d1).points[1].type: ",
        ("float32 needs 2 registers, more than max_block 1",),
    ),
    # point consistency
    (
        "bool-in-holding-table",
        _set(*P1, "type", value="bool"),
        "devices[0] (d1).points[1]: ",
        ("type 'bool' does not fit table 'holding'",),
    ),
    (
        "float32-in-coil-table",
        _all(_set(*P1, "table", value="coil"), _set(*P1, "type", value="float32")),
        "devices[0] (d1).points[1]: ",
        ("type 'float32' does not fit table 'coil'",),
    ),
    (
        "range-min-above-max",
        _set(*P0, "range", value=[100, 0]),
        "devices[0] (d1).points[0]: ",
        ("range [100.0, 0.0]: min must be below max",),
    ),
    (
        "range-min-equals-max",
        _set(*P0, "range", value=[5, 5]),
        "devices[0] (d1).points[0]: ",
        ("range [5.0, 5.0]: min must be below max",),
    ),
    ("scale-0", _set(*P1, "scale", value=0), "devices[0] (d1).points[1]: ", ("scale 0",)),
    # store
    (
        "reserve-equals-quota",
        _set("store", "reserve", value="4MiB"),
        "store: ",
        ("reserve (4194304 B) must be smaller than quota (4194304 B)",),
    ),
    (
        "quota-below-minimum",
        _all(_set("store", "quota", value="32KiB"), _set("store", "reserve", value=0)),
        "store: ",
        ("quota 32768 B is below the 64 KiB minimum",),
    ),
    # profiles
    (
        "unknown-profile",
        _all(_set(*D0, "profile", value="no-such-profile"), _drop(*D0, "points")),
        "devices[0] (d1).profile: ",
        ("unknown profile 'no-such-profile'", "{dir}/profiles", str(BUILTIN_PROFILES)),
    ),
    (
        "profile-with-invalid-point",
        _all(_set(*D0, "profile", value="broken"), _drop(*D0, "points")),
        "{dir}/profiles/broken.yaml: points[0].address: ",
        ("less than or equal to 65535",),
    ),
    # secret and certificate files
    (
        "password-file-mode-0644",
        _set(*MQTT, "password_file", value="pw-open"),
        "upstream.mqtt.password_file: ",
        ("{dir}/pw-open is readable by group or others (mode 644)", "chmod 600"),
    ),
    (
        "password-file-mode-0640",
        _set(*MQTT, "password_file", value="pw-group"),
        "upstream.mqtt.password_file: ",
        ("{dir}/pw-group is readable by group or others (mode 640)",),
    ),
    (
        "key-file-mode-0644",
        _set(*MQTT, "tls", value=OPEN_KEY_TLS),
        "upstream.mqtt.tls.key_file: ",
        ("{dir}/client-open.key is readable by group or others (mode 644)",),
    ),
    (
        "missing-ca-file",
        _set(*MQTT, "tls", value={"ca_file": "no-ca.pem"}),
        "upstream.mqtt.tls.ca_file: ",
        ("does not point to a file",),
    ),
    (
        "cert-without-key",
        _set(*MQTT, "tls", value={"ca_file": "ca.pem", "cert_file": "client.pem"}),
        "upstream.mqtt.tls: ",
        ("cert_file and key_file go together",),
    ),
    (
        "password-file-without-username",
        _drop(*MQTT, "username"),
        "upstream.mqtt: ",
        ("password_file needs a username",),
    ),
    # document shape
    ("invalid-yaml", BAD_YAML, "{dir}/gateway.yaml (line 5, column 9): ", ("invalid YAML",)),
    ("top-level-list", "- gateway\n- store\n", "(top level): ", ("must be a mapping",)),
    ("empty-file", "", "(top level): ", ("must be a mapping",)),
    # topics and kinds
    (
        "topic-root-wildcard",
        _set(*MQTT, "topic_root", value="cgw/#"),
        "upstream.mqtt.topic_root: ",
        ("contains '#'", "wildcards"),
    ),
    (
        "topic-root-leading-slash",
        _set(*MQTT, "topic_root", value="/cgw"),
        "upstream.mqtt.topic_root: ",
        ("no leading, trailing or double '/'",),
    ),
    (
        "unknown-bus-kind",
        _set("buses", 0, "kind", value="modbus_udp"),
        "buses[0] (tcp).kind: ",
        ("'modbus_udp'", "'modbus_tcp', 'modbus_rtu_over_tcp', 'modbus_rtu'"),
    ),
    (
        "unknown-device-kind",
        _set(*D0, "kind", value="bacnet"),
        "devices[0] (d1).kind: ",
        ("'bacnet'", "'modbus'"),
    ),
    # proof of service: who supplies a device, the answer targets, the daily reports
    (
        "supplier-with-a-newline",
        _set(*D0, "supplier", value="acme\nltd"),
        "devices[0] (d1).supplier: ",
        ("should match pattern",),
    ),
    (
        "ack-target-zero",
        _set("alarms", value={"ack_targets": {"critical": 0}}),
        "alarms.ack_targets.critical: ",
        ("greater than 0",),
    ),
    (
        "publish-at-not-a-time",
        _set("reports", value={"publish_at": "25:00"}),
        "reports.publish_at: ",
        ("valid time",),
    ),
]


@pytest.mark.parametrize(
    ("source", "head", "parts"),
    [pytest.param(src, head, parts, id=case) for case, src, head, parts in CASES],
)
def test_bad_config_is_refused_with_its_key_path(
    cfg_dir: Path, source: Mutation | str, head: str, parts: tuple[str, ...]
) -> None:
    if isinstance(source, str):
        doc: Doc | str = source
    else:
        doc = _base()
        source(doc)
    errors = _errors(_save(cfg_dir, doc))
    head = head.replace("{dir}", str(cfg_dir))
    parts = tuple(p.replace("{dir}", str(cfg_dir)) for p in parts)
    assert len(errors) == 1, errors
    assert errors[0].startswith(head), errors
    rest = errors[0].removeprefix(head)
    for part in parts:
        assert part in rest, errors
    assert SECRET not in errors[0]


def test_corpus_is_large_and_its_ids_unique() -> None:
    ids = [case for case, *_ in CASES]
    assert len(ids) >= 25
    assert len(set(ids)) == len(ids)


def test_good_base_config_loads(cfg_dir: Path) -> None:
    cfg = load_config(_save(cfg_dir, _base()))
    assert [d.id for d in cfg.devices] == ["d1", "d2"]
    assert [b.kind for b in cfg.buses] == ["modbus_tcp", "modbus_rtu"]
    assert cfg.store.quota == 4 * 1024**2
    assert cfg.store.reserve == 1024**2


def test_proof_of_service_keys_default_to_the_plan_and_take_free_supplier_text(
    cfg_dir: Path,
) -> None:
    cfg = load_config(_save(cfg_dir, _base()))
    assert [getattr(d, "supplier", "?") for d in cfg.devices] == [None, None]
    assert cfg.alarms.ack_targets.model_dump() == {"critical": 480, "warning": 480, "info": 480}
    assert (cfg.reports.publish_at, cfg.reports.retention_days) == (time(0, 0), 400)
    doc = _base()
    doc["devices"][0]["supplier"] = "华源环保 Ltd."
    doc["alarms"] = {"ack_targets": {"warning": 1800}}
    doc["reports"] = {"publish_at": "06:30", "retention_days": 730}
    cfg = load_config(_save(cfg_dir, doc))
    assert as_modbus(cfg.devices[0]).supplier == "华源环保 Ltd."
    assert cfg.alarms.ack_targets.model_dump() == {"critical": 480, "warning": 1800, "info": 480}
    assert (cfg.reports.publish_at, cfg.reports.retention_days) == (time(6, 30), 730)
    doc["reports"] = {"publish_at": None}
    assert load_config(_save(cfg_dir, doc)).reports.publish_at is None
    kinds = typing.get_args(typing.get_args(DeviceConfig)[0])
    assert len(kinds) == 6
    assert all("supplier" in kind.model_fields for kind in kinds)  # every kind has one


def test_three_independent_errors_are_reported_at_once(cfg_dir: Path) -> None:
    doc = _base()
    doc["devices"][0]["unit_id"] = 0
    doc["upstream"]["mqtt"]["port"] = 70000
    doc["store"]["size"] = "1GiB"
    errors = _errors(_save(cfg_dir, doc))
    assert len(errors) == 3, errors
    heads = sorted(line.split(": ", 1)[0] for line in errors)
    assert heads == ["devices[0] (d1).unit_id", "store.size", "upstream.mqtt.port"]


def test_three_cross_reference_errors_are_reported_at_once(cfg_dir: Path) -> None:
    doc = _base()
    doc["buses"].append({"kind": "modbus_tcp", "id": "rs", "host": "10.0.0.9"})
    doc["devices"][0]["points"][1]["name"] = "a"
    doc["devices"][1]["bus"] = "nowhere"
    errors = _errors(_save(cfg_dir, doc))
    assert errors == [
        "buses[2] (rs).id: duplicate bus id 'rs' (also buses[1])",
        "devices[0] (d1).points[1].name: duplicate point name 'a'",
        "devices[1] (d2).bus: unknown bus 'nowhere'",
    ]


def test_a_profile_error_comes_with_the_model_errors(cfg_dir: Path) -> None:
    doc = _base()
    doc["devices"][0]["profile"] = "no-such-profile"
    doc["devices"][1]["unit_id"] = 300
    errors = _errors(_save(cfg_dir, doc))
    assert len(errors) == 2, errors
    assert errors[0].startswith("devices[0] (d1).profile: unknown profile 'no-such-profile'")
    assert errors[1].startswith("devices[1] (d2).unit_id: ")


def test_profile_model_error_names_the_point_not_top_level(cfg_dir: Path) -> None:
    text = "name: mixed\npoints:\n  - name: x\n    table: coil\n    address: 0\n"
    _write(cfg_dir / "profiles" / "mixed.yaml", text, 0o644)
    doc = _base()
    doc["devices"][0]["profile"] = "mixed"
    del doc["devices"][0]["points"]
    errors = _errors(_save(cfg_dir, doc))
    assert errors == [
        f"{cfg_dir}/profiles/mixed.yaml: points[0]: type 'uint16' does not fit table 'coil':"
        " coil and discrete points are 'bool', holding and input points are numeric"
    ]


# -- good configs -------------------------------------------------------------------------------


def test_profile_merge_overrides_disables_and_adds(cfg_dir: Path) -> None:
    doc = _base()
    doc["devices"][1] = {
        "kind": "modbus",
        "id": "th",
        "bus": "rs",
        "unit_id": 1,
        "profile": "th-rs485",
        "points": [
            {"name": "humidity", "address": 10},  # moved on this model
            {"name": "temperature", "enabled": False},  # element not fitted
            # a new point may use the registers a disabled one frees
            {"name": "dew_point", "address": 1, "type": "int16", "scale": 0.1, "unit": "degC"},
        ],
    }
    dev = as_modbus(load_config(_save(cfg_dir, doc)).devices[1])
    assert [p.name for p in dev.points] == ["humidity", "temperature", "dew_point"]
    humidity, temperature, dew = dev.points
    assert humidity.address == 10
    # the rest of the profile's point is kept
    assert (humidity.table, humidity.type, humidity.scale) == ("holding", "uint16", 0.1)
    assert (humidity.unit, humidity.range) == ("%RH", (0.0, 100.0))
    assert temperature.enabled is False
    assert temperature.address == 1
    assert (dew.address, dew.type, dew.scale, dew.unit) == (1, "int16", 0.1, "degC")
    assert [p.name for p in dev.active_points] == ["humidity", "dew_point"]
    assert (dev.profile, dev.max_block, dev.max_gap) == ("th-rs485", 2, 0)


def test_relative_paths_resolve_against_the_config_folder(
    cfg_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    (cfg_dir / "secrets").mkdir()
    _write(cfg_dir / "secrets" / "pw", "pw\n", 0o600)
    site = "name: site-th\npoints:\n  - name: lux\n    table: input\n    address: 7\n"
    _write(cfg_dir / "site-profiles" / "site-th.yaml", site, 0o644)
    doc = _base()
    doc["upstream"]["mqtt"]["password_file"] = "secrets/pw"
    doc["upstream"]["mqtt"]["tls"] = {"ca_file": "./ca.pem"}
    doc["profile_dirs"] = ["site-profiles"]
    doc["devices"][1]["profile"] = "site-th"
    del doc["devices"][1]["points"]
    path = _save(cfg_dir, doc)
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))  # not the config's folder
    cfg = load_config(path)
    mqtt = cfg.upstream.mqtt
    assert cfg.store.path == cfg_dir / "data" / "store.db"
    assert mqtt.password_file == cfg_dir / "secrets" / "pw"
    assert mqtt.tls is not None
    assert mqtt.tls.ca_file == cfg_dir / "ca.pem"
    assert [(p.name, p.table, p.address) for p in as_modbus(cfg.devices[1]).points] == [
        ("lux", "input", 7)
    ]


def test_relative_path_missing_from_config_folder_is_refused(
    cfg_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a CA file present in the working directory but not beside the config does not count
    cwd = cfg_dir / "cwd"
    _write(cwd / "only-here.pem", "x\n", 0o644)
    monkeypatch.chdir(cwd)
    doc = _base()
    doc["upstream"]["mqtt"]["tls"] = {"ca_file": "only-here.pem"}
    errors = _errors(_save(cfg_dir, doc))
    # the message names the file looked for: beside the config, not in the working directory
    assert errors == [
        f"upstream.mqtt.tls.ca_file: Path does not point to a file: {cfg_dir / 'only-here.pem'}"
    ]


@pytest.mark.parametrize(
    ("tls", "port", "expected"),
    [
        pytest.param(False, None, 1883, id="plain-default"),
        pytest.param(True, None, 8883, id="tls-default"),
        pytest.param(True, 9883, 9883, id="tls-explicit"),
        pytest.param(False, 1884, 1884, id="plain-explicit"),
    ],
)
def test_effective_mqtt_port(cfg_dir: Path, tls: bool, port: int | None, expected: int) -> None:
    doc = _base()
    mqtt = doc["upstream"]["mqtt"]
    if tls:
        mqtt["tls"] = {"ca_file": "ca.pem", "cert_file": "client.pem", "key_file": "client.key"}
    if port is not None:
        mqtt["port"] = port
    cfg = load_config(_save(cfg_dir, doc))
    assert cfg.upstream.mqtt.port == port
    assert cfg.upstream.mqtt.effective_port == expected


# -- the cgw command ----------------------------------------------------------------------------


def test_check_config_prints_a_summary_and_returns_0(
    cfg_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _base()
    doc["upstream"]["mqtt"]["tls"] = {
        "ca_file": "ca.pem",
        "cert_file": "client.pem",
        "key_file": "client.key",
    }
    doc["devices"][1]["interval"] = 2.5
    path = _save(cfg_dir, doc)
    assert main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == f"{path}: OK"
    assert "  gateway   s1/g1" in lines
    assert f"  store     {cfg_dir}/data/store.db (quota 4.0MiB, reserve 1.0MiB)" in lines
    assert "  upstream  mqtt broker.example:8883 (TLS + client cert), topics cgw/s1/g1/..." in lines
    assert "  buses     2: tcp (modbus_tcp), rs (modbus_rtu)" in lines
    assert "  devices   2, points 3" in lines
    assert "    d1: modbus unit 1 on tcp, 2 points every 10 s" in lines
    assert "    d2: modbus unit 1 on rs, 1 points every 2.5 s" in lines


def test_check_config_prints_every_error_to_stderr_and_returns_2(
    cfg_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _base()
    doc["devices"][0]["unit_id"] = 248
    doc["upstream"]["mqtt"]["password"] = SECRET
    doc["store"]["reserve"] = "8MiB"
    path = _save(cfg_dir, doc)
    assert main(["check-config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == f"{path}: 3 error(s) in the configuration:"
    assert len(lines) == 4
    assert lines[1].startswith("  store: reserve (8388608 B) must be smaller than quota")
    assert "  upstream.mqtt.password: unknown key" in lines
    assert any(line.startswith("  devices[0] (d1).unit_id: ") for line in lines)
    assert SECRET not in err


def test_check_config_of_a_missing_file_returns_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "absent.yaml"
    assert main(["check-config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"  {path}: cannot read: " in err


def test_schema_is_valid_json_schema_with_devices(
    cfg_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    schema = json.loads(out)
    assert schema == Config.model_json_schema()
    assert "devices" in schema["properties"]
    assert schema["additionalProperties"] is False
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    good = _base()
    assert list(validator.iter_errors(good)) == []
    bad = copy.deepcopy(good)
    bad["devices"][0]["unit_id"] = 0
    bad["upstream"]["mqtt"]["password"] = SECRET
    found = sorted(
        (leaf.json_path, leaf.message)
        for err in validator.iter_errors(bad)
        for leaf in (err.context or [err])
    )
    # a device is one of several kinds: the validator also reports why the bad device is not
    # any of the other kinds; the modbus branch's own complaint must be among them
    assert ("$.devices[0].unit_id", "0 is less than the minimum of 1") in found
    assert (
        "$.upstream.mqtt",
        "Additional properties are not allowed ('password' was unexpected)",
    ) in found
    # (the mqtt_json branch has points too: it says why these are no JSON points)
    assert {path for path, _ in found if not path.startswith("$.devices[0].points[")} <= {
        "$.devices[0]",
        "$.devices[0].kind",
        "$.devices[0].unit_id",
        "$.upstream.mqtt",
    }


def test_a_systemd_credential_is_accepted_whatever_its_mode_bits(
    cfg_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # newer systemd exposes credentials 0440 with an ACL; the service manager keeps them private
    creds = cfg_dir / "credentials"
    _write(creds / "cgw_mqtt-password", "secret\n", 0o440)
    doc = _base()
    doc["upstream"]["mqtt"]["password_file"] = str(creds / "cgw_mqtt-password")
    assert _errors(_save(cfg_dir, doc)) == [
        f"upstream.mqtt.password_file: secret file {creds / 'cgw_mqtt-password'} is readable by"
        " group or others (mode 440); run: chmod 600 " + str(creds / "cgw_mqtt-password")
    ]
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = load_config(_save(cfg_dir, doc))
    assert cfg.upstream.mqtt.password_file == creds / "cgw_mqtt-password"
