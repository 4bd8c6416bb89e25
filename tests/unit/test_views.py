"""The runtime's views of input devices: which configured devices are inputs, and their state."""

from pathlib import Path
from typing import Any

from gateway.config import validate
from gateway.core.devices import DeviceStates
from gateway.core.snapshots import InputState
from gateway.runtime import views
from tests.support.daemon import gateway_config


class Group:
    """A running driver group as a view reads it."""

    def __init__(self, probes: dict[str, Any]) -> None:
        self.probes = probes
        self.rejects: dict[str, Any] = {}


def test_inputs_are_gpio_and_bit_point_devices_and_the_broker_kinds_each_with_its_state(
    tmp_path: Path,
) -> None:
    (tmp_path / "pw").write_text("secret\n")
    (tmp_path / "pw").chmod(0o600)
    raw = gateway_config(tmp_path / "b.db", 1883, 5020, [1, 2, 3])
    raw["devices"][1]["points"].append({"name": "fire", "address": 8, "table": "discrete",
                                        "type": "bool"})  # fmt: skip
    raw["devices"][2]["points"].append({"name": "door", "address": 9, "table": "coil",
                                        "type": "bool"})  # fmt: skip
    raw["local_broker"] = {
        "host": "127.0.0.1",
        "username": "gw",
        "password_file": str(tmp_path / "pw"),
    }
    raw["devices"].append(
        {
            "kind": "mqtt_button",
            "id": "btn",
            "topic": "acme/+/event",
            "device_from_topic": 1,
            "payload": {"state": "state", "active_values": [1], "inactive_values": [0]},
        }
    )
    raw["alarms"] = {"rules": [
        {"kind": "contact", "id": "fire", "device": "dev-2", "type": "fire"},
        {"kind": "contact", "id": "any", "device": "*"},
    ]}  # fmt: skip
    cfg = validate(raw, tmp_path)
    states = DeviceStates()
    for dev in cfg.devices:
        states.register(dev.id, dev.kind)
    states.availability("dev-2", False, 5.0, "timeout")
    states.count("btn-7", "unmatched", 2)

    got = views.inputs(cfg, states.snapshot(), [Group({"local_broker:buttons": lambda: False})])
    assert got.devices == (
        InputState("dev-2", "modbus", False, "timeout", True),  # a rule names it by id
        InputState("dev-3", "modbus", None, "", False),  # '*' names no device in particular
        InputState("btn", "mqtt_button", False, "local_broker:buttons not subscribed", False),
    )  # dev-1 has no contact points: not an input
    assert got.unmatched == {"btn-7": 2}
    assert views.inputs(cfg, states.snapshot(), []).devices[2].running is None  # group stopped
