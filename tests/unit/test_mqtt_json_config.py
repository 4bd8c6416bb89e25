"""mqtt_json entries at config load: JMESPath refused with its position, fleets, profile
merging, alarm rules held to the points' types, clashes with other kinds, broker logins; and
the pure mapping fed random bytes and random JSON."""

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.mqtt_json.mapping import Entry, Reject, Router, parse
from gateway.cli.broker_acl import broker_logins
from gateway.config.loader import validate
from gateway.config.models import Config
from gateway.config.mqtt_json import MqttJsonDeviceConfig
from gateway.core.errors import ConfigError

BASE: dict[str, Any] = {
    "gateway": {"site_id": "s1", "gateway_id": "gw1"},
    "store": {"path": "/nonexistent/b.db"},
    "upstream": {"mqtt": {"host": "127.0.0.1"}},
    "local_broker": {},
}
GAS = {
    "kind": "mqtt_json",
    "id": "gas-b3",
    "topic": "gas/+/data",
    "device_from_topic": 1,
    "devices": ["gd-0201", "gd-0202"],
    "profile": "gas-detector-json",
}


def load(*devices: dict[str, Any], **more: Any) -> Config:
    return validate(BASE | {"devices": list(devices)} | more, Path("/nonexistent"))


def problems(*devices: dict[str, Any], **more: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(*devices, **more)
    return info.value.errors


def entry(cfg: Config) -> MqttJsonDeviceConfig:
    dev = cfg.devices[0]
    assert isinstance(dev, MqttJsonDeviceConfig)
    return dev


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("data.[", "invalid JMESPath expression 'data.[' at position 6: it ends too soon"),
        ("data pm25", "invalid JMESPath expression 'data pm25' at position 5: unexpected 'pm25'"),
        ("data.`1", "invalid JMESPath expression 'data.`1' at position 5: Unclosed ` delimiter"),
        ("avg(data.pm25, b)", "JMESPath function avg() at position 0 takes 1 arguments, not 2"),
        ("data.median(x)", "unknown JMESPath function median() at position 5"),
    ],
)
def test_a_bad_expression_is_refused_at_load_with_its_position(path: str, reason: str) -> None:
    doc = {"kind": "mqtt_json", "id": "es-1", "topic": "env/es-1/up"}
    assert problems(doc | {"points": [{"name": "pm25", "path": path}]}) == [
        f"devices[0] (es-1).points[0].path: {reason}"
    ]


def test_a_profile_is_merged_in_and_its_points_overridden() -> None:
    cfg = load(
        GAS | {"interval": 10, "points": [{"name": "fault", "enabled": False},
                                           {"name": "lel", "range": [0, 50]},
                                           {"name": "temp", "path": "t", "optional": True}]}
    )  # fmt: skip
    dev = entry(cfg)
    assert [p.name for p in dev.active_points] == ["lel", "alarm", "temp"]
    assert dev.points[0].range == (0.0, 50.0)
    assert dev.points[0].unit == "%LEL"  # kept from the profile
    assert (dev.interval, dev.offline_after, dev.timeout) == (10, 3, 30)
    assert dev.payload.time is not None
    assert dev.payload.time.format == "epoch_s"
    assert dev.device_ids == ["gd-0201", "gd-0202"]


def test_fleets_must_list_their_devices_and_only_then() -> None:
    unlisted = {k: v for k, v in GAS.items() if k != "devices"}
    assert problems(unlisted) == [
        "devices[0] (gas-b3): devices: list the device ids the topic or payload may name"
        " (others are refused)"
    ]
    single = {"kind": "mqtt_json", "id": "gd-1", "topic": "gas/gd-1/data", "devices": ["x"]}
    assert problems(single | {"profile": "gas-detector-json"}) == [
        "devices[0] (gd-1): devices lists ids a message names: set device_from_topic or"
        " payload.device"
    ]
    wrong_level = GAS | {"device_from_topic": 0}
    assert problems(wrong_level) == [
        "devices[0] (gas-b3): device_from_topic 0: level 0 of topic must be '+'"
    ]
    unknown = GAS | {"profile": "no-such-json"}
    (line,) = problems(unknown)
    assert line.startswith("devices[0] (gas-b3).profile: unknown profile 'no-such-json'")


