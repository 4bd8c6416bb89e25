"""Throughput benchmark of the gateway on loopback. Run by hand; the test suite never runs it.

    .venv/bin/python bench/throughput.py [--devices 50] [--backlog 100000] [--phases e2e,drain,raw]

Phases (see bench/README.md). Each phase gets a fresh mosquitto and a fresh subscriber, and its
gateway side runs in a subprocess of its own, so every peak RSS printed belongs to one phase:

``e2e``     N simulated Modbus TCP devices (a separate simulator process, several devices per
            port) -> the real ``Runtime`` (pollers, ``Store``, ``MqttSink``) -> mosquitto -> a
            paho subscriber process. Readings/s and messages/s over a fixed window after a
            warm-up, poll latency p50/p99, overruns, poll-to-subscriber latency p50/p99.
``drain``   a ``Store`` filled with a telemetry backlog while no sink runs, then ``MqttSink``
            started: time until ``store.backlog('mqtt') == 0`` and the subscriber has them all.
``raw``     plain paho-mqtt QoS 1 (``loop_start``, ``max_inflight_messages_set(100)``) publishing
            the same payloads to the same broker and subscriber: the ceiling the drain is
            compared with.
``aioraw``  (optional) aiomqtt QoS 1, 100 publishes in flight, same payloads: the client
            library's share of the gap between ``drain`` and ``raw``.

Nothing here asserts a timing; it prints figures. Every process it starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.metadata
import json
import math
import os
import platform
import pwd
import queue
import resource
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.core.messages import Record, Sample
    from gateway.sinks.mqtt import MqttSink

HERE = Path(__file__).resolve()
MOSQUITTO = "/usr/sbin/mosquitto"
HOST = "127.0.0.1"
ROOT, SITE, GATEWAY = "cgw", "bench", "gw1"
TELEMETRY_FILTER = f"{ROOT}/{SITE}/{GATEWAY}/telemetry/#"
PHASES = ("e2e", "drain", "raw", "aioraw")
CLK_TCK = os.sysconf("SC_CLK_TCK")
STOP_WAIT = 10.0  # s the e2e gateway gets to return from Runtime.run after stop is set
QUEUE_HIGH, QUEUE_LOW = 1000, 500  # raw paho: messages handed to paho and not yet acknowledged


# -- small helpers ------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def max_rss_mib() -> float:
    """Peak RSS of this process so far (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def proc_status_mib(pid: int | str, key: str) -> float:
    """A ``kB`` field of ``/proc/<pid>/status`` (VmRSS, VmHWM) in MiB; NaN if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process from ``/proc/<pid>/stat``; NaN if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile ``p`` (0-100) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def emit_result(result: dict[str, Any]) -> None:
    """A worker's result: one ``RESULT {json}`` line on stdout."""
    print("RESULT " + json.dumps(result), flush=True)


async def stdin_eof() -> None:
    """Return once standard input is closed (how the orchestrator stops a long-lived worker)."""
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# -- realistic telemetry ------------------------------------------------------------------------


def make_records(n: int, devices: int = 500) -> list[Record]:
    """``n`` telemetry records as the runtime stores them: 3 readings each, ~250 B body.

    Built with ``gateway.core.contract.telemetry_record`` from a ``Sample``, round-robin over
    ``devices`` device ids, values drifting like a real T/RH/PM2.5 sensor.
    """
    from gateway.core.contract import telemetry_record
    from gateway.core.messages import Quality, Reading, Sample

    now = time.time()
    records = []
    for i in range(n):
        k = i % devices
        sample = Sample(
            device=f"env-station-{k:04d}",
            ts=now - (n - i) * 0.1,
            readings=(
                Reading("temperature", round(18.0 + (i % 97) * 0.113, 6), "degC", Quality.GOOD),
                Reading("humidity", round(40.0 + (i % 89) * 0.271, 6), "%RH", Quality.GOOD),
                Reading("pm25", round(12.0 + (i % 83) * 0.517, 6), "ug/m3", Quality.GOOD),
            ),
        )
        records.append(telemetry_record(sample, True))
    return records


def rendered(records: Sequence[Record]) -> list[tuple[str, bytes]]:
    """Topic and payload of each record exactly as ``MqttSink`` publishes it (seq = position)."""
    from gateway.core.contract import Identity, render
    from gateway.store.outbox import Row

    ident = Identity(ROOT, SITE, GATEWAY)
    out = []
    for i, rec in enumerate(records, 1):
        row = Row(
            i,
            rec.lane,
            i,
            rec.topic,
            rec.device,
            rec.ts,
            rec.clock_synced,
            False,
            rec.fields,
            rec.points,
        )
        out.append(render(ident, row))
    return out


def gateway_config(tmp: Path, broker_port: int, extra: dict[str, Any] | None = None) -> Any:
    """A validated ``Config`` (``gateway.config.validate``) for the benchmark gateway."""
    from gateway.config import validate

    raw: dict[str, Any] = {
        "gateway": {"site_id": SITE, "gateway_id": GATEWAY},
        "store": {"path": str(tmp / "buffer.db"), "quota": "256MiB", "reserve": "16MiB"},
        "upstream": {
            "mqtt": {"host": HOST, "port": broker_port, "topic_root": ROOT, "max_inflight": 100}
        },
        "log_level": "WARNING",
    }
    raw.update(extra or {})
    return validate(raw, tmp)


# -- worker: Modbus simulator -------------------------------------------------------------------


async def worker_sim(args: argparse.Namespace) -> None:
    """Serve ``--devices`` simulated devices, ``--per-port`` per TCP port, until stdin closes."""
    from gateway.config.loader import BUILTIN_PROFILES
    from gateway.demo.simulator import SimulatedDevice, Simulator

    profile = BUILTIN_PROFILES / f"{args.profile}.yaml"
    ports: list[int] = []
    async with contextlib.AsyncExitStack() as stack:
        for first in range(0, args.devices, args.per_port):
            count = min(args.per_port, args.devices - first)
            devices = [SimulatedDevice.from_profile(u, profile) for u in range(1, count + 1)]
            sim = Simulator(devices, HOST, 0, interval=1.0, seed=first)
            await stack.enter_async_context(sim)
            ports.append(sim.port)
        print("PORTS " + json.dumps(ports), flush=True)
        cpu0 = cpu_seconds()
        await stdin_eof()
    emit_result({"max_rss_mib": max_rss_mib(), "cpu_s": cpu_seconds() - cpu0})


# -- worker: subscriber -------------------------------------------------------------------------


def worker_sub(args: argparse.Namespace) -> None:
    """A paho QoS 1 subscriber counting telemetry messages; results go to ``--out`` at stdin EOF.

    Prints ``READY`` once subscribed and ``DONE <monotonic>`` when ``--expect`` messages are in.
    The callback only appends a timestamp (and, with ``--keep``, the payload), so it costs as
    little as a Python subscriber can.
    """
    from paho.mqtt.client import Client, ConnectFlags, MQTTMessage
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

    arrivals: list[float] = []
    walls: list[float] = []
    payloads: list[bytes | bytearray] = []
    ready = threading.Event()
    expect: int = args.expect
    keep: bool = args.keep

    def on_connect(
        client: Client, _u: Any, _f: ConnectFlags, rc: ReasonCode, _p: Properties | None
    ) -> None:
        client.subscribe(args.filter, qos=1)

    def on_subscribe(
        _c: Client, _u: Any, _mid: int, _rc: list[ReasonCode], _p: Properties | None
    ) -> None:
        ready.set()

    def on_message(_c: Client, _u: Any, msg: MQTTMessage) -> None:
        arrivals.append(time.monotonic())
        if keep:
            walls.append(time.time())
            payloads.append(msg.payload)
        if len(arrivals) == expect:
            print(f"DONE {arrivals[-1]}", flush=True)

    client = Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{os.getpid()}", clean_session=True
    )
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(HOST, args.port, keepalive=60)
    client.loop_start()
    try:
        if not ready.wait(10):
            raise SystemExit("subscriber: no SUBACK within 10 s")
        print("READY", flush=True)
        sys.stdin.read()
    finally:
        client.disconnect()
        client.loop_stop()
    points: list[int] = []
    latency: list[float] = []
    seen: set[tuple[str, int]] = set()
    for payload, wall in zip(payloads, walls, strict=True):
        msg = json.loads(payload)
        points.append(len(msg["points"]))
        seen.add((msg["device"], msg["seq"]))
        stamp = msg["ts"].replace("Z", "+00:00")
        latency.append(wall - _iso_to_epoch(stamp))
    result = {
        "arrivals": arrivals,
        "points": points,
        "latency": latency,
        "unique": len(seen) if keep else None,
        "cpu_s": cpu_seconds(),
        "max_rss_mib": max_rss_mib(),
    }
    Path(args.out).write_text(json.dumps(result))


