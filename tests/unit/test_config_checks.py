"""A config that cannot work does not pass ``check-config``; every error comes at once, by id.

Each case here passed the loader before: a rule naming an input or point its device does not
have, a mistake hidden behind others, two listeners on one port, a missing serial adapter.
"""

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli.main import main
from gateway.config import load_config
from gateway.core.errors import ConfigError

Doc = dict[str, Any]


def _doc(folder: Path) -> Doc:
    """A good config: a Modbus sensor, an MQTT button, a GPIO panel and rules that fit them."""
    (folder / "pw").write_text("secret\n")
    os.chmod(folder / "pw", 0o600)
    return {
        "gateway": {"site_id": "s1", "gateway_id": "g1"},
        "store": {"path": "data/store.db"},
        "upstream": {"mqtt": {"host": "broker.example"}},
        "local_broker": {"host": "127.0.0.1", "username": "gw", "password_file": "pw"},
        "buses": [{"kind": "modbus_tcp", "id": "tcp", "host": "10.0.0.2"}],
        "devices": [
            {
                "kind": "modbus",
                "id": "pm-court",
                "bus": "tcp",
                "unit_id": 1,
                "points": [
                    {"name": "pm25", "address": 0},
                    {"name": "door_contact", "table": "discrete", "address": 0, "type": "bool"},
                ],
            },
            {
                "kind": "mqtt_button",
                "id": "btn-101",
                "topic": "acme/101/event",
                "payload": {"event_id": "id", "state": "state", "active_values": ["pressed"]},
            },
            {"kind": "gpio", "id": "panel", "inputs": [{"name": "call_101", "pin": 17}]},
        ],
        "alarms": {
            "rules": [
                {"kind": "threshold", "id": "pm", "devices": ["pm-court"], "point": "pm25",
                 "limit": 75},
                {"kind": "contact", "id": "sos", "device": "btn-101", "input": "button"},
                {"kind": "contact", "id": "call", "device": "panel", "input": "call_101"},
                {"kind": "contact", "id": "bit", "device": "pm-court", "input": "door_contact"},
            ]
        },
    }  # fmt: skip


def _errors(folder: Path, doc: Doc) -> list[str]:
    path = folder / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.errors


def test_the_base_config_passes(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(_doc(tmp_path)))
    assert len(load_config(path).alarms.rules) == 4


