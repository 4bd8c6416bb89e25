"""The whole daemon as a process: outages, kill -9, SIGTERM, bad config, the demo."""

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from gateway.config.modbus import PointConfig
from gateway.demo.sim import SimulatedDevice, Simulator
from tests.support.daemon import REPO, Daemon, gateway_config, stored_telemetry, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port
from tests.support.schemas import validate_message
from tests.support.subscriber import Received, Recorder
from tests.support.victoria import VictoriaMetrics

pytestmark = pytest.mark.slow
TELEMETRY = "cgw/s1/gw1/telemetry/"
COUNTER = PointConfig(name="counter", address=0, type="uint32")


def counting_devices(units: Sequence[int]) -> list[SimulatedDevice]:
    """Devices whose only point counts the simulator's ticks: later readings are larger."""
    return [SimulatedDevice(u, [COUNTER], functions={"counter": float}) for u in units]


def telemetry(msgs: Sequence[Received]) -> list[dict[str, object]]:
    return [json.loads(m.payload) for m in msgs if m.topic.startswith(TELEMETRY)]


def first_copies(msgs: Sequence[Received]) -> list[dict[str, object]]:
    """Telemetry after dedup on the documented key, in arrival order."""
    seen: set[tuple[object, ...]] = set()
    out = []
    for doc in telemetry(msgs):
        key = tuple(doc[k] for k in ("site_id", "gateway_id", "epoch", "lane", "seq"))
        if key not in seen:
            seen.add(key)
            out.append(doc)
    return out


def is_offline(msg: Received) -> bool:
    """The gateway's own retained status saying it went offline."""
    return msg.topic.endswith("/status") and json.loads(msg.payload).get("state") == "offline"


def seqs(msgs: Sequence[Received]) -> set[int]:
    return {int(str(d["seq"])) for d in telemetry(msgs)}