def _iso_to_epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()


# -- worker: gateway end to end -----------------------------------------------------------------


@dataclass
class TimedDriver:
    """Wraps a poller's driver to record (start, duration) of every poll.

    Also notes polls that *returned* although their task was being cancelled: Python 3.11's
    ``asyncio.wait_for`` (used inside pymodbus) swallows a cancellation that arrives when the
    awaited response is already there, so the poller never sees it (see docs/performance.md).
    """

    inner: Any
    log: list[tuple[float, float]]
    swallowed: list[str]
    id: str = ""

    def __post_init__(self) -> None:
        self.id = self.inner.id

    async def poll(self) -> Sample:
        start = time.monotonic()
        try:
            sample: Sample = await self.inner.poll()
            task = asyncio.current_task()
            if task is not None and task.cancelling() and self.id not in self.swallowed:
                self.swallowed.append(self.id)
            return sample
        finally:
            self.log.append((start, time.monotonic() - start))


def await_chain(task: asyncio.Task[Any]) -> list[str]:
    """Where a task's coroutine is suspended, outermost first (``get_stack`` shows one frame)."""
    out = []
    obj: Any = task.get_coro()
    while obj is not None:
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None)
        if frame is None:
            out.append(repr(obj)[:120])
            break
        out.append(f"{frame.f_code.co_qualname} ({Path(frame.f_code.co_filename).name}:"
                   f"{frame.f_lineno})")  # fmt: skip
        obj = getattr(obj, "cr_await", None) or getattr(obj, "gi_yieldfrom", None)
    return out


