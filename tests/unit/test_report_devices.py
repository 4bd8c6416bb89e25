"""The availability report lists each device of a fleet, not the config entry that lists them."""

from gateway.config.models import Config
from gateway.runtime.reporting import device_info


def test_fleet_entries_report_each_device_with_the_entrys_kind_and_supplier() -> None:
    cfg = Config.model_validate(
        {
            "gateway": {"site_id": "s1", "gateway_id": "gw1"},
            "store": {"path": "/tmp/unused.db"},
            "upstream": {"mqtt": {"host": "127.0.0.1"}},
            "devices": [
                {"kind": "mqtt_json", "id": "gas-b3", "topic": "gas/+/data",
                 "device_from_topic": 1, "devices": ["gd-1", "gd-2"], "interval": 30,
                 "supplier": "Acme", "points": [{"name": "lel", "path": "lel"}]},
                {"kind": "door_terminal", "id": "gates", "topic": "fg/+/event",
                 "heartbeat_topic": "fg/+/hb", "device_from_topic": 1, "profile": "facegate-json",
                 "doors": [{"id": "d1", "terminal": "FG-1"}, {"id": "d2", "terminal": "FG-2"}]},
                {"kind": "gpio", "id": "lobby", "inputs": [{"name": "button", "pin": 17}]},
            ],
        }
    )  # fmt: skip
    infos = [(i.id, i.kind, i.supplier, i.interval) for d in cfg.devices for i in device_info(d)]
    assert infos == [
        ("gd-1", "mqtt_json", "Acme", 30.0),
        ("gd-2", "mqtt_json", "Acme", 30.0),
        ("FG-1", "door_terminal", None, None),
        ("FG-2", "door_terminal", None, None),
        ("lobby", "gpio", None, None),
    ]
