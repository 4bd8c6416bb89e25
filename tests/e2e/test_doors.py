"""Door terminals through the whole daemon: privacy, forced-door alarms and fire linkage."""

import json
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.support.daemon import Daemon, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.schemas import validate_message
from tests.support.subscriber import Received, Recorder

pytestmark = pytest.mark.slow
PREFIX = "cgw/s1/gw1"
RAW_ID = "R-7-0304-RAWID"  # a resident id as the terminal knows it


def config(tmp_path: Path, port: int) -> dict[str, Any]:
    key = tmp_path / "privacy.key"
    key.write_text(secrets.token_hex(32) + "\n")
    key.chmod(0o600)
    broker = {"host": "127.0.0.1", "port": port, "reconnect_max": 1}
    return {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(tmp_path / "buf.db"), "commit_interval": 0.2},
        "upstream": {"mqtt": broker},
        "local_broker": broker,
        "privacy": {"key_file": str(key)},
        "devices": [
            {
                "kind": "door_terminal",
                "id": "facegate",
                "topic": "facegate/+/event",
                "heartbeat_topic": "facegate/+/heartbeat",
                "command_topic": "facegate/{terminal}/cmd",
                "device_from_topic": 1,
                "profile": "facegate-json",
                "doors": [
                    {"id": "A1-main", "terminal": "FG-A1", "ref": 1},
                    {"id": "A1-stair", "terminal": "FG-A1", "ref": 2, "escape_route": True},
                ],
            },
            {
                "kind": "mqtt_button",
                "id": "fire-panel",
                "topic": "panel/fire",
                "payload": {
                    "event_id": "id",
                    "state": "alarm",
                    "active_values": [True],
                    "inactive_values": [False],
                },
            },
        ],
        "alarms": {
            "rules": [
                {
                    "kind": "contact",
                    "id": "forced",
                    "device": "*",
                    "input": "forced",
                    "type": "door",
                    "severity": "critical",
                },
                {
                    "kind": "contact",
                    "id": "fire",
                    "device": "fire-panel",
                    "type": "fire",
                    "severity": "critical",
                },
            ],
            "ladders": [{"id": "default", "tiers": [{"after": 0, "channels": ["log"]}]}],
        },
    }


def event(kind: str, eid: str, **kw: Any) -> bytes:
    doc = {"eventId": eid, "deviceSn": "FG-A1", "doorNo": 1, "eventType": kind} | kw
    return json.dumps(doc).encode()


def files_under(folder: Path) -> list[tuple[str, bytes]]:
    """Every file below ``folder`` (store, WAL, dedup files, logs) with its bytes."""
    return [(p.name, p.read_bytes()) for p in folder.rglob("*") if p.is_file()]


def upstream(msgs: Sequence[Received], suffix: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in msgs if m.topic.startswith(f"{PREFIX}/{suffix}")]


async def test_door_events_are_pseudonymised_alarmed_and_escape_routes_open_on_fire(
    tmp_path: Path, mosquitto: Mosquitto, daemon: Daemon
) -> None:
    write_config(daemon.config, config(tmp_path, mosquitto.port))
    async with (
        Recorder(mosquitto.host, mosquitto.port, f"{PREFIX}/#") as rec,
        Recorder(mosquitto.host, mosquitto.port, "facegate/FG-A1/cmd") as panel,
        aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="terminal") as term,
    ):
        daemon.start()
        await rec.wait_for(lambda m: any(x.topic == f"{PREFIX}/status" for x in m), timeout=15)
        await daemon.wait_log("door terminal configs")  # what is sent before is not queued
        await daemon.wait_log("button topics")

        face = event(
            "FACE_PASS",
            "e-1",
            personId=RAW_ID,
            verifyMode="face",
            faceImage="/9j/4AAQSkZJRgABAQAAAQABAAD",
            captureUrl="snap/e-1.jpg",
        )
        await term.publish("facegate/FG-A1/event", face, qos=1)
        await term.publish("facegate/FG-A1/event", event("DOOR_FORCED", "e-2"), qos=1)
        got = await rec.wait_for(lambda m: len(upstream(m, "event/")) >= 3, timeout=15)
        online, granted, forced = upstream(got, "event/FG-A1")[:3]
        assert online["kind"] == "terminal_online"
        assert granted["kind"] == "granted"
        assert granted["person"].startswith("p1:")
        assert (granted["data_class"], granted["retention_s"]) == ("personal", 30 * 86400)
        assert granted["snapshot_ref"] == "snap/e-1.jpg"
        assert forced["kind"] == "forced"
        alarms = await rec.wait_for(lambda m: bool(upstream(m, "alarm/")), timeout=15)
        assert upstream(alarms, "alarm/")[0]["device"] == "A1-main"

        # the fire panel trips: the escape route is released and the release is audited
        await term.publish("panel/fire", json.dumps({"id": "f-1", "alarm": True}), qos=1)
        unlocks = await panel.wait_for(lambda m: len(m) >= 1, timeout=15)
        command = json.loads(unlocks[0].payload)
        assert (command["cmd"], command["deviceSn"]) == ("openDoor", "FG-A1")
        assert str(command["doorNo"]) == "2"  # A1-stair, the escape route; not A1-main
        assert "fire linkage" in command["note"]
        audits = await rec.wait_for(lambda m: bool(upstream(m, "audit")), timeout=15)
        assert upstream(audits, "audit")[0]["outcome"] == "released"

        rc, _ = daemon.terminate()
        assert rc == 0
        everything = list(rec.messages)

    for msg in everything:  # the contract holds for all of it
        validate_message(PREFIX, msg.topic, msg.payload)
    # the raw resident id is nowhere: not upstream, not in the store, the logs or any file
    assert not [m.topic for m in everything if RAW_ID.encode() in m.payload]
    for name, data in files_under(tmp_path):
        assert RAW_ID.encode() not in data, f"raw id in {name}"
        assert b"AAQSkZJRgABAQ" not in data, f"face image in {name}"
