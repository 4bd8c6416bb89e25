"""Alarm config errors name the key and the reason."""

from pathlib import Path
from typing import Any

import pytest

from gateway.config import validate
from gateway.core.errors import ConfigError


def base(alarms: dict[str, Any]) -> dict[str, Any]:
    return {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": "buf.db"},
        "upstream": {"mqtt": {"host": "127.0.0.1"}},
        "buses": [{"id": "b", "kind": "modbus_tcp", "host": "127.0.0.1"}],
        "devices": [
            {
                "kind": "modbus",
                "id": "pm-1",
                "bus": "b",
                "unit_id": 1,
                "points": [{"name": "pm25", "address": 0}],
            }
        ],
        "alarms": alarms,
    }


PM = {"kind": "threshold", "id": "pm", "point": "pm25", "limit": 75}


@pytest.mark.parametrize(
    ("alarms", "expected"),
    [
        (
            {"rules": [{**PM, "devices": ["ghost"]}]},
            "alarms.rules[0] (pm): unknown device 'ghost'",
        ),
        (
            {"rules": [{"kind": "contact", "id": "sos", "device": "ghost"}]},
            "alarms.rules[0] (sos): unknown device 'ghost'",
        ),
        (
            {"ladders": [{"id": "default", "tiers": [{"after": 0, "channels": ["sms"]}]}]},
            "alarms.ladders[0] (default).tiers[0].channels: unknown channel 'sms'",
        ),
        ({"rules": [{**PM, "ladder": "night"}]}, "unknown ladder 'night'"),
        ({"rules": [{**PM, "clear": 80}]}, "clear 80.0 must lie on the normal side of limit 75.0"),
        ({"timezone": "Mars/Olympus"}, "alarms.timezone: unknown time zone 'Mars/Olympus'"),
        ({"rules": [PM, PM]}, "duplicate rule id 'pm'"),
        (
            {
                "ladders": [
                    {
                        "id": "default",
                        "tiers": [
                            {"after": 60, "channels": ["log"]},
                            {"after": 0, "channels": ["log"]},
                        ],
                    }
                ]
            },
            "tiers must be in order of 'after'",
        ),
        (
            {"rules": [{**PM, "schedule": [{"start": "25:00", "end": "06:00", "limit": 45}]}]},
            "alarms.rules[0] (pm).schedule[0].start",
        ),
    ],
)
def test_bad_alarm_config(tmp_path: Path, alarms: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(base(alarms), tmp_path)
    assert any(expected in line for line in err.value.errors), err.value.errors


def test_good_alarm_config(tmp_path: Path) -> None:
    cfg = validate(base({"rules": [{**PM, "devices": ["pm-1"]}]}), tmp_path)
    assert cfg.alarms.rules[0].id == "pm"
    assert cfg.alarms.ladders[0].tiers[0].channels == ["log"]
