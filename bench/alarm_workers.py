"""The workers of ``alarm_latency.py``: each runs as ``alarm_latency.py --worker <kind>``.

Contract: a worker prints its protocol lines (``READY``, ``STARTED``/``ALARMS``/``DRAINED <t>``,
``RESULT {json}``) on stdout; long-lived ones stop when stdin closes.
- ``subscriber``: paho QoS 1 on the alarm (and, unless ``--alarms-only``, telemetry) topics.
- ``presser``: ``--presses`` button presses, one QoS 1 message each, on a fixed schedule.
- ``gateway``: the real ``Runtime`` with the button config; ``Trace`` wraps a few methods in
  that process only (gateway code is unchanged) to timestamp each alarm along its path.
- ``fill``: the telemetry backlog (``harness.backlog.worker_fill``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.backlog import worker_fill as fill_store
from harness.measure import max_rss_mib
from harness.peers import gateway_config, paho_subscriber
from harness.procs import HOST, PREFIX, ROOT, emit_result, stdin_eof

BUTTON_FILTER = "bench/btn/+/event"
STALL = 0.002  # s: event-loop lateness the gateway records (a 5 ms tick, see loop_lag)


def device_name(i: int) -> str:
    return f"b{i:04d}"


# -- worker: subscriber -------------------------------------------------------------------------


def worker_sub(args: argparse.Namespace) -> None:
    """paho QoS 1 on the alarm and telemetry topics; result (``RESULT``) at stdin EOF.

    Prints ``READY`` once subscribed, ``STARTED <t>`` at the ``--start-after``-th telemetry
    message, ``ALARMS <t>`` once ``--expect`` distinct "raised" alarms are in and ``DRAINED
    <t>`` once ``--backlog`` telemetry messages are in. With ``--alarms-only`` it subscribes to
    the alarm topics alone: a consumer whose alarms never queue behind telemetry at the broker.
    """
    from paho.mqtt.client import MQTTMessage

    raised: dict[str, tuple[float, int]] = {}  # device -> (arrival, telemetry seen before it)
    duplicates = other_states = 0
    telemetry = 0
    first_tele = last_tele = math.nan
    start_after: int = args.start_after
    expect: int = args.expect
    backlog: int = args.backlog

    def on_message(msg: MQTTMessage) -> None:
        nonlocal duplicates, other_states, telemetry, first_tele, last_tele
        now = time.monotonic()
        if "/telemetry/" in msg.topic:
            telemetry += 1
            last_tele = now
            if telemetry == 1:
                first_tele = now
            if telemetry == start_after:
                print(f"STARTED {now}", flush=True)
            if telemetry == backlog:
                print(f"DRAINED {now}", flush=True)
            return
        doc = json.loads(msg.payload)
        if doc["state"] != "raised":
            other_states += 1
        elif doc["device"] in raised:
            duplicates += 1  # at least once: a redelivery after a reconnect
        else:
            raised[doc["device"]] = (now, telemetry)
            if len(raised) == expect:
                print(f"ALARMS {now}", flush=True)

    topics = [(f"{PREFIX}/alarm/+", 1), (f"{PREFIX}/telemetry/#", 1)]
    paho_subscriber(args.port, topics[:1] if args.alarms_only else topics, on_message)
    emit_result(
        {
            "raised": raised,
            "duplicates": duplicates,
            "other_states": other_states,
            "telemetry": telemetry,
            "first_tele": first_tele,
            "last_tele": last_tele,
            "max_rss_mib": max_rss_mib(),
        }
    )


# -- worker: the button presses -----------------------------------------------------------------


def worker_press(args: argparse.Namespace) -> None:
    """Connect, print ``READY``, wait for a line on stdin, press ``--presses`` buttons.

    One press every ``--spacing`` s on an absolute schedule; each is a QoS 1 message on a
    topic of its own with a distinct event id. ``RESULT`` once every PUBACK is in.
    """
    from paho.mqtt.client import Client, ConnectFlags
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

    connected = threading.Event()
    done = threading.Event()
    presses: int = args.presses
    acked: dict[int, float] = {}  # mid -> PUBACK time
    lock = threading.Lock()

    def on_connect(
        _c: Client, _u: Any, _f: ConnectFlags, _rc: ReasonCode, _p: Properties | None
    ) -> None:
        connected.set()

    def on_publish(_c: Client, _u: Any, mid: int, _rc: ReasonCode, _p: Properties) -> None:
        with lock:
            acked[mid] = time.monotonic()
            if len(acked) == presses:
                done.set()

    client = Client(CallbackAPIVersion.VERSION2, client_id="bench-presser", clean_session=True)
    client.max_inflight_messages_set(100)
    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect(HOST, args.port, keepalive=60)
    client.loop_start()
    sends: list[tuple[str, float, int]] = []
    try:
        if not connected.wait(10):
            raise SystemExit("presser: no CONNACK within 10 s")
        print("READY", flush=True)
        if not sys.stdin.readline():  # stdin closed before "go": the orchestrator gave up
            return
        t0 = time.monotonic() + 0.005
        for i in range(1, presses + 1):
            delay = t0 + (i - 1) * args.spacing - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            device = device_name(i)
            payload = json.dumps({"id": f"ev-{i}-{os.getpid()}", "evt": "sos", "state": "pressed"})
            now = time.monotonic()
            info = client.publish(f"bench/btn/{device}/event", payload, qos=1)
            sends.append((device, now, info.mid))
        if not done.wait(30):
            raise SystemExit(f"presser: {len(acked)} of {presses} PUBACKs after 30 s")
    finally:
        client.disconnect()
        client.loop_stop()
    with lock:
        out = {device: (t, acked.get(mid, math.nan)) for device, t, mid in sends}
    emit_result({"sends": out, "max_rss_mib": max_rss_mib()})


# -- worker: the gateway ------------------------------------------------------------------------


class Trace:
    """Timestamps along each alarm's path inside the gateway process.

    Class-level wrappers, installed before ``Runtime`` is built, in the gateway worker only:
    ``AlarmEngine.contact`` (the button event reaches the engine), ``AlarmEngine._commit``
    (the "raised" transition and its message committed: write lock, store thread, fsync),
    ``Ledger.insert``/``ack``/``select`` (what the store thread does and for how long),
    ``aiomqtt.Client.publish`` (the sink hands the alarm to aiomqtt; PUBACK back),
    ``DedupFile.save`` (the button dedup file, written on the event loop with two fsyncs) and
    ``MqttButtons._subscribe`` (readiness). Each wrapper costs a ``time.monotonic()`` and a dict
    store, except that alarm messages are JSON-decoded once.
    """

    def __init__(self) -> None:
        self.contact: dict[str, float] = {}
        self.commit: dict[str, tuple[float, float]] = {}
        self.insert: dict[str, tuple[float, float]] = {}
        self.publish: dict[str, tuple[float, float, int]] = {}  # t0, PUBACK, telemetry sent
        self.store_ops: list[tuple[str, float, float, int]] = []  # kind, t0, t1, rows
        self.dedup_saves: list[tuple[float, float]] = []
        self.stalls: list[tuple[float, float]] = []  # loop time at wake-up, lateness
        self.telemetry_sent = 0  # telemetry handed to aiomqtt
        self.sent_curve: list[tuple[float, int]] = []  # (time, telemetry_sent) every 100
        self.subscribed = False

    def install(self) -> None:
        import aiomqtt

        from drivers.mqtt.buttons import MqttButtons
        from gateway.alarms.engine import AlarmEngine
        from gateway.core.messages import Lane
        from gateway.pipeline.dedup import DedupFile
        from gateway.store.ledger import Ledger

        mono = time.monotonic
        trace = self

        def patch(owner: type, name: str, wrap: Callable[[Any], Any]) -> None:
            setattr(owner, name, wrap(getattr(owner, name)))

        def contact(orig: Any) -> Any:
            def wrapper(engine: Any, event: Any) -> None:
                trace.contact.setdefault(event.device, mono())
                orig(engine, event)

            return wrapper

        def commit(orig: Any) -> Any:
            async def wrapper(engine: Any, transitions: Any) -> None:
                raised = [t.alarm.device for t in transitions if t.alarm.state.value == "raised"]
                t0 = mono()
                await orig(engine, transitions)
                t1 = mono()
                for device in raised:
                    trace.commit.setdefault(device, (t0, t1))

            return wrapper

        def insert(orig: Any) -> Any:
            def wrapper(store: Any, batch: Any, also: Any = None) -> Any:
                raised = [
                    r.device
                    for r, _ in batch
                    if r.lane is Lane.ALARM and r.fields["state"] == "raised"
                ]
                t0 = mono()
                try:
                    return orig(store, batch, also)
                finally:
                    t1 = mono()
                    trace.store_ops.append(("insert", t0, t1, len(batch)))
                    for device in raised:
                        trace.insert.setdefault(device, (t0, t1))

            return wrapper

        def timed(kind: str) -> Callable[[Any], Any]:
            def wrap(orig: Any) -> Any:
                def wrapper(*a: Any, **kw: Any) -> Any:
                    t0 = mono()
                    try:
                        return orig(*a, **kw)
                    finally:
                        trace.store_ops.append((kind, t0, mono(), 0))

                return wrapper

            return wrap

        def publish(orig: Any) -> Any:
            async def wrapper(
                client: Any, topic: str, payload: Any = None, *a: Any, **kw: Any
            ) -> None:
                device = ""
                if "/alarm/" in topic:
                    doc = json.loads(payload)
                    if doc["state"] == "raised":
                        device = doc["device"]
                sent, t0 = trace.telemetry_sent, mono()
                if "/telemetry/" in topic:
                    trace.telemetry_sent += 1
                    if trace.telemetry_sent % 100 == 0:
                        trace.sent_curve.append((t0, trace.telemetry_sent))
                await orig(client, topic, payload, *a, **kw)
                if device:
                    trace.publish.setdefault(device, (t0, mono(), sent))

            return wrapper

        def dedup_save(orig: Any) -> Any:
            def wrapper(*a: Any, **kw: Any) -> Any:
                t0 = mono()
                try:
                    return orig(*a, **kw)
                finally:
                    trace.dedup_saves.append((t0, mono()))

            return wrapper

        def subscribed(orig: Any) -> Any:
            async def wrapper(*a: Any, **kw: Any) -> None:
                trace.subscribed = True  # the session serves only once it is subscribed
                await orig(*a, **kw)

            return wrapper

        patch(AlarmEngine, "contact", contact)
        patch(AlarmEngine, "_commit", commit)
        patch(Ledger, "insert", insert)
        patch(Ledger, "ack", timed("ack"))
        patch(Ledger, "select", timed("select"))
        patch(aiomqtt.Client, "publish", publish)
        patch(DedupFile, "save", dedup_save)
        patch(MqttButtons, "_serve", subscribed)

    async def loop_lag(self, tick: float = 0.005) -> None:
        """Record every wake-up of a ``tick`` sleep that is more than ``STALL`` late."""
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(tick)
            late = time.monotonic() - t0 - tick
            if late > STALL:
                self.stalls.append((time.monotonic(), late))

    def result(self) -> dict[str, Any]:
        return {
            "contact": self.contact,
            "commit": self.commit,
            "insert": self.insert,
            "publish": self.publish,
            "store_ops": self.store_ops,
            "dedup_saves": self.dedup_saves,
            "stalls": self.stalls,
            "sent_curve": self.sent_curve,
        }


def gateway_extra(port: int, max_inflight: int | None) -> dict[str, Any]:
    """The button, the contact rule and generous storm control (presses are all new causes)."""
    upstream = {"host": HOST, "port": port, "topic_root": ROOT, "max_inflight": max_inflight}
    return {
        **({"upstream": {"mqtt": upstream}} if max_inflight else {}),
        "local_broker": {"host": HOST, "port": port},
        "devices": [
            {
                "kind": "mqtt_button",
                "id": "bench-buttons",
                "topic": BUTTON_FILTER,
                "device_from_topic": 2,
                "profile": "sos-state-json",
            }
        ],
        "alarms": {
            "rules": [{"kind": "contact", "id": "sos", "device": "*"}],
            "storm": {"per_device": 1000, "window": 1},
        },
    }


async def worker_gateway(args: argparse.Namespace) -> None:
    """The real ``Runtime`` with the button config; ``READY`` once subscribed and connected.

    Its log (JSON lines, WARNING and up: two lines per alarm) goes to ``gateway.log`` in the
    phase's temp dir, as it would go to journald. Stops when stdin closes.
    """
    tmp = Path(args.tmp)
    fd = os.open(tmp / "gateway.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    from gateway.ops.logs import setup
    from gateway.runtime.root import Runtime

    setup("WARNING", json_lines=True)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    trace = Trace()
    trace.install()
    cfg = gateway_config(tmp, args.port, gateway_extra(args.port, args.max_inflight))
    runtime = Runtime(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop), name="runtime")
    deadline = time.monotonic() + 60
    while not (trace.subscribed and runtime.sink is not None and runtime.sink.connected.is_set()):
        if task.done() or time.monotonic() > deadline:
            stop.set()
            await task  # raises what stopped it
            raise SystemExit("gateway: not subscribed and connected within 60 s")
        await asyncio.sleep(0.01)
    lag = asyncio.create_task(trace.loop_lag(), name="bench:lag")
    print("READY", flush=True)
    eof = asyncio.create_task(stdin_eof())
    await asyncio.wait([task, eof], return_when=asyncio.FIRST_COMPLETED)
    lag.cancel()
    stop.set()
    await asyncio.wait_for(task, 30)  # raises what the runtime raised
    eof.cancel()
    assert runtime.sink is not None
    emit_result(
        {
            **trace.result(),
            "published": runtime.sink.published,
            "reconnects": runtime.sink.reconnects,
            "max_rss_mib": max_rss_mib(),
        }
    )


async def worker_fill(args: argparse.Namespace) -> None:
    """throughput.py's filler: ``--backlog`` telemetry rows, 10,000 per commit, then closed."""
    await fill_store(args)