async def worker_e2e(args: argparse.Namespace) -> None:
    """Run the real ``Runtime`` against the simulator ports; measure over a fixed window."""
    from gateway.ops.logs import setup
    from gateway.runtime.root import Runtime

    setup("WARNING", json_lines=False)
    tmp = Path(args.tmp)
    ports: list[int] = json.loads(args.modbus_ports)
    interval: float = args.interval
    timeout = min(1.0, interval / 2)  # bus budget timeout * (retries + 1) must fit the interval
    buses = [
        {"id": f"tcp{i}", "kind": "modbus_tcp", "host": HOST, "port": port, "timeout": timeout}
        for i, port in enumerate(ports)
    ]
    devices = []
    for n in range(args.devices):
        devices.append(
            {
                "kind": "modbus",
                "id": f"dev-{n:03d}",
                "bus": f"tcp{n // args.per_port}",
                "unit_id": n % args.per_port + 1,
                "profile": args.profile,
                "interval": interval,
            }
        )
    cfg = gateway_config(tmp, args.port, {"buses": buses, "devices": devices})
    rss_start = max_rss_mib()
    runtime = Runtime(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop), name="runtime")
    ready = asyncio.create_task(runtime.ready.wait())
    await asyncio.wait([task, ready], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if not runtime.ready.is_set():
        ready.cancel()
        stop.set()
        await task  # raises what stopped it
        raise SystemExit("runtime did not become ready")
    polls_log: list[tuple[float, float]] = []
    swallowed: list[str] = []
    for p in runtime.pollers:
        p.driver = TimedDriver(p.driver, polls_log, swallowed)
    assert runtime.sink is not None
    sink = runtime.sink

    def snapshot() -> dict[str, float]:
        return {
            "mono": time.monotonic(),
            "cpu": cpu_seconds(),
            "polls": sum(p.polls for p in runtime.pollers),
            "failed": sum(p.failed_polls for p in runtime.pollers),
            "overruns": sum(p.overruns for p in runtime.pollers),
            "published": sink.published,
        }

    await asyncio.sleep(args.warmup)
    s0 = snapshot()
    await asyncio.sleep(args.window)
    s1 = snapshot()
    backlog_end = sink.store.backlog(sink.name)
    stop.set()
    t_stop = time.monotonic()
    stopped = True
    done, _ = await asyncio.wait([task], timeout=STOP_WAIT)
    if done:
        task.result()  # raises what the runtime raised
    else:  # report where the shutdown hangs, then cancel the stuck tasks again to finish
        stopped = False
        print(
            f"gateway: Runtime.run did not return within {STOP_WAIT:.0f} s of stop; stuck:",
            file=sys.stderr,
        )
        stuck = [t for t in asyncio.all_tasks() if t.cancelling()]
        for t in stuck:
            print(f"  {t.get_name()}: {' <- '.join(await_chain(t))}", file=sys.stderr)
        for t in stuck:
            t.cancel()
        await asyncio.wait([task], timeout=STOP_WAIT)
    durations = [d for start, d in polls_log if s0["mono"] <= start and start + d <= s1["mono"]]
    emit_result(
        {
            "t0": s0["mono"],
            "t1": s1["mono"],
            "window_s": s1["mono"] - s0["mono"],
            "polls": s1["polls"] - s0["polls"],
            "failed_polls": s1["failed"] - s0["failed"],
            "overruns": s1["overruns"] - s0["overruns"],
            "overruns_total": s1["overruns"],
            "published": s1["published"] - s0["published"],
            "cpu_s": s1["cpu"] - s0["cpu"],
            "poll_p50_ms": pct(durations, 50) * 1000,
            "poll_p99_ms": pct(durations, 99) * 1000,
            "poll_max_ms": max(durations, default=math.nan) * 1000,
            "backlog_end": backlog_end,
            "stop_s": time.monotonic() - t_stop if stopped else None,
            "swallowed": swallowed,
            "rss_start_mib": rss_start,
            "max_rss_mib": max_rss_mib(),
        }
    )


# -- worker: backlog drain ----------------------------------------------------------------------


async def open_store(tmp: Path, port: int) -> Any:
    """The benchmark's ``Store`` (``buffer.db`` in ``tmp``), as ``Runtime`` opens it."""
    from gateway.sinks.mqtt import MqttSink
    from gateway.store.outbox import Store

    cfg = gateway_config(tmp, port)
    return await Store.open(
        cfg.store.path,
        quota=int(cfg.store.quota),
        reserve=int(cfg.store.reserve),
        sinks=[MqttSink.name],
    )


async def worker_fill(args: argparse.Namespace) -> None:
    """Fill the Store with ``--backlog`` telemetry rows while no sink runs, then close it."""
    from gateway.store.codec import encode

    store = await open_store(Path(args.tmp), args.port)
    try:
        records = make_records(args.backlog)
        body = sum(len(encode(r)) for r in records) / len(records)
        t_fill = time.monotonic()
        for first in range(0, len(records), 10_000):  # Store.add drops telemetry past 50,000
            for rec in records[first : first + 10_000]:
                store.add(rec)
            await store.flush()
        fill_s = time.monotonic() - t_fill
    finally:
        await store.close()
    emit_result({"body_bytes": body, "fill_s": fill_s, "max_rss_mib": max_rss_mib()})


async def worker_drain(args: argparse.Namespace, sink_class: type[MqttSink] | None = None) -> None:
    """Open the filled Store as a restarted gateway would; time ``MqttSink`` draining it.

    ``sink_class`` (bench/drain_variants.py) replaces ``MqttSink`` by a variant of it.
    """
    from gateway.core.clock import SystemClock
    from gateway.core.contract import Identity
    from gateway.ops.logs import setup
    from gateway.sinks.mqtt import MqttSink

    setup("WARNING", json_lines=False)
    tmp = Path(args.tmp)
    cfg = gateway_config(tmp, args.port)
    rss_start = max_rss_mib()
    store = await open_store(tmp, args.port)
    try:
        rows = sum((await store.count_rows()).values())
        rss_open = max_rss_mib()
        ident = Identity(cfg.upstream.mqtt.topic_root, SITE, GATEWAY)
        sink = (sink_class or MqttSink)(cfg.upstream.mqtt, ident, store, SystemClock())
        profiler = None
        if args.cprofile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        cpu0 = cpu_seconds()
        t0 = time.monotonic()
        task = asyncio.create_task(sink.run(), name="sink")
        # The store has no "cursor moved" event; a 5 ms poll is far below the 0.2 s ack period.
        while store.backlog(sink.name) > 0 and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        t1 = time.monotonic()
        cpu = cpu_seconds() - cpu0
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.cprofile)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        emit_result(
            {
                "rows": rows,
                "t0": t0,
                "t_acked": t1,
                "published": sink.published,
                "reconnects": sink.reconnects,
                "backlog_end": store.backlog(sink.name),
                "cpu_s": cpu,
                "rss_start_mib": rss_start,
                "rss_filled_mib": rss_open,
                "max_rss_mib": max_rss_mib(),
            }
        )
    finally:
        await store.close()


