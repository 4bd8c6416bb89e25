"""Fault-matrix finding 7: a junk flood on the local broker, with real presses in it.

The real daemon (an ``mqtt_button`` entry listing ``b1``, ``b2``, ``g1``, the door test's
terminal entry for ``FG-A1``) on a real mosquitto that is both the local and the upstream
broker. For ``SECONDS`` s, ``RATE`` junk messages a second, QoS 0: presses from button ids no
entry lists, events from unknown terminals, malformed JSON and 5 kB payloads on ``b1``'s
topic, ``g1`` repeating one "released" event (one event id), and non-JSON heartbeats from
``FG-A1``. In the middle, ``b1``, ``b2`` and ``g1`` are each pressed once (QoS 1).

What is counted, exactly: every press reaches upstream as one raised alarm (after dropping
redeliveries by the dedup key), within ``LATENCY`` s (generous: CI machines are shared);
``b1`` and ``g1`` are beyond their budget by then, and their presses get in as changes of
state. Both entries list their devices, so the gateway subscribes their own topics: junk from
invented ids stays at the broker and none is counted as ``unknown_device``. Every other junk
message is counted as rejected by some reason but one: ``g1``'s first "released", a valid event
that goes on (``shed`` among the reasons, should the gateway fall behind). Reached equals sent:
the test broker queues a million messages per client (``max_queued_messages``), and its
``$SYS`` counter of dropped messages stays 0 (the test reads it). Those beyond the budgets are
``rate_limited`` or ``shed`` (at most ``burst + rate x elapsed`` of each flooded device's
messages went on), and no invented id has a device state.
"""

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest

from tests.e2e.test_doors import config as door_gateway
from tests.e2e.test_operate import wait_metrics
from tests.support.daemon import Daemon, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_ports
from tests.support.subscriber import Received, Recorder

pytestmark = pytest.mark.slow
PREFIX = "cgw/s1/gw1"
RATE, SECONDS = 5000, 3.0
LATENCY = 10.0  # s from a press to its alarm upstream, at most
TICK = 0.01  # s between two bursts of junk
TOKEN = "f100d7e5" * 4
BUDGET = {"rate": 20.0, "burst": 40}  # the buttons' default, written out
DROPPED = "$SYS/broker/publish/messages/dropped"
# (kind, share of 100): see junk()
MIX = (("unknown", 40), ("malformed", 15), ("oversize", 5), ("garbage", 20), ("door", 10),
       ("heartbeat", 10))  # fmt: skip


def junk(kind: str, n: int) -> tuple[str, bytes]:
    """The ``n``-th junk message of ``kind``."""
    if kind == "unknown":
        return f"flood/u{n}/event", b'{"id": "j%d", "evt": "sos", "state": "pressed"}' % n
    if kind == "malformed":
        return "flood/b1/event", b'{"id": "j%d", ' % n
    if kind == "oversize":
        return "flood/b1/event", b'{"pad": "' + b"x" * 5000 + b'"}'
    if kind == "garbage":
        return "flood/g1/event", b'{"id": "g-1", "evt": "sos", "state": "released"}'
    if kind == "door":
        return f"facegate/T{n}/event", b'{"eventId": "j%d", "eventType": "DOOR_FORCED"}' % n
    return "facegate/FG-A1/heartbeat", b"<html>"  # heartbeat: no JSON


def schedule(total: int) -> Iterator[str]:
    """``total`` kinds in the shares of ``MIX``, interleaved."""
    cycle = [kind for kind, share in MIX for _ in range(share)]
    cycle = [cycle[(i * 37) % 100] for i in range(100)]  # 37 is prime to 100: a permutation
    for i in range(total):
        yield cycle[i % 100]


def config(tmp_path: Path, port: int, monitor: int, api: int) -> dict[str, Any]:
    """The door test's gateway (its terminal entry, privacy, one broker) with these buttons."""
    doc = door_gateway(tmp_path, port)
    token = tmp_path / "api.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    terminal = next(d for d in doc["devices"] if d["kind"] == "door_terminal")
    buttons = {
        "kind": "mqtt_button",
        "id": "sos",
        "topic": "flood/+/event",
        "device_from_topic": 1,
        "devices": ["b1", "b2", "g1"],
        "profile": "sos-state-json",
        "rate_limit": BUDGET,
    }
    return doc | {
        "devices": [buttons, terminal],
        "alarms": {"rules": [{"kind": "contact", "id": "sos", "device": "*", "input": "sos"}]},
        "monitor": {"port": monitor},
        "api": {"port": api, "token_file": str(token)},
    }