def test_alarm_rules_are_held_to_the_points_types() -> None:
    rules = [
        {"kind": "threshold", "id": "t1", "devices": ["gd-0201"], "point": "alarm", "limit": 1},
        {"kind": "threshold", "id": "t2", "devices": ["gd-0202"], "point": "lell", "limit": 25},
        {"kind": "contact", "id": "c1", "device": "gd-0201", "input": "lel"},
        {"kind": "contact", "id": "c2", "device": "gd-0201", "input": "alarm"},
        {"kind": "threshold", "id": "t3", "devices": ["gd-0201"], "point": "lel", "limit": 25},
        {"kind": "offline", "id": "o1", "devices": ["gd-0202", "gas-b3"]},
    ]
    assert problems(GAS, alarms={"rules": rules}) == [
        "alarms.rules[5] (o1): unknown device 'gas-b3'",  # a fleet's entry is no device
        "alarms.rules[0] (t1).point: device 'gd-0201' has no point 'alarm'"
        " (its points: fault, lel)",
        "alarms.rules[1] (t2).point: device 'gd-0202' has no point 'lell' (its points: fault, lel)"
        " (did you mean 'lel'?)",
        "alarms.rules[2] (c1).input: device 'gd-0201' has no input 'lel' (its inputs: alarm)",
    ]


def test_ids_and_topics_may_not_clash_with_other_devices() -> None:
    button = {"kind": "mqtt_button", "id": "gd-0202", "topic": "gas/x/data",
              "payload": {"state": "s", "active_values": [1]}}  # fmt: skip
    other = GAS | {"id": "gas-b4", "devices": ["gd-0201"], "topic": "gas/+/data2"}
    single = {"kind": "mqtt_json", "id": "gd-0201", "topic": "gas/gd-0201/x",
              "profile": "gas-detector-json"}  # fmt: skip
    assert problems(button, GAS, other, single) == [
        "devices[1] (gas-b3).devices: device 'gd-0202' is also devices[0]",
        "devices[1] (gas-b3).topic: 'gas/+/data' overlaps a topic of devices[0]",
        "devices[2] (gas-b4).devices: device 'gd-0201' is also devices[1]",
        "devices[3] (gd-0201).id: device 'gd-0201' is also devices[1]",
    ]
    no_broker = BASE | {"devices": [GAS]}
    del no_broker["local_broker"]
    with pytest.raises(ConfigError) as info:
        validate(no_broker, Path("/nonexistent"))
    assert info.value.errors == ["devices[0] (gas-b3): an mqtt_json needs a 'local_broker' section"]


def test_each_entry_is_one_broker_login_on_its_own_topics() -> None:
    cfg = load(GAS | {"status_topic": "gas/+/status"})
    gateway, login = broker_logins(cfg)
    assert (login.name, login.publish, login.read) == ("gas-b3", ("gas/+/data", "gas/+/status"), ())
    assert set(gateway.read) == {"gas/+/data", "gas/+/status"}


# -- the pure mapping never raises anything but Reject -------------------------------------------

ROUTER = Router(
    [
        Entry.resolve(entry(load(GAS | {"status_topic": "gas/+/status"}))),
        Entry.resolve(
            entry(
                load(
                    {
                        "kind": "mqtt_json",
                        "id": "dtu",
                        "topic": "dtu/+/report",
                        "devices": ["E-0301", "W-0301"],
                        "profile": "dtu-meter-json",
                    }
                )
            )
        ),
    ]
)
TOPICS = ["gas/gd-0201/data", "gas/gd-0201/status", "dtu/x/report", "gas/other/data", "a/b"]


def _nested(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    _nested,
    max_leaves=20,
)
keys = st.sampled_from(["lel", "alarm", "fault", "ts", "meters", "addr", "ept", "st", "time"])
shaped = st.dictionaries(keys, json_values | st.lists(st.dictionaries(keys, json_values)))


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(TOPICS), st.binary(max_size=300) | shaped.map(lambda d: json.dumps(d).encode())
)
def test_parse_raises_only_reject(topic: str, payload: bytes) -> None:
    try:
        parsed = parse(ROUTER, topic, payload, 1733551200.0)
    except Reject as rej:
        named = {rej.device}
    else:
        named = {r.sample.device for r in parsed.readings} | {x.device for x in parsed.rejects}
        named |= {parsed.status.device} if parsed.status is not None else set()
    assert named <= {"", "gd-0201", "E-0301", "W-0301"}  # never an id that is not configured