# -- worker: raw paho ---------------------------------------------------------------------------


def worker_raw(args: argparse.Namespace) -> None:
    """paho-mqtt QoS 1, paho keeping 100 in flight; wait for every ``on_publish``.

    paho queues what is above its in-flight window, but its message ids are 16 bits: queueing
    all 100,000 at once reuses ids and loses acks. So the publishing thread keeps at most
    ``QUEUE_HIGH`` messages unacknowledged (in flight + queued in paho), refilling at
    ``QUEUE_LOW``; the window on the wire stays ``max_inflight_messages_set(100)``.
    """
    from paho.mqtt.client import Client, ConnectFlags
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

    rss_start = max_rss_mib()
    messages = rendered(make_records(args.backlog))
    body = sum(len(p) for _, p in messages) / len(messages)
    rss_built = max_rss_mib()
    connected = threading.Event()
    done = threading.Event()
    room = threading.Event()
    published = acked = last = 0
    total = len(messages)

    def on_connect(
        _c: Client, _u: Any, _f: ConnectFlags, _rc: ReasonCode, _p: Properties | None
    ) -> None:
        connected.set()

    def on_publish(_c: Client, _u: Any, _mid: int, _rc: ReasonCode, _p: Properties) -> None:
        nonlocal acked
        acked += 1
        if published - acked <= QUEUE_LOW:
            room.set()
        if acked == total:
            done.set()

    client = Client(CallbackAPIVersion.VERSION2, client_id="bench-raw", clean_session=True)
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)  # 0 = unbounded: paho holds what is above the window
    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect(HOST, args.port, keepalive=60)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise SystemExit("raw publisher: no CONNACK within 10 s")
        cpu0 = cpu_seconds()
        t0 = time.monotonic()
        for topic, payload in messages:
            if published - acked >= QUEUE_HIGH:
                room.clear()
                if published - acked >= QUEUE_HIGH and not room.wait(30):
                    raise SystemExit(f"raw publisher: stuck at {acked} of {total} acknowledged")
            client.publish(topic, payload, qos=1)
            published += 1
        t_queued = time.monotonic()
        while not done.wait(30):
            if acked == last:
                raise SystemExit(f"raw publisher: stuck at {acked} of {total} acknowledged")
            last = acked
        t1 = time.monotonic()
        cpu = cpu_seconds() - cpu0
    finally:
        client.disconnect()
        client.loop_stop()
    emit_result(
        {
            "payload_bytes": body,
            "t0": t0,
            "t_queued": t_queued,
            "t_acked": t1,
            "published": acked,
            "cpu_s": cpu,
            "rss_start_mib": rss_start,
            "rss_filled_mib": rss_built,
            "max_rss_mib": max_rss_mib(),
        }
    )