def rejected(text: str) -> Counter[tuple[str, str]]:
    """``cgw_input_rejected_total`` by (input, reason)."""
    pattern = r'^cgw_input_rejected_total\{input="([^"]+)",reason="([^"]+)"\} (\S+)$'
    found = re.findall(pattern, text, re.MULTILINE)
    return Counter({(i, r): int(float(v)) for i, r, v in found})


async def get(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 200, url
        return await resp.text()


async def flood(client: aiomqtt.Client, presses: dict[str, float]) -> Counter[str]:
    """``RATE`` junk messages a second for ``SECONDS`` s; the three presses half way through."""
    sent: Counter[str] = Counter()
    kinds = schedule(int(RATE * SECONDS))
    per_tick = int(RATE * TICK)
    t0 = time.monotonic()
    for tick in range(int(SECONDS / TICK)):
        for _ in range(per_tick):
            kind = next(kinds)
            await client.publish(*junk(kind, sum(sent.values())), qos=0)
            sent[kind] += 1
        if tick == int(SECONDS / TICK / 2):
            for device in presses:
                presses[device] = time.monotonic()
                body = {"id": f"real-{device}", "evt": "sos", "state": "pressed"}
                await client.publish(f"flood/{device}/event", json.dumps(body), qos=1)
        await asyncio.sleep(max(0.0, t0 + (tick + 1) * TICK - time.monotonic()))
    return sent


async def test_a_junk_flood_is_counted_and_every_press_gets_through(
    tmp_path: Path, daemon: Daemon
) -> None:
    broker = Mosquitto(tmp_path / "broker", extra_config="sys_interval 1")
    monitor, api = free_ports(2)
    monitor_url, devices = f"http://127.0.0.1:{monitor}", f"http://127.0.0.1:{api}/v1/devices"
    presses = {"b1": 0.0, "b2": 0.0, "g1": 0.0}
    with broker:
        write_config(daemon.config, config(tmp_path, broker.port, monitor, api))
        async with (
            Recorder(broker.host, broker.port, f"{PREFIX}/alarm/+") as alarms,
            Recorder(broker.host, broker.port, DROPPED, qos=0) as sys_tree,
            aiomqtt.Client(broker.host, broker.port, identifier="flooder") as client,
            aiohttp.ClientSession() as http,
        ):
            daemon.start()
            await daemon.wait_log("subscribed to 1 button topics")
            await daemon.wait_log("door terminal configs")
            started = time.monotonic()
            sent = await flood(client, presses)
            heard = sum(sent.values()) - sent["unknown"] - sent["door"]  # the listed ids' junk
            # every junk message read (all but g1's first are rejected), 20 s at most
            text = await wait_metrics(monitor_url, lambda t: sum(rejected(t).values()) >= heard - 1)
            elapsed = time.monotonic() - started
            got = await alarms.wait_for(lambda m: len(raised(m)) >= 3, timeout=LATENCY)
            states = json.loads(await get(http, devices))["devices"]
            await asyncio.sleep(2.5)  # two sys_interval ticks: a drop during the flood is out
        rc, _ = daemon.terminate()
    assert rc == 0
    counts = rejected(text)
    assert sum(counts.values()) == heard - 1
    assert counts["mqtt_buttons", "unknown_device"] == 0
    assert counts["door_terminals", "unknown_device"] == 0
    # b1's and g1's junk, and FG-A1's: beyond burst + rate x elapsed, rate_limited (or shed)
    allowed = BUDGET["burst"] + BUDGET["rate"] * elapsed
    cut = {name: counts[name, "rate_limited"] + counts[name, "shed"] for name, _ in counts}
    assert (
        cut["mqtt_buttons"] >= sent["malformed"] + sent["oversize"] + sent["garbage"] - 2 * allowed
    )
    assert cut["door_terminals"] >= sent["heartbeat"] - 500 - 50 * elapsed
    # every press once, by its dedup key, soon
    alarm_msgs = raised(got)
    assert sorted(alarm_msgs) == ["b1", "b2", "g1"]
    for device, at in alarm_msgs.items():
        assert at - presses[device] < LATENCY
    assert int(sys_tree.messages[-1].payload) == 0  # reached equals sent (retained, then changes)
    assert not [s["id"] for s in states if s["id"].startswith(("u", "T"))]


def raised(msgs: Sequence[Received]) -> dict[str, float]:
    """Device -> arrival of its raised alarm; fails if one came twice under two dedup keys."""
    seen: dict[tuple[Any, ...], tuple[str, float]] = {}
    for m in msgs:
        doc = json.loads(m.payload)
        if doc["state"] == "raised":
            seen.setdefault((doc.get("epoch"), doc["lane"], doc["seq"]), (doc["device"], m.at))
    devices = [device for device, _ in seen.values()]
    assert len(devices) == len(set(devices)), f"an alarm raised twice: {devices}"
    return dict(seen.values())
