"""Signed platform commands through a real broker into a running gateway, and the answers:
JWS commands, and the legacy JSON envelope still accepted during the transition."""

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.commands.legacy import sign_legacy
from gateway.commands.signing import (
    b64url,
    keygen,
    load_private_key,
    make_command,
    sign,
)
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


@contextlib.asynccontextmanager
async def gateway(
    tmp_path: Path, mosquitto: Mosquitto
) -> AsyncIterator[tuple[Runtime, Recorder, Ed25519PrivateKey]]:
    """A running gateway with commands on, a recorder of what it publishes, the platform key."""
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
        await rec.wait_for(lambda m: any(x.topic == f"{PREFIX}/status" for x in m))
        try:
            yield runtime, rec, key
        finally:
            stop.set()


async def test_platform_acknowledges_an_alarm_once_though_the_command_arrives_twice(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with gateway(tmp_path, mosquitto) as (runtime, rec, key):
        assert runtime.alarms is not None
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
        signed = sign(key, doc).encode()
        await publish(mosquitto.port, f"{PREFIX}/cmd/ack", signed, times=2)
        head, _, sig = signed.split(b".")
        other = json.dumps({**doc, "args": {"alarm_id": "x", "by": "me"}}).encode()
        forged = b".".join((head, b64url(other).encode(), sig))
        await publish(mosquitto.port, f"{PREFIX}/cmd/ack", forged)

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
        trail = [json.loads(x.payload) for x in audits if x.topic.endswith("/audit")]
        assert [(a["outcome"], a["form"]) for a in trail] == [
            ("executed", "jws"),
            ("duplicate", "jws"),
            ("rejected", "jws"),
        ]
        metrics = render(registry_for(runtime.snapshot)).decode()
        assert "cgw_commands_executed_total 1.0" in metrics
        assert 'cgw_commands_rejected_total{reason="bad_signature"} 1.0' in metrics
        assert 'cgw_commands_received_total{form="jws"} 3.0' in metrics
        for msg in audits:  # everything the gateway published keeps the contract
            if "/cmd/" not in msg.topic:
                validate_message(PREFIX, msg.topic, msg.payload)


async def test_a_platform_still_on_the_legacy_envelope_is_served_during_the_transition(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with gateway(tmp_path, mosquitto) as (runtime, rec, key):
        old = make_command("status", {}, site_id="s1", gateway_id="gw1", now=time.time(),
                           command_id="old-1")  # fmt: skip
        new = make_command("status", {}, site_id="s1", gateway_id="gw1", now=time.time(),
                           command_id="new-1")  # fmt: skip
        await publish(
            mosquitto.port, f"{PREFIX}/cmd/status", json.dumps(sign_legacy(key, old)).encode()
        )
        await publish(mosquitto.port, f"{PREFIX}/cmd/status", sign(key, new).encode())
        got = await rec.wait_for(
            lambda m: len([x for x in m if x.topic == f"{PREFIX}/audit"]) >= 2, timeout=15
        )
        assert (
            results(got, "old-1")[0]["status"] == results(got, "new-1")[0]["status"] == "executed"
        )
        trail = [json.loads(x.payload) for x in got if x.topic == f"{PREFIX}/audit"]
        assert [(a["command_id"], a["form"]) for a in trail] == [
            ("old-1", "legacy"),
            ("new-1", "jws"),
        ]
        metrics = render(registry_for(runtime.snapshot)).decode()
        assert 'cgw_commands_received_total{form="legacy"} 1.0' in metrics
        assert 'cgw_commands_received_total{form="jws"} 1.0' in metrics
        for msg in got:
            if "/cmd/" not in msg.topic:
                validate_message(PREFIX, msg.topic, msg.payload)