def test_a_contact_rule_on_an_input_the_button_does_not_have_is_refused(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    doc["alarms"]["rules"][1]["input"] = "pressed"
    assert _errors(tmp_path, doc) == [
        "alarms.rules[1] (sos).input: device 'btn-101' has no input 'pressed' (its inputs: button)"
    ]


def test_a_threshold_rule_on_a_misspelt_point_gets_a_hint(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    doc["alarms"]["rules"][0]["point"] = "pm2.5"
    assert _errors(tmp_path, doc) == [
        "alarms.rules[0] (pm).point: device 'pm-court' has no point 'pm2.5'"
        " (its points: pm25) (did you mean 'pm25'?)"
    ]


def test_gpio_and_modbus_bit_inputs_are_held_to_their_names(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    doc["alarms"]["rules"][2]["input"] = "call_110"
    doc["alarms"]["rules"][3]["input"] = "pm25"  # a numeric point is no contact
    assert _errors(tmp_path, doc) == [
        "alarms.rules[2] (call).input: device 'panel' has no input 'call_110'"
        " (its inputs: call_101) (did you mean 'call_101'?)",
        "alarms.rules[3] (bit).input: device 'pm-court' has no input 'pm25'"
        " (its inputs: door_contact)",
    ]


def test_a_wildcard_rule_must_match_some_device(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    doc["alarms"]["rules"].append(
        {"kind": "threshold", "id": "noise", "point": "noise_db", "limit": 55}
    )
    doc["alarms"]["rules"].append({"kind": "contact", "id": "any", "device": "*", "input": "x"})
    errors = _errors(tmp_path, doc)
    assert errors == [
        "alarms.rules[4] (noise).point: no device has a point 'noise_db' (points: pm25)",
        "alarms.rules[5] (any).input: no device has an input 'x'"
        " (inputs: button, call_101, door_contact)",
    ]


def test_door_inputs_are_forced_and_held_open(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    (tmp_path / "privacy.key").write_text(secrets.token_hex(32))
    (tmp_path / "privacy.key").chmod(0o600)
    doc["privacy"] = {"key_file": "privacy.key"}
    doc["devices"].append(
        {
            "kind": "door_terminal",
            "id": "gate-1",
            "topic": "facegate/gate-1/event",
            "heartbeat_topic": "facegate/gate-1/heartbeat",
            "profile": "facegate-json",
            "doors": [{"id": "east-door"}],
        }
    )
    doc["alarms"]["rules"].append(
        {"kind": "contact", "id": "forced", "device": "east-door", "input": "forcd"}
    )
    errors = _errors(tmp_path, doc)
    assert errors == [
        "alarms.rules[4] (forced).input: device 'east-door' has no input 'forcd'"
        " (its inputs: forced, held_open) (did you mean 'forced'?)"
    ]


def test_six_mistakes_are_all_reported_the_reference_one_too(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    doc["devices"][0]["unit_id"] = 300  # 1: a model error in a device
    doc["devices"][2]["inputs"][0]["pin"] = 99  # 2: and in another
    doc["store"]["bogus"] = 1  # 3: an unknown key (not in a list)
    doc["alarms"]["rules"][1]["device"] = "btn-110"  # 4: an unknown device
    doc["alarms"]["rules"][0]["limit"] = "high"  # 5: a model error in a rule
    doc["buses"].append({"kind": "modbus_tcp", "id": "tcp", "host": "10.0.0.3"})  # 6: duplicate
    errors = _errors(tmp_path, doc)
    assert len(errors) == 6, errors
    assert any(e.startswith("devices[0] (pm-court).unit_id: ") for e in errors)
    assert any(e.startswith("devices[2] (panel).inputs[0].pin: ") for e in errors)
    assert "store.bogus: unknown key" in errors
    assert any(e.startswith("alarms.rules[0] (pm).limit: ") for e in errors)
    assert "alarms.rules[1] (sos): unknown device 'btn-110'" in errors
    assert "buses[1] (tcp).id: duplicate bus id 'tcp' (also buses[0])" in errors


def test_errors_after_a_dropped_item_keep_their_own_positions(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    doc["devices"][0]["unit_id"] = 0  # devices[0] fails validation ...
    doc["alarms"]["rules"][2]["input"] = "call_1O1"  # ... rules[2] still names its position
    assert sorted(_errors(tmp_path, doc)) == [
        "alarms.rules[2] (call).input: device 'panel' has no input 'call_1O1'"
        " (its inputs: call_101) (did you mean 'call_101'?)",
        "devices[0] (pm-court).unit_id: Input should be greater than or equal to 1",
    ]


def test_a_rule_naming_a_device_that_failed_is_no_second_error(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    doc["devices"][1]["topic"] = "acme/#"
    errors = _errors(tmp_path, doc)
    assert len(errors) == 1, errors
    assert errors[0].startswith("devices[1] (btn-101).topic: ")


@pytest.mark.parametrize(
    ("api_host", "monitor_host", "clash"),
    [("127.0.0.1", "127.0.0.1", True), ("localhost", "127.0.0.1", True),
     ("127.0.0.1", "127.0.0.2", False)],
)  # fmt: skip
def test_two_listeners_on_one_port_are_refused(
    tmp_path: Path, api_host: str, monitor_host: str, clash: bool
) -> None:
    doc = _doc(tmp_path)
    (tmp_path / "token").write_text("0123456789abcdef0123\n")
    os.chmod(tmp_path / "token", 0o600)
    doc["api"] = {"host": api_host, "port": 9181, "token_file": "token"}
    doc["monitor"] = {"host": monitor_host, "port": 9181}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc))
    if not clash:
        assert load_config(path).monitor is not None
        return
    assert _errors(tmp_path, doc) == [
        f"monitor.port: {monitor_host}:9181 is already taken by api ({api_host}:9181)"
    ]


def test_a_missing_serial_adapter_is_a_warning_of_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _doc(tmp_path)
    absent = tmp_path / "ttyUSB9"
    doc["buses"].append({"kind": "modbus_rtu", "id": "rs485-1", "port": str(absent)})
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"warning: buses[1] (rs485-1).port: {absent} does not exist on this machine" in out
    absent.touch()
    assert main(["check-config", str(path)]) == 0
    assert "warning" not in capsys.readouterr().out


def test_a_wildcard_button_without_its_device_list_is_a_warning_of_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _doc(tmp_path)
    button = {"kind": "mqtt_button", "id": "flats", "topic": "sos/+/event",
              "device_from_topic": 1, "profile": "sos-state-json"}  # fmt: skip
    doc["devices"].append(button)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "devices: empty, so any id in the topic is a device" in out
    button["devices"] = ["flat-101"]
    path.write_text(yaml.safe_dump(doc))
    assert main(["check-config", str(path)]) == 0
    assert "warning" not in capsys.readouterr().out


def test_a_closed_pipe_ends_quietly() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "gateway", "schema"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.read(10)
        proc.stdout.close()  # like `| head -c 10`
        err = proc.stderr.read()
        code = proc.wait(timeout=30)
    assert b"Traceback" not in err, err
    assert code == 1
