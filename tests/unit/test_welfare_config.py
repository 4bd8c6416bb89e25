"""The ``welfare`` config section: households by flat or pseudonym, never a raw resident id."""

import copy
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import validate
from gateway.config.alarms import AlarmsConfig
from gateway.config.welfare import WelfareConfig, check_references
from gateway.core.errors import ConfigError
from gateway.pipeline.stages import welfare_signs

PERSON = "p1:3fa2:" + "9c" * 16
RAW_ID = "R-7-0304-RAWID"


def site(tmp_path: Path, welfare: dict[str, Any]) -> dict[str, Any]:
    key = tmp_path / "privacy.key"
    key.write_text(secrets.token_hex(32) + "\n")
    key.chmod(0o600)
    broker = {"host": "127.0.0.1", "port": 1883}
    return {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(tmp_path / "buf.db")},
        "upstream": {"mqtt": broker},
        "local_broker": broker,
        "privacy": {"key_file": str(key)},
        "devices": [
            {
                "kind": "door_terminal",
                "id": "unit-7",
                "topic": "facegate/unit-7/event",
                "heartbeat_topic": "facegate/unit-7/heartbeat",
                "profile": "facegate-json",
                "doors": [{"id": "7-0304", "ref": 1}],
            },
            {
                "kind": "mqtt_button",
                "id": "btn-0304",
                "topic": "buttons/0304",
                "payload": {"state": "pressed", "active_values": [True]},
            },
        ],
        "alarms": {
            "ladders": [
                {"id": "default", "tiers": [{"after": 0, "channels": ["log"]}]},
                {"id": "welfare", "tiers": [{"after": 0, "channels": ["log"]}]},
            ]
        },
        "welfare": welfare,
    }


GOOD: dict[str, Any] = {
    "ladder": "welfare",
    "households": [
        {
            "id": "7-0304",
            "flat": "Building 7, 3rd floor, 04",
            "person": PERSON,
            "quiet": "24h",
            "windows": [{"start": "22:00", "end": "08:00", "quiet": "12h"}],
            "signs": [
                {"kind": "door", "door": "7-0304"},
                {"kind": "button", "device": "btn-0304", "inputs": ["fine"]},
            ],
        },
        {"id": "7-0501", "signs": [{"kind": "door", "door": "7-0304"}]},
    ],
}


def problems(tmp_path: Path, welfare: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate(site(tmp_path, welfare), tmp_path)
    return caught.value.errors


def test_a_good_section_and_its_defaults(tmp_path: Path) -> None:
    cfg = validate(site(tmp_path, GOOD), tmp_path)
    assert cfg.welfare is not None
    first, second = cfg.welfare.households
    assert (first.quiet, first.windows[0].quiet, second.quiet) == (86400, 43200, 86400)
    assert first.person == PERSON
    assert (second.person, second.ladder) == (None, None)
    assert cfg.welfare.severity == "warning"


@pytest.mark.parametrize("where", ["household", "sign"])
def test_a_raw_resident_id_is_refused_naming_the_key(tmp_path: Path, where: str) -> None:
    doc = copy.deepcopy(GOOD)
    if where == "household":
        doc["households"][0]["person"] = RAW_ID
        key = "welfare.households[0].person"
    else:
        doc["households"][1]["signs"][0]["person"] = RAW_ID
        key = "welfare.households[1].signs[0].person"
    (line,) = problems(tmp_path, doc)
    assert line.startswith(f"{key}: not a pseudonym (p1:<key id>:<32 hex digits>)")
    assert "raw resident id" in line
    assert RAW_ID not in line  # the refusal never repeats the id


def test_a_pseudonym_of_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    doc = copy.deepcopy(GOOD)
    doc["households"][0]["person"] = PERSON.upper()  # hex digits are lower case
    assert problems(tmp_path, doc)[0].startswith("welfare.households[0].person: not a pseudonym")


def test_references_are_checked(tmp_path: Path) -> None:
    doc = copy.deepcopy(GOOD)
    doc["ladder"] = "family"
    doc["households"][0]["signs"] = [
        {"kind": "door", "door": "9-0101"},
        {"kind": "point", "device": "water-0304", "point": "flow", "above": 0.0},
    ]
    doc["households"][1]["ladder"] = "nobody"
    assert sorted(problems(tmp_path, doc)) == [
        "welfare.households[0].signs[0].door: no door_terminal has a door '9-0101'",
        "welfare.households[0].signs[1].device: unknown device 'water-0304'",
        "welfare.households[1].ladder: unknown ladder 'nobody'",
        "welfare: unknown ladder 'family' (alarms.ladders)",
    ]


def test_duplicate_households_and_empty_signs_are_refused(tmp_path: Path) -> None:
    doc = copy.deepcopy(GOOD)
    doc["households"][1]["id"] = "7-0304"
    assert any("duplicate household id '7-0304'" in p for p in problems(tmp_path, doc))
    doc = copy.deepcopy(GOOD)
    doc["households"][1]["signs"] = []
    assert any(p.startswith("welfare.households[1].signs") for p in problems(tmp_path, doc))


def test_a_quiet_window_shorter_than_an_hour_is_refused(tmp_path: Path) -> None:
    doc = copy.deepcopy(GOOD)
    doc["households"][0]["quiet"] = "30m"
    (line,) = problems(tmp_path, doc)
    assert line.startswith("welfare.households[0].quiet:")


def test_the_documented_example_validates() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "welfare.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert block is not None
    doc = yaml.safe_load(block.group(1))
    alarms = AlarmsConfig.model_validate(doc["alarms"])
    welfare = WelfareConfig.model_validate(doc["welfare"])
    doors, devices = {"b7-unit3", "b7-0501-door"}, {"btn-b7-0304", "water-b7-0304"}
    ladders = {ld.id for ld in alarms.ladders}
    assert check_references(welfare, doors, devices, ladders, privacy=True) == []
    assert [h.quiet for h in welfare.households] == [86400, 129600]


def test_the_pipeline_knows_the_button_inputs_welfare_counts_as_signs(tmp_path: Path) -> None:
    cfg = validate(site(tmp_path, GOOD), tmp_path)
    assert welfare_signs(cfg) == {("btn-0304", "fine")}
    anything = {
        **GOOD,
        "households": [{"id": "h", "signs": [{"kind": "button", "device": "btn-0304"}]}],
    }
    assert welfare_signs(validate(site(tmp_path, anything), tmp_path)) == {("btn-0304", "")}
