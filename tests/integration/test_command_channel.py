"""Signed platform commands through a real broker into a running gateway, and the answers."""

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiomqtt

from gateway.commands.signing import keygen, load_private_key, make_command, sign
from gateway.config import validate
from gateway.core.messages import ContactEvent
from gateway.ops.metrics import registry_for, render
from gateway.runtime.root import Runtime
from tests.support.mosquitto import Mosquitto
from tests.support.schemas import validate_message
from tests.support.subscriber import Recorder

PREFIX = "cgw/s1/gw1"


def config(tmp_path: Path, port: int, public_key: Path) -> dict[str, Any]:
    return {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(tmp_path / "buf.db")},
        "upstream": {"mqtt": {"host": "127.0.0.1", "port": port, "reconnect_max": 1}},
        "commands": {"public_keys": [str(public_key)], "require_synced_clock": False},
        "alarms": {
            "rules": [{"kind": "contact", "id": "sos", "device": "*", "input": "*"}],
            "ladders": [{"id": "default", "tiers": [{"after": 0, "channels": ["log"]}]}],
        },
    }


async def publish(port: int, topic: str, payload: bytes, times: int = 1) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="platform") as client:
        for _ in range(times):
            await client.publish(topic, payload, qos=1)


def results(msgs: Any, cid: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in msgs if m.topic == f"{PREFIX}/cmd-result/{cid}"]


async def test_platform_acknowledges_an_alarm_once_though_the_command_arrives_twice(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    files = keygen(tmp_path / "keys")
    key = load_private_key(files.private)
    runtime = Runtime(validate(config(tmp_path, mosquitto.port, files.public), tmp_path))
    stop = asyncio.Event()
    async with (
        Recorder(mosquitto.host, mosquitto.port, f"{PREFIX}/#") as rec,
        asyncio.TaskGroup() as tg,
    ):
        tg.create_task(runtime.run(stop))
        await runtime.ready.wait()
        assert runtime.alarms is not None
        await rec.wait_for(lambda m: any(x.topic == f"{PREFIX}/status" for x in m))
        runtime.alarms.contact(ContactEvent("hall", "sos", True, time.time()))
        raised = await rec.wait_for(lambda m: any("/alarm/" in x.topic for x in m))
        alarm_id = json.loads(next(x for x in raised if "/alarm/" in x.topic).payload)["alarm_id"]

        doc = make_command(
            "ack",
            {"alarm_id": alarm_id, "by": "duty-manager"},
            site_id="s1",
            gateway_id="gw1",
            now=time.time(),
            command_id="ack-1",
        )
        signed = json.dumps(sign(key, doc)).encode()
        await publish(mosquitto.port, f"{PREFIX}/cmd/ack", signed, times=2)
        forged = json.dumps({**json.loads(signed), "args": {"alarm_id": "x", "by": "me"}})
        await publish(mosquitto.port, f"{PREFIX}/cmd/ack", forged.encode())

        got = await rec.wait_for(lambda m: len(results(m, "ack-1")) == 2, timeout=15)
        acked = [
            json.loads(x.payload)
            for x in got
            if x.topic == f"{PREFIX}/alarm/{alarm_id}"
            and json.loads(x.payload)["state"] == "acknowledged"
        ]
        assert len(acked) == 1, "executed more than once"
        assert acked[0]["acked_by"] == "platform:duty-manager"
        first, second = results(got, "ack-1")
        assert first["status"] == second["status"] == "executed"
        audits = await rec.wait_for(
            lambda m: len([x for x in m if x.topic == f"{PREFIX}/audit"]) >= 3
        )
        outcomes = [json.loads(x.payload)["outcome"] for x in audits if x.topic.endswith("/audit")]
        assert outcomes == ["executed", "duplicate", "rejected"]
        metrics = render(registry_for(runtime.snapshot)).decode()
        assert "cgw_commands_executed_total 1.0" in metrics
        assert 'cgw_commands_rejected_total{reason="bad_signature"} 1.0' in metrics
        for msg in audits:  # everything the gateway published keeps the contract
            if "/cmd/" not in msg.topic:
                validate_message(PREFIX, msg.topic, msg.payload)
        stop.set()