@pytest.fixture
def persistent_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker that keeps sessions and their queued messages across a restart.

    Without it, what the broker accepted from the gateway but had not yet handed to the test's
    subscriber dies with the broker, and the subscriber misses what the gateway publishes
    before it has re-subscribed: losses of the test, not of the gateway.
    """
    broker = Mosquitto(tmp_path / "mosquitto-persistent", persistence=True)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def test_broker_outage_loses_nothing_and_keeps_order(
    tmp_path: Path, persistent_mosquitto: Mosquitto, daemon: Daemon
) -> None:
    db = tmp_path / "buf.db"
    mosquitto = persistent_mosquitto
    async with (
        Simulator(counting_devices([1, 2]), port=0, interval=0.1) as sim,
        Recorder(mosquitto.host, mosquitto.port, "cgw/#", clean_session=False) as rec,
    ):
        write_config(daemon.config, gateway_config(db, mosquitto.port, sim.port, [1, 2]))
        daemon.start()
        await rec.wait_count(10, TELEMETRY)
        before = len(seqs(rec.messages))
        await mosquitto.restart_async(down_for=10.0)
        # readings taken during the outage come through once the broker is back
        await rec.wait_for(lambda m: len(seqs(m)) >= before + 2 * 10 / 0.2, timeout=30)
        mark = len(rec.messages)
        rc, took = daemon.terminate()
        # the retained "offline" goes out after the last confirmed publish: all are in
        received = await rec.wait_for(lambda m: any(map(is_offline, m[mark:])))
    assert rc == 0
    assert took < 5.0
    for msg in received:  # every message the daemon published keeps the contract
        validate_message("cgw/s1/gw1", msg.topic, msg.payload)
    top, waiting = stored_telemetry(db)
    got = seqs(received)
    assert got | waiting == set(range(1, top + 1)), "a committed reading went missing"
    assert len(got) > 2 * 10 / 0.2  # the outage's readings did arrive
    for dev in ("dev-1", "dev-2"):
        docs = [d for d in first_copies(received) if d["device"] == dev]
        order = [int(str(d["seq"])) for d in docs]
        counters = [d["points"][0]["value"] for d in docs]  # type: ignore[index]
        assert order == sorted(order), f"{dev} arrived out of order"
        assert counters == sorted(counters), f"{dev} readings out of order"


async def test_kill_9_loses_no_committed_reading(
    tmp_path: Path, mosquitto: Mosquitto, daemon: Daemon
) -> None:
    db = tmp_path / "buf.db"
    async with (
        Simulator(counting_devices([1, 2, 3]), port=0, interval=0.1) as sim,
        Recorder(mosquitto.host, mosquitto.port, "cgw/#") as rec,
    ):
        write_config(
            daemon.config, gateway_config(db, mosquitto.port, sim.port, [1, 2, 3], interval=0.1)
        )
        daemon.start()
        await rec.wait_count(30, TELEMETRY)
        daemon.kill()
        committed, _ = stored_telemetry(db)
        assert committed >= 30
        daemon.start()
        await rec.wait_for(lambda m: set(range(1, committed + 1)) <= seqs(m), timeout=30)
        await rec.wait_for(lambda m: max(seqs(m)) > committed + 10, timeout=30)
        rc, _ = daemon.terminate()
        births = [json.loads(m.payload) for m in rec.on("cgw/s1/gw1/status")]
        epochs = {str(d["epoch"]) for d in telemetry(rec.on())}
    assert rc == 0
    assert any("last shutdown was not clean" in e["msg"] for e in daemon.logs())
    # the same store after kill -9: the same epoch, so the resent readings dedup
    assert len(epochs) == 1
    assert {d["epoch"] for d in births} == epochs


async def test_sigterm_publishes_offline_and_exits_zero(
    tmp_path: Path, mosquitto: Mosquitto, daemon: Daemon
) -> None:
    async with (
        Simulator(counting_devices([1]), port=0, interval=0.1) as sim,
        Recorder(mosquitto.host, mosquitto.port, "cgw/s1/gw1/status") as rec,
    ):
        write_config(
            daemon.config, gateway_config(tmp_path / "b.db", mosquitto.port, sim.port, [1])
        )
        daemon.start()
        await rec.wait_for(lambda m: any(b'"online"' in x.payload for x in m))
        rc, took = daemon.terminate()
        await rec.wait_for(lambda m: b'"offline"' in m[-1].payload)
    assert rc == 0
    assert took < 5.0
    # the offline status is retained: a late subscriber sees it
    async with Recorder(mosquitto.host, mosquitto.port, "cgw/s1/gw1/status") as late:
        msgs = await late.wait_count(1)
    assert msgs[0].retain
    assert json.loads(msgs[0].payload)["state"] == "offline"


def test_invalid_config_exits_2_naming_the_key_and_starts_nothing(tmp_path: Path) -> None:
    doc = gateway_config(tmp_path / "never.db", 1883, 502, [1])
    doc["devices"][0]["unit_id"] = 0
    doc["upstream"]["mqtt"]["colour"] = "red"
    cfg = write_config(tmp_path / "bad.yaml", doc)
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "run", "-c", str(cfg)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "devices[0] (dev-1).unit_id" in proc.stderr
    assert "upstream.mqtt.colour: unknown key" in proc.stderr
    assert not (tmp_path / "never.db").exists()


def test_demo_shows_live_telemetry(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--duration", "12", "--port", str(port)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"started a loopback mosquitto on 127.0.0.1:{port}" in proc.stdout
    assert "pm25=" in proc.stdout
    assert "th-1       is ONLINE" in proc.stdout
    assert "gateway    is OFFLINE" in proc.stdout  # the clean stop was published
    # the scripted emergency: the lobby button is pressed, then a guard acknowledges
    assert "ALARM  lobby-sos  CRITICAL: emergency input sos pressed -> RAISED" in proc.stdout
    assert "-> ACKNOWLEDGED after" in proc.stdout


def test_demo_on_a_broker_that_wants_a_login_says_so_in_one_line(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mq", extra_config="allow_anonymous false\n")
    broker.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "gateway", "demo", "--duration", "10",
             "--port", str(broker.port)],
            capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
        )  # fmt: skip
    finally:
        broker.stop()
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"cgw demo: the broker on 127.0.0.1:{broker.port} refused the demo" in proc.stderr
    assert "without --port" in proc.stderr


async def test_telemetry_reaches_both_mqtt_and_influx(
    tmp_path: Path, mosquitto: Mosquitto, daemon: Daemon
) -> None:
    vm = VictoriaMetrics(tmp_path / "vm")
    await asyncio.to_thread(vm.start)
    try:
        db = tmp_path / "buf.db"
        doc = gateway_config(db, mosquitto.port, 0, [1])
        doc["upstream"]["influx"] = {"url": vm.url, "org": "o", "bucket": "b"}
        async with (
            Simulator(counting_devices([1]), port=0, interval=0.1) as sim,
            Recorder(mosquitto.host, mosquitto.port, TELEMETRY + "#") as rec,
        ):
            doc["buses"][0]["port"] = sim.port
            write_config(daemon.config, doc)
            daemon.start()
            await rec.wait_count(10, TELEMETRY)
            await daemon.wait_log("connected to upstream broker")
            rc, _ = daemon.terminate()
        assert rc == 0
        top, waiting = stored_telemetry(db)
        # rows leave the store only once both sinks confirmed them: every committed reading
        # is in VictoriaMetrics or still waiting (fresh samples take a moment to be served)
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            got = await vm.query_export('{__name__="cgw_counter"}')
            points = sum(len(s["values"]) for s in got)
            if points + len(waiting) >= top or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)  # polling another process's index; bounded
        assert points + len(waiting) >= top
        assert {s["metric"]["device"] for s in got} == {"dev-1"}
    finally:
        await asyncio.to_thread(vm.stop)
