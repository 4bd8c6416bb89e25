"""A gas detector on MQTT through the whole daemon: its readings upstream, its alarm flag and
its concentration raising alarms, its will turning it offline, a stranger refused; and the
commands docs/devices.md shows (``cgw check-config``, ``cgw devices``) run against it."""

import json
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.support.daemon import REPO, Daemon, run_cgw, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port
from tests.support.schemas import validate_message
from tests.support.subscriber import Received, Recorder

pytestmark = pytest.mark.slow
PREFIX = "cgw/s1/gw1"
DOC = REPO / "docs" / "devices.md"
TOKEN = "0123456789abcdef" * 2


def documented() -> list[list[str]]:
    """The ``cgw`` commands of the page's first shell block, without their comments."""
    block = re.search(r"```sh\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert block is not None
    lines = [shlex.split(line, comments=True) for line in block.group(1).splitlines()]
    return [argv for argv in lines if argv]


async def cgw(config: Path, argv: list[str]) -> tuple[int, str, str]:
    """A documented command with our config in place of the documented one."""
    args = [config.as_posix() if a.endswith("gateway.yaml") else a for a in argv[1:]]
    if args[0] != "check-config":
        args += ["-c", str(config)]
    return await run_cgw(*args)


def config(tmp_path: Path, port: int) -> dict[str, Any]:
    token = tmp_path / "api.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    broker = {"host": "127.0.0.1", "port": port, "reconnect_max": 1}
    return {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(tmp_path / "buf.db"), "commit_interval": 0.2},
        "upstream": {"mqtt": broker},
        "local_broker": broker,
        "api": {"port": free_port(), "token_file": str(token)},
        "devices": [
            {
                "kind": "mqtt_json",
                "id": "gas-b3",
                "topic": "gas/+/data",
                "status_topic": "gas/+/status",
                "device_from_topic": 1,
                "devices": ["gd-0201", "gd-0202"],
                "profile": "gas-detector-json",
            }
        ],
        "alarms": {
            "rules": [
                {
                    "kind": "contact",
                    "id": "gas-leak",
                    "device": "gd-0201",
                    "input": "alarm",
                    "type": "other",
                    "severity": "critical",
                },
                {
                    "kind": "threshold",
                    "id": "gas-lel",
                    "devices": ["gd-0201", "gd-0202"],
                    "point": "lel",
                    "limit": 20,
                    "clear": 10,
                    "severity": "critical",
                },
            ],
            "ladders": [{"id": "default", "tiers": [{"after": 0, "channels": ["log"]}]}],
        },
    }


def upstream(msgs: Sequence[Received], suffix: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in msgs if m.topic.startswith(f"{PREFIX}/{suffix}")]


def raised(msgs: Sequence[Received]) -> dict[str, dict[str, Any]]:
    return {a["rule"]: a for a in upstream(msgs, "alarm/") if a["state"] == "raised"}


async def test_a_gas_detector_alarms_through_the_daemon(
    tmp_path: Path, mosquitto: Mosquitto, daemon: Daemon
) -> None:
    path = write_config(daemon.config, config(tmp_path, mosquitto.port))
    commands = documented()
    assert [c[:2] for c in commands] == [["cgw", "check-config"], ["cgw", "devices"]]
    rc, out, err = await cgw(path, commands[0])
    assert (rc, err) == (0, ""), out
    async with (
        Recorder(mosquitto.host, mosquitto.port, f"{PREFIX}/#") as rec,
        aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="detector") as gas,
    ):
        daemon.start()
        await daemon.wait_log("subscribed to 1 mqtt_json entries")
        rc, out, _ = await cgw(path, commands[1])
        assert rc == 0
        assert "gd-0202  mqtt_json, profile gas-detector-json: not heard from yet" in out

        reading = {"sn": "GD-0201", "lel": 31.5, "alarm": 1, "fault": 0, "ts": 1733551200}
        await gas.publish("gas/gd-9999/data", json.dumps(reading), qos=1)  # not listed
        await gas.publish("gas/gd-0201/data", json.dumps(reading), qos=1)
        got = await rec.wait_for(lambda m: {"gas-leak", "gas-lel"} <= set(raised(m)), timeout=15)
        alarms = raised(got)
        assert alarms["gas-leak"]["device"] == "gd-0201"
        assert (alarms["gas-leak"]["latched"], alarms["gas-leak"]["severity"]) == (True, "critical")
        assert alarms["gas-leak"]["message"] == "other input alarm pressed"
        assert alarms["gas-lel"]["message"] == "lel 31.5 > 20"
        got = await rec.wait_for(lambda m: bool(upstream(m, "telemetry/gd-0201")))
        (telemetry,) = upstream(got, "telemetry/gd-0201")
        points = {p["name"]: (p["value"], p["unit"], p["quality"]) for p in telemetry["points"]}
        assert points == {"lel": (31.5, "%LEL", "good"), "alarm": (True, "", "good"),
                          "fault": (0, "", "good")}  # fmt: skip
        assert upstream(got, "device/gd-0201/status")[0]["state"] == "online"

        rc, out, _ = await cgw(path, commands[1])
        assert rc == 0
        assert re.search(r"^gd-0201  mqtt_json, profile gas-detector-json: online since", out, re.M)
        assert re.search(r"^    lel +31\.5 +%LEL +good$", out, re.M)
        assert re.search(r"^    alarm +True +good$", out, re.M)

        await gas.publish("gas/gd-0201/status", b"offline", qos=1, retain=True)  # its will
        got = await rec.wait_for(lambda m: len(upstream(m, "device/gd-0201/status")) >= 2)
        offline = upstream(got, "device/gd-0201/status")[-1]
        assert (offline["state"], offline["reason"]) == ("offline", "will: offline")
        got = await rec.wait_for(lambda m: "input_unavailable" in raised(m))
        rc, _ = daemon.terminate()
        assert rc == 0
        everything = list(rec.messages)

    for msg in everything:  # the contract holds for all of it
        validate_message(PREFIX, msg.topic, msg.payload)
    assert not [m.topic for m in everything if "gd-9999" in m.topic]
    refused = [e for e in daemon.logs() if "rejected (unknown_device)" in e["msg"]]
    assert len(refused) == 1
