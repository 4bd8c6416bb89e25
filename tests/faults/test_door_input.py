"""Fault finding 13 (door items): malformed heartbeats and impossible terminal clocks.

The real daemon with the shipped facegate profile on a real mosquitto. A terminal that sends
``{"deviceSn":1,"status":[],"time":12}`` as its heartbeat is not alive: each such message is
rejected and counted (``unmapped``), exactly as many as were sent. An event stamped
9999-12-31 by the terminal's clock goes upstream with the arrival time alone: ``terminal_ts``
and ``skew_s`` null, ``skew_flagged`` true.
"""

import json
import re
import time
from pathlib import Path

import aiomqtt
import pytest

from tests.e2e.test_doors import config, event, upstream
from tests.e2e.test_operate import wait_metrics
from tests.support.daemon import Daemon, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port
from tests.support.subscriber import Recorder

pytestmark = pytest.mark.slow
PREFIX = "cgw/s1/gw1"
MALFORMED = json.dumps({"deviceSn": 1, "status": [], "time": 12})


def unmapped(text: str) -> float:
    """Door-terminal messages rejected as ``unmapped``, over every input."""
    pattern = r'^cgw_input_rejected_total\{[^}]*reason="unmapped"[^}]*\} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))


async def test_malformed_heartbeats_and_impossible_clocks(
    tmp_path: Path, mosquitto: Mosquitto, daemon: Daemon
) -> None:
    port = free_port()
    write_config(daemon.config, {**config(tmp_path, mosquitto.port), "monitor": {"port": port}})
    async with (
        Recorder(mosquitto.host, mosquitto.port, f"{PREFIX}/event/#") as rec,
        aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="terminal") as term,
    ):
        daemon.start()
        await daemon.wait_log("door terminal configs")  # what is sent before is not queued
        for _ in range(3):
            await term.publish("facegate/FG-A1/heartbeat", MALFORMED, qos=1)
        await wait_metrics(f"http://127.0.0.1:{port}", lambda t: unmapped(t) >= 3)
        sent = time.time()
        await term.publish(
            "facegate/FG-A1/event", event("FACE_PASS", "e-9", time="9999-12-31 00:00:00"), qos=1
        )
        got = await rec.wait_for(lambda m: len(upstream(m, "event/FG-A1")) >= 2, timeout=15)
        text = await wait_metrics(f"http://127.0.0.1:{port}", lambda t: unmapped(t) >= 3)
        rc, _ = daemon.terminate()
    assert rc == 0
    assert unmapped(text) == 3  # every malformed heartbeat, and nothing else
    online, granted = upstream(got, "event/FG-A1")[:2]
    assert online["kind"] == "terminal_online"  # brought by the event, not the heartbeats
    assert granted["kind"] == "granted"
    assert (granted["terminal_ts"], granted["skew_s"], granted["skew_flagged"]) == (
        None,
        None,
        True,
    )
    arrival = granted["gateway_ts"]
    assert arrival.startswith(time.strftime("%Y-", time.gmtime(sent)))