async def worker_aioraw(args: argparse.Namespace) -> None:
    """aiomqtt QoS 1 with 100 publishes in flight (one task each, as MqttSink does); no store."""
    import aiomqtt

    rss_start = max_rss_mib()
    messages = rendered(make_records(args.backlog))
    body = sum(len(p) for _, p in messages) / len(messages)
    rss_built = max_rss_mib()
    window = asyncio.Semaphore(100)

    async def publish(client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        try:
            await client.publish(topic, payload, qos=1)
        finally:
            window.release()

    client = aiomqtt.Client(HOST, args.port, identifier="bench-aioraw", max_inflight_messages=100)
    client.pending_calls_threshold = 10_000
    async with client:
        cpu0 = cpu_seconds()
        t0 = time.monotonic()
        async with asyncio.TaskGroup() as tg:
            for topic, payload in messages:
                await window.acquire()
                tg.create_task(publish(client, topic, payload))
        t1 = time.monotonic()
        cpu = cpu_seconds() - cpu0
    emit_result(
        {
            "payload_bytes": body,
            "t0": t0,
            "t_acked": t1,
            "published": len(messages),
            "cpu_s": cpu,
            "rss_start_mib": rss_start,
            "rss_filled_mib": rss_built,
            "max_rss_mib": max_rss_mib(),
        }
    )


# -- orchestration: processes -------------------------------------------------------------------


class Child:
    """A worker subprocess: stdin to stop it, stdout lines read by a thread into a queue."""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def expect(self, prefix: str, timeout: float) -> str:
        """The rest of the next stdout line starting with ``prefix``; other lines are echoed."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(0.0, left))
            except queue.Empty:
                raise TimeoutError(f"{self.name}: no {prefix!r} line within {timeout} s") from None
            if line is None:
                raise RuntimeError(f"{self.name} exited ({self.proc.wait()}) before {prefix!r}")
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
            print(f"  [{self.name}] {line}")

    def result(self, timeout: float) -> dict[str, Any]:
        """The worker's ``RESULT`` line as a dict."""
        parsed: dict[str, Any] = json.loads(self.expect("RESULT", timeout))
        return parsed

    def close_stdin(self) -> None:
        """Tell a long-lived worker to finish."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Close stdin, wait; SIGTERM, then SIGKILL, by PID."""
        self.close_stdin()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Broker:
    """A mosquitto on a free loopback port that never drops a QoS 1 message for a slow client."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        """Start and wait until the listener accepts connections."""
        user = pwd.getpwuid(os.geteuid()).pw_name  # root would otherwise drop to "mosquitto"
        self.conf.write_text(
            "\n".join(
                [
                    "allow_anonymous true",
                    "persistence false",
                    f"user {user}",
                    "max_queued_messages 1000000",  # default 1000 drops QoS 1 (LIBRARIES §5a)
                    "max_queued_bytes 0",
                    "max_inflight_messages 1000",
                    "max_inflight_bytes 0",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    f"listener {self.port} {HOST}",
                ]
            )
            + "\n"
        )
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_path.read_text()[-1000:]}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.2):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto not listening on {self.port} after 10 s")
            time.sleep(0.02)

    def peak_rss_mib(self) -> float:
        return proc_status_mib(self.proc.pid, "VmHWM") if self.proc else math.nan

    def cpu_s(self) -> float:
        return proc_cpu_seconds(self.proc.pid) if self.proc else math.nan

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after 5 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (``/proc/stat``: all but idle and iowait)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK


class CpuSampler:
    """Every 0.2 s: machine-wide busy CPU and the CPU time of each watched process.

    ``usage(t0, t1)`` turns the samples around a window into % of one core per process, for
    the machine, and for "other" (load on the machine that is not this benchmark: the cores
    are shared, so that load is part of every figure).
    """

    def __init__(self, period: float = 0.2) -> None:
        self.period = period
        self.pids: dict[str, int] = {"orchestrator": os.getpid()}
        self.samples: list[tuple[float, float, dict[str, float]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def watch(self, name: str, pid: int) -> None:
        with self._lock:
            self.pids[name] = pid
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()

    def sample(self) -> None:
        with self._lock:
            last = self.samples[-1][2] if self.samples else {}
            cpu = {}
            for name, pid in self.pids.items():
                value = proc_cpu_seconds(pid)
                cpu[name] = last.get(name, math.nan) if math.isnan(value) else value
            self.samples.append((time.monotonic(), machine_busy_seconds(), cpu))

    def usage(self, t0: float, t1: float) -> dict[str, float]:
        """% of one core per watched process, ``machine`` and ``other``, between t0 and t1."""
        with self._lock:
            before = [s for s in self.samples if s[0] <= t0] or self.samples[:1]
            after = [s for s in self.samples if s[0] >= t1] or self.samples[-1:]
        (m0, busy0, cpu0), (m1, busy1, cpu1) = before[-1], after[0]
        span = max(m1 - m0, 1e-9)
        out = {}
        for name, end in cpu1.items():
            start = cpu0.get(name, 0.0)  # started inside the window: from 0
            out[name] = 100 * (end - (0.0 if math.isnan(start) else start)) / span
        out["machine"] = 100 * (busy1 - busy0) / span
        out["other"] = out["machine"] - sum(v for k, v in out.items() if k != "machine")
        return out


def usage_lines(use: dict[str, float], names: Sequence[str], seconds: float, n: int) -> str:
    """CPU per process (% of one core, and µs per message: steadier than rates under load)."""
    ours = ", ".join(f"{name} {use.get(name, math.nan):.0f}%" for name in names)
    per = ", ".join(f"{name} {cpu_per_msg_us(use, name, seconds, n):.0f}" for name in names)
    cores = os.cpu_count() or 1
    return (
        f"  CPU, % of one core: {ours}; machine {use['machine']:.0f}% of {100 * cores}%, "
        f"of which other processes {max(0.0, use['other']):.0f}%\n"
        f"  CPU µs per message: {per}"
    )


def cpu_per_msg_us(use: dict[str, float], name: str, seconds: float, n: int) -> float:
    return 1e6 * use.get(name, math.nan) / 100 * seconds / n if n else math.nan


def first_child(pid: int, timeout: float) -> int:
    """The PID of the first child of ``pid`` (``pid`` itself if none appears in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            if children:
                return int(children[0])
        time.sleep(0.01)
    return pid


def worker_argv(kind: str, *extra: str) -> list[str]:
    return [sys.executable, str(HERE), "--worker", kind, *extra]


@contextlib.contextmanager
def peers(
    tmp: Path, sub_args: Sequence[str], cpu: CpuSampler
) -> Iterator[tuple[Broker, Child, Callable[[Child], None]]]:
    """A fresh broker and subscriber; children registered through the callback are stopped too."""
    broker = Broker(tmp)
    children: list[Child] = []

    def own(child: Child) -> None:
        children.append(child)
        cpu.watch(child.name, child.proc.pid)

    try:
        broker.start()
        assert broker.proc is not None
        cpu.watch("broker", broker.proc.pid)
        sub = Child(
            "subscriber",
            worker_argv("sub", "--port", str(broker.port), "--filter", TELEMETRY_FILTER, *sub_args),
        )
        own(sub)
        sub.expect("READY", 15)
        yield broker, sub, own
    finally:
        for child in reversed(children):
            child.stop()
        broker.stop()


def read_sub(sub: Child, out: Path) -> dict[str, Any]:
    """Stop the subscriber and load what it recorded."""
    sub.stop(30)
    data: dict[str, Any] = json.loads(out.read_text())
    return data


# -- orchestration: phases ----------------------------------------------------------------------


def phase_e2e(args: argparse.Namespace, tmp: Path, cpu: CpuSampler) -> dict[str, Any]:
    out = tmp / "sub.json"
    with peers(tmp, ["--keep", "--out", str(out)], cpu) as (broker, sub, own):
        sim_args = ["--devices", str(args.devices), "--per-port", str(args.per_port)]
        sim = Child("simulator", worker_argv("sim", *sim_args, "--profile", args.profile))
        own(sim)
        ports = sim.expect("PORTS", 60)
        gw_args = [
            *("--port", str(broker.port), "--modbus-ports", ports, *sim_args),
            *("--profile", args.profile, "--interval", str(args.interval)),
            *("--warmup", str(args.warmup), "--window", str(args.window), "--tmp", str(tmp)),
        ]
        gw = Child("gateway", worker_argv("e2e", *gw_args))
        own(gw)
        res = gw.result(args.warmup + args.window + 90)
        sim.close_stdin()
        sim_res = sim.result(30)
        res["broker_rss_mib"] = broker.peak_rss_mib()
        recv = read_sub(sub, out)
    t0, t1 = res["t0"], res["t1"]
    inside = [i for i, t in enumerate(recv["arrivals"]) if t0 <= t < t1]
    res["msgs"] = len(inside)
    res["points"] = sum(recv["points"][i] for i in inside)
    res["e2e_p50_ms"] = pct([recv["latency"][i] for i in inside], 50) * 1000
    res["e2e_p99_ms"] = pct([recv["latency"][i] for i in inside], 99) * 1000
    res["received_total"] = len(recv["arrivals"])
    res["unique_total"] = recv["unique"]
    res["sub_rss_mib"] = recv["max_rss_mib"]
    res["sim_rss_mib"] = sim_res["max_rss_mib"]
    res["cpu"] = cpu.usage(t0, t1)
    return res


def phase_publish(
    args: argparse.Namespace,
    tmp: Path,
    cpu: CpuSampler,
    kind: str,
    worker: Callable[..., list[str]] | None = None,
) -> dict[str, Any]:
    """``drain``, ``raw`` or ``aioraw``: ``--backlog`` messages to a fresh broker and subscriber.

    ``worker(*args)`` builds the measured worker's command line (default: this script's).
    """
    out = tmp / "sub.json"
    extra = ["--cprofile", args.profile_drain] if kind == "drain" and args.profile_drain else []
    sub_args = ["--expect", str(args.backlog), "--out", str(out)]
    with peers(tmp, sub_args, cpu) as (broker, sub, own):
        worker_args = [
            "--port",
            str(broker.port),
            "--backlog",
            str(args.backlog),
            "--tmp",
            str(tmp),
        ]
        fill: dict[str, Any] = {}
        if kind == "drain":  # its own process, so the drain's RSS is the drain's alone
            filler = Child("fill", worker_argv("fill", *worker_args))
            own(filler)
            fill = filler.result(300)
        argv = (worker or functools.partial(worker_argv, kind))(*worker_args, *extra)
        if kind == "drain" and args.spy_drain:  # py-spy starts the worker and samples it
            spy = os.environ.get("PY_SPY") or shutil.which("py-spy") or "py-spy"
            argv = [spy, "record", "--format", "raw", "--rate", "250", "--threads",
                    "-o", args.spy_drain, "--", *argv]  # fmt: skip
        measured = Child(kind, argv)
        own(measured)
        if argv[0] != sys.executable:  # under py-spy: watch the Python child as the worker
            cpu.watch("py-spy", measured.proc.pid)
            cpu.watch(kind, first_child(measured.proc.pid, 5.0))
        res = measured.result(600)
        res.update({f"fill_{k}": v for k, v in fill.items()})
        res["sub_done"] = float(sub.expect("DONE", 120))
        res["broker_rss_mib"] = broker.peak_rss_mib()
        recv = read_sub(sub, out)
    arrivals: list[float] = recv["arrivals"]
    res["received"] = len(arrivals)
    res["sub_first"] = arrivals[0]
    res["sub_last"] = max(arrivals)
    res["sub_rss_mib"] = recv["max_rss_mib"]
    res["end"] = max(res["t_acked"], res["sub_last"])
    res["seconds"] = res["end"] - res["t0"]
    res["rate"] = args.backlog / res["seconds"]
    res["sub_rate"] = (len(arrivals) - 1) / (res["sub_last"] - res["sub_first"])
    res["cpu"] = cpu.usage(res["t0"], res["end"])
    return res


# -- orchestration: report ----------------------------------------------------------------------


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def machine_lines() -> list[str]:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        first = subprocess.run(
            [MOSQUITTO, "-h"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.splitlines()[0]
        mosq = first.removeprefix("mosquitto version ").strip()
    except (OSError, IndexError, subprocess.TimeoutExpired):
        mosq = "?"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"machine: {platform.machine()}, nproc {os.cpu_count()}, {cpu}; {platform.platform()}",
        f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, mosquitto {mosq}, "
        f"paho-mqtt {version('paho-mqtt')}, aiomqtt {version('aiomqtt')}, "
        f"pymodbus {version('pymodbus')}",
        f"load average at start: {load} (loopback only; ±25% run to run)",
    ]


def report_e2e(args: argparse.Namespace, r: dict[str, Any]) -> None:
    w = r["window_s"]
    offered = args.devices / args.interval
    print(
        f"  devices {args.devices} ({args.profile}, {args.per_port} per Modbus TCP port), "
        f"poll interval {args.interval} s -> offered {offered:.0f} polls/s; "
        f"window {w:.1f} s after {args.warmup} s warm-up"
    )
    print(
        f"  readings/s end to end: {r['points'] / w:,.0f}   telemetry msg/s: {r['msgs'] / w:,.1f}"
        f"   polls/s: {r['polls'] / w:,.1f}   published/s (sink): {r['published'] / w:,.1f}"
    )
    print(
        f"  poll latency p50 {r['poll_p50_ms']:.2f} ms, p99 {r['poll_p99_ms']:.2f} ms, "
        f"max {r['poll_max_ms']:.2f} ms (incl. waiting for the shared bus)"
    )
    print(
        f"  poll -> subscriber latency p50 {r['e2e_p50_ms']:.0f} ms, p99 {r['e2e_p99_ms']:.0f} ms "
        f"(includes the store's 1 s commit interval)"
    )
    print(
        f"  overruns in window {r['overruns']} (total {r['overruns_total']}), failed polls "
        f"{r['failed_polls']}, backlog at window end {r['backlog_end']}, "
        f"received {r['received_total']} ({r['unique_total']} unique)"
    )
    stop = f"{r['stop_s']:.2f} s" if r["stop_s"] is not None else f"did NOT return in {STOP_WAIT} s"
    print(f"  Runtime shutdown after stop: {stop}")
    if r["swallowed"]:
        print(
            f"  polls that returned normally while their task was being cancelled "
            f"(cancellation lost, Python 3.11 wait_for): {', '.join(r['swallowed'])}"
        )
    names = ["gateway", "simulator", "broker", "subscriber"]
    print(usage_lines(r["cpu"], names, w, r["msgs"]))
    print(
        f"  peak RSS MiB: gateway {r['max_rss_mib']:.1f} (after imports/config "
        f"{r['rss_start_mib']:.1f}), broker {r['broker_rss_mib']:.1f}, "
        f"simulator {r['sim_rss_mib']:.1f}, subscriber {r['sub_rss_mib']:.1f}"
    )


def report_publish(kind: str, r: dict[str, Any], n: int) -> None:
    after = "store opened" if kind == "drain" else "payloads built"
    secs = r["seconds"]
    lost = n - r["received"]
    print(
        f"  {n:,} msgs in {secs:.2f} s = {r['rate']:,.0f} msg/s (start -> acked and all at the "
        f"subscriber); subscriber first->last {r['sub_rate']:,.0f} msg/s"
    )
    if kind == "drain":
        print(
            f"  fill (separate process, peak RSS {r['fill_max_rss_mib']:.1f} MiB): {r['rows']:,} "
            f"rows, body {r['fill_body_bytes']:.0f} B avg, {r['fill_fill_s']:.2f} s "
            f"({r['rows'] / r['fill_fill_s']:,.0f} rows/s, 10,000 per commit)"
        )
        print(
            f"  backlog 0 after {r['t_acked'] - r['t0']:.2f} s, subscriber complete after "
            f"{r['sub_last'] - r['t0']:.2f} s; reconnects {r['reconnects']}"
        )
    else:
        print(
            f"  payload {r['payload_bytes']:.0f} B avg; all acked after "
            f"{r['t_acked'] - r['t0']:.2f} s, subscriber complete after "
            f"{r['sub_last'] - r['t0']:.2f} s"
        )
    print(f"  received {r['received']:,} ({'none' if lost == 0 else lost} missing)")
    print(usage_lines(r["cpu"], [kind, "broker", "subscriber"], secs, n))
    print(
        f"  peak RSS MiB: {kind} process {r['max_rss_mib']:.1f} (after imports "
        f"{r['rss_start_mib']:.1f}, {after} {r['rss_filled_mib']:.1f}), broker "
        f"{r['broker_rss_mib']:.1f}, subscriber {r['sub_rss_mib']:.1f}"
    )


def orchestrate(args: argparse.Namespace) -> int:
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases {sorted(unknown)}; choose from {PHASES}")
    print("command: " + shlex.join(sys.orig_argv))
    for line in machine_lines():
        print(line)
    print(f"orchestrator RSS {max_rss_mib():.1f} MiB (each phase's gateway side is a subprocess)")
    results: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    titles = {
        "e2e": "a. end to end: Modbus TCP simulator -> Runtime -> mosquitto -> subscriber",
        "drain": f"b. drain of a {args.backlog:,}-message telemetry backlog by MqttSink",
        "raw": f"c. raw paho-mqtt QoS 1, {args.backlog:,} messages, 100 in flight",
        "aioraw": f"c2. raw aiomqtt QoS 1, {args.backlog:,} messages, 100 in flight (tasks)",
    }
    for phase in phases:
        print(f"\n{titles[phase]}", flush=True)
        t = time.monotonic()
        with (
            tempfile.TemporaryDirectory(prefix=f"cgw-bench-{phase}-") as d,
            CpuSampler() as cpu,
        ):
            if phase == "e2e":
                results[phase] = phase_e2e(args, Path(d), cpu)
                report_e2e(args, results[phase])
            else:
                results[phase] = phase_publish(args, Path(d), cpu, phase)
                report_publish(phase, results[phase], args.backlog)
        print(f"  (phase took {time.monotonic() - t:.0f} s)", flush=True)
    if "drain" in results and "raw" in results:
        drain, raw = results["drain"]["rate"], results["raw"]["rate"]
        print(
            f"\ndrain / raw paho = {drain:,.0f} / {raw:,.0f} = {100 * drain / raw:.0f}% "
            f"(goal >= 60%); subscriber-side rates: "
            f"{100 * results['drain']['sub_rate'] / results['raw']['sub_rate']:.0f}%"
        )
    if "drain" in results and "raw" in results:
        cost = [
            cpu_per_msg_us(results[k]["cpu"], k, results[k]["seconds"], args.backlog)
            for k in ("drain", "raw")
        ]
        print(
            f"publisher CPU per message: drain {cost[0]:.0f} µs, raw paho {cost[1]:.0f} µs "
            f"(raw/drain {100 * cost[1] / cost[0]:.0f}%)"
        )
    if "drain" in results and "aioraw" in results:
        drain, aio = results["drain"]["rate"], results["aioraw"]["rate"]
        print(f"drain / raw aiomqtt = {drain:,.0f} / {aio:,.0f} = {100 * drain / aio:.0f}%")
    if args.profile_drain and "drain" in results:
        print(f"cProfile of the drain written to {args.profile_drain}; top functions:")
        import pstats

        pstats.Stats(args.profile_drain).sort_stats("tottime").print_stats(25)
    print(f"total {time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--devices", type=int, default=50, help="simulated Modbus devices (e2e)")
    ap.add_argument("--per-port", type=int, default=10, help="devices per simulator TCP port")
    ap.add_argument("--profile", default="env-station-rs485", help="device profile (e2e)")
    ap.add_argument("--interval", type=float, default=0.2, help="poll interval, s (e2e)")
    ap.add_argument("--warmup", type=float, default=5.0, help="s before the window (e2e)")
    ap.add_argument("--window", type=float, default=30.0, help="measuring window, s (e2e)")
    ap.add_argument("--backlog", type=int, default=100_000, help="messages (drain, raw)")
    ap.add_argument(
        "--phases", default="e2e,drain,raw", help=f"comma-separated subset of {','.join(PHASES)}"
    )
    ap.add_argument("--profile-drain", metavar="FILE", help="cProfile the drain into FILE")
    ap.add_argument(
        "--spy-drain",
        metavar="FILE",
        help="sample the drain worker with py-spy (PATH or $PY_SPY) into FILE, collapsed stacks",
    )
    ap.add_argument("--json", metavar="FILE", help="also write all figures as JSON")
    # internal: how the orchestrator starts its workers
    ap.add_argument(
        "--worker", choices=["sim", "sub", "e2e", "fill", *PHASES[1:]], help=argparse.SUPPRESS
    )
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--modbus-ports", help=argparse.SUPPRESS)
    ap.add_argument("--filter", help=argparse.SUPPRESS)
    ap.add_argument("--expect", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    ap.add_argument("--cprofile", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workers: dict[str, Callable[[argparse.Namespace], Awaitable[None] | None]] = {
        "sim": worker_sim,
        "sub": worker_sub,
        "e2e": worker_e2e,
        "fill": worker_fill,
        "drain": worker_drain,
        "raw": worker_raw,
        "aioraw": worker_aioraw,
    }
    if args.worker is None:
        return orchestrate(args)
    outcome = workers[args.worker](args)
    if outcome is not None:
        asyncio.run(_awaited(outcome))
    return 0


async def _awaited(aw: Awaitable[None]) -> None:
    await aw


if __name__ == "__main__":
    sys.exit(main())
