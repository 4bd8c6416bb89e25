"""Operating a running daemon: health, metrics, ``cgw status`` and reload on SIGHUP."""

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.config.modbus import PointConfig
from gateway.demo.sim import SimulatedDevice, Simulator
from tests.support.daemon import REPO, Daemon, gateway_config, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port
from tests.support.subscriber import Recorder

pytestmark = pytest.mark.slow
COUNTER = PointConfig(name="counter", address=0, type="uint32")
TELEMETRY = "cgw/s1/gw1/telemetry/"


def devices(units: list[int]) -> list[SimulatedDevice]:
    return [SimulatedDevice(u, [COUNTER], functions={"counter": float}) for u in units]


def monitored(doc: dict[str, Any], port: int) -> dict[str, Any]:
    return {**doc, "monitor": {"port": port}}


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def wait_health(
    url: str,
    predicate: Callable[[int, dict[str, Any]], bool],
    timeout: float = 20.0,  # noqa: ASYNC109 (it goes into the error message)
) -> dict[str, Any]:
    """Poll ``/health`` (another process's server) until ``predicate(status, doc)`` holds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, text = await get(url + "/health")
            doc: dict[str, Any] = json.loads(text)
            if predicate(status, doc):
                return doc
            last = (status, doc)
        except aiohttp.ClientError as exc:
            last = exc
        await asyncio.sleep(0.1)  # bounded poll of another process's endpoint
    raise AssertionError(f"health never matched; last: {last}")


async def wait_metrics(url: str, predicate: Callable[[str], bool]) -> str:
    """Poll ``/metrics`` (another process's server) until ``predicate(text)`` holds."""
    async with asyncio.timeout(20):
        while True:
            status, text = await get(url + "/metrics")
            if status == 200 and predicate(text):
                return text
            await asyncio.sleep(0.1)  # bounded poll of another process's endpoint


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (fails if absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)"
    found = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    assert found, f"no sample {name}{{{want}}} in:\n{text[:3000]}"
    return float(found.group(1))


def cgw_status(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "status", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        check=False,
    )


async def test_health_metrics_and_status_follow_the_uplink(
    tmp_path: Path, mosquitto: Mosquitto, daemon: Daemon
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with Simulator(devices([1, 2]), port=0, interval=0.1) as sim:
        # the devices must stay online until `cgw status` has looked, on a busy machine too
        doc = gateway_config(
            tmp_path / "b.db", mosquitto.port, sim.port, [1, 2], interval=1.0, timeout=1.0
        )
        write_config(daemon.config, monitored(doc, port))
        daemon.start()
        health = await wait_health(
            url, lambda s, d: s == 200 and set(d["devices"].values()) == {"online"}
        )
        assert health["status"] == "ok"
        assert health["uplink"] == "up"
        assert set(health["components"]) == {"store", "alarms", "sink:mqtt"}

        text = await wait_metrics(
            url, lambda t: metric(t, "cgw_sink_delivered_total", sink="mqtt") > 0
        )
        assert metric(text, "cgw_device_polls_total", device="dev-1") > 0
        assert metric(text, "cgw_device_online", device="dev-2") == 1
        assert metric(text, "cgw_sink_connected", sink="mqtt") == 1
        assert metric(text, "cgw_sink_delivered_total", sink="mqtt") > 0
        assert metric(text, "cgw_sink_backlog_rows", sink="mqtt") >= 0
        assert metric(text, "cgw_alarms_open", severity="critical") == 0
        assert 10e6 < metric(text, "process_resident_memory_bytes") < 500e6
        assert metric(text, "cgw_store_quota_bytes") == 16 * 1024**2

        shown = cgw_status(daemon.config)
        assert shown.returncode == 0, shown.stderr
        assert "OK" in shown.stdout
        assert "devices: 2/2 online" in shown.stdout

        mosquitto.stop()  # the uplink goes: health says which component fails
        health = await wait_health(url, lambda s, d: s == 503)
        assert health["status"] == "degraded"
        assert health["failing"] == ["sink:mqtt"]
        assert health["uplink"] == "down"
        shown = cgw_status(daemon.config)
        assert shown.returncode == 1
        assert "FAIL sink:mqtt" in shown.stdout
        _, text = await get(url + "/metrics")
        assert metric(text, "cgw_sink_connected", sink="mqtt") == 0


def test_status_without_a_running_gateway_says_so(tmp_path: Path) -> None:
    doc = monitored(gateway_config(tmp_path / "b.db", 1883, 502, [1]), free_port())
    config = write_config(tmp_path / "gw.yaml", doc)
    shown = cgw_status(config)
    assert shown.returncode == 1
    assert "cannot reach the gateway" in shown.stderr


async def test_sighup_applies_a_good_file_and_keeps_the_running_config_on_a_bad_one(
    tmp_path: Path, mosquitto: Mosquitto, daemon: Daemon
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with (
        Simulator(devices([1, 2, 3]), port=0, interval=0.1) as sim,
        Recorder(mosquitto.host, mosquitto.port, "cgw/s1/gw1/#") as rec,
    ):
        doc = monitored(gateway_config(tmp_path / "b.db", mosquitto.port, sim.port, [1]), port)
        write_config(daemon.config, doc)
        daemon.start()
        await wait_health(url, lambda s, d: s == 200)
        await rec.wait_count(3, TELEMETRY + "dev-1")
        births = len([m for m in rec.on("cgw/s1/gw1/status") if b'"online"' in m.payload])

        # a good file: one more device on the bus; the bus group restarts, and the availability
        # recorder, which registers the new device; the sink does not
        write_config(
            daemon.config,
            monitored(gateway_config(tmp_path / "b.db", mosquitto.port, sim.port, [1, 3]), port),
        )
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        line = await daemon.wait_log("reloaded")
        assert "restarted reports:recorder, modbus:tcp" in line["msg"]
        assert "sink:mqtt" not in line["msg"]
        await rec.wait_count(3, TELEMETRY + "dev-3")
        _, text = await get(url + "/metrics")
        assert metric(text, "cgw_config_reloads_total", result="applied") == 1
        assert metric(text, "cgw_sink_reconnects_total", sink="mqtt") == 0

        # a bad file: refused with the key and the reason, the running config stays
        broken = monitored(gateway_config(tmp_path / "b.db", mosquitto.port, sim.port, [1]), port)
        broken["devices"][0]["unit_id"] = 999
        write_config(daemon.config, broken)
        daemon.proc.send_signal(signal.SIGHUP)
        line = await daemon.wait_log("refused")
        assert "devices[0] (dev-1).unit_id" in line["msg"]
        mark = len(rec.on(TELEMETRY + "dev-3"))
        await rec.wait_count(mark + 3, TELEMETRY + "dev-3")  # dev-3 still polled

        # a change that needs a restart is refused too, naming it
        moved = monitored(gateway_config(tmp_path / "c.db", mosquitto.port, sim.port, [1]), port)
        write_config(daemon.config, moved)
        daemon.proc.send_signal(signal.SIGHUP)
        await daemon.wait_log("store changed, which needs a restart")
        _, text = await get(url + "/metrics")
        assert metric(text, "cgw_config_reloads_total", result="refused") == 2
        health = await wait_health(url, lambda s, d: s == 200)
        assert set(health["devices"]) == {"dev-1", "dev-3"}

        rc, _ = daemon.terminate()
    assert rc == 0
    births_after = [m for m in rec.on("cgw/s1/gw1/status") if b'"online"' in m.payload]
    assert len(births_after) == births, "the MQTT sink was restarted by a reload"
