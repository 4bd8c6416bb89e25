"""The workers of ``throughput.py``: each runs as ``throughput.py --worker <kind>``.

Contract: a worker prints its protocol lines (``READY``, ``DONE <t>``, ``RESULT {json}``) on
stdout and nothing else there; long-lived ones stop when stdin closes.
- ``sub``: paho QoS 1 subscriber on ``--filter``; ``DONE`` at ``--expect`` messages; writes
  arrivals (and, with ``--keep``, points, unique keys and latency) to ``--out`` at the end.
- ``e2e``: the real ``Runtime`` polling the simulator's ``--modbus-ports``; figures over a
  ``--window`` after ``--warmup``, then how long the runtime takes to stop.
- ``raw`` / ``aioraw``: the backlog's payloads published with plain paho / aiomqtt, QoS 1,
  100 in flight: the ceilings the drain is compared with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.backlog import make_records, rendered
from harness.measure import cpu_seconds, max_rss_mib, pct
from harness.peers import gateway_config, paho_subscriber
from harness.procs import HOST, emit_result

if TYPE_CHECKING:
    from gateway.core.messages import Sample

STOP_WAIT = 10.0  # s the e2e gateway gets to return from Runtime.run after stop is set
QUEUE_HIGH, QUEUE_LOW = 1000, 500  # raw paho: messages handed to paho and not yet acknowledged

# -- worker: subscriber -------------------------------------------------------------------------


def worker_sub(args: argparse.Namespace) -> None:
    """A paho QoS 1 subscriber counting telemetry messages; results go to ``--out`` at stdin EOF.

    Prints ``READY`` once subscribed and ``DONE <monotonic>`` when ``--expect`` messages are in.
    The callback only appends a timestamp (and, with ``--keep``, the payload), so it costs as
    little as a Python subscriber can.
    """
    from paho.mqtt.client import MQTTMessage

    arrivals: list[float] = []
    walls: list[float] = []
    payloads: list[bytes | bytearray] = []
    expect: int = args.expect
    keep: bool = args.keep

    def on_message(msg: MQTTMessage) -> None:
        arrivals.append(time.monotonic())
        if keep:
            walls.append(time.time())
            payloads.append(msg.payload)
        if len(arrivals) == expect:
            print(f"DONE {arrivals[-1]}", flush=True)

    paho_subscriber(args.port, [(args.filter, 1)], on_message)
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
