"""Alarm latency benchmark: an MQTT button press to the alarm at an upstream subscriber.

    .venv/bin/python bench/alarm_latency.py [--presses 200] [--backlog 100000] [--spacing 0.02]

Two phases (see bench/README.md), each with a fresh mosquitto (the local broker the button
publishes to and the upstream broker at once, as in tests/e2e/test_alarms.py), a fresh store
and these processes, every one stopped by PID when the phase ends or fails:

``gateway``     the real ``Runtime`` (button subscriber, alarm engine, ``Store``, ``MqttSink``)
                with one ``mqtt_button`` on ``bench/btn/+/event`` (device from the topic,
                payload profile ``sos-state-json``) and one contact rule for every device.
``presser``     a paho client pressing ``--presses`` buttons ``--spacing`` s apart, QoS 1, each
                on a topic of its own (``bench/btn/b0001/event``, ...) with its own event id:
                every press is a new cause and so a new alarm.
``subscriber``  a paho QoS 1 subscriber to ``cgw/bench/gw1/alarm/+`` and ``.../telemetry/#``
                recording when each "raised" alarm arrives and how many telemetry messages
                had arrived by then.

``idle``     no backlog: presses start once the gateway is subscribed and connected.
``backlog``  the store is filled with ``--backlog`` telemetry messages (a separate process,
             before the gateway starts); presses start once the subscriber has seen
             ``--start-after`` of them, so the drain is under way.

Latency is press (``time.monotonic()`` just before the presser's ``publish``) to arrival at the
subscriber (``time.monotonic()`` first thing in ``on_message``): CLOCK_MONOTONIC is one clock
for every process on a Linux machine. The gateway process also timestamps each alarm along its
path (wrappers around a few methods, set up in that process only; gateway code is unchanged),
which splits the latency into stages. A second subscriber to the alarm topics alone shows
whether an alarm waited behind telemetry on the subscriber's connection.

Experiments (not defaults): ``--max-inflight N`` sets the gateway's ``upstream.mqtt.max_inflight``
(the bench config uses 100, as throughput.py does); ``--switch-interval S`` sets
``sys.setswitchinterval`` in the gateway process (how long the event loop may hold the GIL
while the store thread waits). Nothing here asserts a timing; it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import throughput as tp

HERE = Path(__file__).resolve()
HOST = tp.HOST
PREFIX = f"{tp.ROOT}/{tp.SITE}/{tp.GATEWAY}"
BUTTON_FILTER = "bench/btn/+/event"
STALL = 0.002  # s: event-loop lateness the gateway records (a 5 ms tick, see loop_lag)


# -- helpers ------------------------------------------------------------------------------------


def device_name(i: int) -> str:
    return f"b{i:04d}"


def ms(values: Sequence[float]) -> str:
    """``p50 / p90 / p99 / max`` of seconds, in ms."""
    if not values:
        return "n/a"
    return " / ".join(f"{1000 * tp.pct(values, p):.2f}" for p in (50, 90, 99, 100))


def fs_type(path: Path) -> str:
    """File system type of the mount holding ``path`` (from /proc/self/mounts)."""
    best, kind = "", "?"
    with contextlib.suppress(OSError), open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 3:
                continue
            mount = fields[1]
            inside = str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")
            if inside and len(mount) > len(best):
                best, kind = mount, fields[2]
    return f"{kind} on {best or '?'}"


def worker_argv(kind: str, *extra: str) -> list[str]:
    return [sys.executable, str(HERE), "--worker", kind, *extra]


# -- worker: subscriber -------------------------------------------------------------------------


def worker_sub(args: argparse.Namespace) -> None:
    """paho QoS 1 on the alarm and telemetry topics; result (``RESULT``) at stdin EOF.

    Prints ``READY`` once subscribed, ``STARTED <t>`` at the ``--start-after``-th telemetry
    message, ``ALARMS <t>`` once ``--expect`` distinct "raised" alarms are in and ``DRAINED
    <t>`` once ``--backlog`` telemetry messages are in. With ``--alarms-only`` it subscribes to
    the alarm topics alone: a consumer whose alarms never queue behind telemetry at the broker.
    """
    from paho.mqtt.client import Client, ConnectFlags, MQTTMessage
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

    ready = threading.Event()
    raised: dict[str, tuple[float, int]] = {}  # device -> (arrival, telemetry seen before it)
    duplicates = other_states = 0
    telemetry = 0
    first_tele = last_tele = math.nan
    start_after: int = args.start_after
    expect: int = args.expect
    backlog: int = args.backlog

    def on_connect(
        client: Client, _u: Any, _f: ConnectFlags, _rc: ReasonCode, _p: Properties | None
    ) -> None:
        topics = [(f"{PREFIX}/alarm/+", 1), (f"{PREFIX}/telemetry/#", 1)]
        client.subscribe(topics[:1] if args.alarms_only else topics)

    def on_subscribe(
        _c: Client, _u: Any, _mid: int, _rc: list[ReasonCode], _p: Properties | None
    ) -> None:
        ready.set()

    def on_message(_c: Client, _u: Any, msg: MQTTMessage) -> None:
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
    tp.emit_result(
        {
            "raised": raised,
            "duplicates": duplicates,
            "other_states": other_states,
            "telemetry": telemetry,
            "first_tele": first_tele,
            "last_tele": last_tele,
            "max_rss_mib": tp.max_rss_mib(),
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
    tp.emit_result({"sends": out, "max_rss_mib": tp.max_rss_mib()})


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
        from drivers.mqtt.dedup import DedupFile
        from gateway.alarms.engine import AlarmEngine
        from gateway.core.messages import Lane
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
                    for r in batch
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

        def subscribe(orig: Any) -> Any:
            async def wrapper(*a: Any, **kw: Any) -> None:
                await orig(*a, **kw)
                trace.subscribed = True

            return wrapper

        patch(AlarmEngine, "contact", contact)
        patch(AlarmEngine, "_commit", commit)
        patch(Ledger, "insert", insert)
        patch(Ledger, "ack", timed("ack"))
        patch(Ledger, "select", timed("select"))
        patch(aiomqtt.Client, "publish", publish)
        patch(DedupFile, "save", dedup_save)
        patch(MqttButtons, "_subscribe", subscribe)

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
    upstream = {"host": HOST, "port": port, "topic_root": tp.ROOT, "max_inflight": max_inflight}
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
    cfg = tp.gateway_config(tmp, args.port, gateway_extra(args.port, args.max_inflight))
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
    eof = asyncio.create_task(tp.stdin_eof())
    await asyncio.wait([task, eof], return_when=asyncio.FIRST_COMPLETED)
    lag.cancel()
    stop.set()
    await asyncio.wait_for(task, 30)  # raises what the runtime raised
    eof.cancel()
    assert runtime.sink is not None
    tp.emit_result(
        {
            **trace.result(),
            "published": runtime.sink.published,
            "reconnects": runtime.sink.reconnects,
            "max_rss_mib": tp.max_rss_mib(),
        }
    )


async def worker_fill(args: argparse.Namespace) -> None:
    """throughput.py's filler: ``--backlog`` telemetry rows, 10,000 per commit, then closed."""
    await tp.worker_fill(args)


# -- orchestration ------------------------------------------------------------------------------


def wait_tag(child: tp.Child, tag: str, timeout: float, seen: dict[str, str]) -> str | None:
    """The rest of ``child``'s ``tag`` line (lines may come in any order); None on timeout."""
    deadline = time.monotonic() + timeout
    while tag not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            line = child.expect("", left)
        except TimeoutError:
            return None
        key, _, rest = line.partition(" ")
        seen[key] = rest
    return seen[tag]


def run_phase(args: argparse.Namespace, name: str, backlog: int) -> dict[str, Any]:
    """One phase: broker, [fill], subscribers, presser, gateway; everything stopped by PID."""
    with (
        tempfile.TemporaryDirectory(prefix=f"cgw-bench-alarm-{name}-") as d,
        tp.CpuSampler() as cpu,
    ):
        tmp = Path(d)
        broker = tp.Broker(tmp)
        children: list[tp.Child] = []
        res: dict[str, Any] = {"tmp_fs": fs_type(tmp)}

        def start(label: str, kind: str, *extra: str) -> tp.Child:
            child = tp.Child(label, worker_argv(kind, "--port", str(broker.port), *extra))
            children.append(child)
            cpu.watch(label, child.proc.pid)
            return child

        try:
            broker.start()
            assert broker.proc is not None
            cpu.watch("broker", broker.proc.pid)
            if backlog:
                filler = start("fill", "fill", "--backlog", str(backlog), "--tmp", str(tmp))
                res["fill"] = filler.result(300)
            sub_lines: dict[str, str] = {}
            alarm_lines: dict[str, str] = {}
            sub_args = ["--expect", str(args.presses), "--backlog", str(backlog or -1)]
            sub = start(
                "subscriber",
                "subscriber",
                *sub_args,
                *("--start-after", str(args.start_after if backlog else -1)),
            )
            alarm_sub = start("alarm-subscriber", "subscriber", *sub_args, "--alarms-only")
            sub.expect("READY", 15)
            alarm_sub.expect("READY", 15)
            presser = start(
                "presser", "presser", "--presses", str(args.presses), "--spacing", str(args.spacing)
            )
            presser.expect("READY", 15)
            t_gw = time.monotonic()
            knobs = []
            if args.max_inflight:
                knobs += ["--max-inflight", str(args.max_inflight)]
            if args.switch_interval:
                knobs += ["--switch-interval", str(args.switch_interval)]
            gateway = start("gateway", "gateway", "--tmp", str(tmp), *knobs)
            gateway.expect("READY", 90)
            res["gateway_ready_s"] = time.monotonic() - t_gw
            if backlog:
                if wait_tag(sub, "STARTED", 60, sub_lines) is None:
                    raise RuntimeError(f"subscriber saw no {args.start_after} telemetry in 60 s")
            else:
                time.sleep(0.5)
            assert presser.proc.stdin is not None
            presser.proc.stdin.write("go\n")
            presser.proc.stdin.flush()
            res["press"] = presser.result(args.presses * args.spacing + 40)
            wait_tag(sub, "ALARMS", 20, sub_lines)
            wait_tag(alarm_sub, "ALARMS", 5, alarm_lines)
            res["t_alarms_done"] = time.monotonic()
            if backlog:
                wait_tag(sub, "DRAINED", args.drain_wait, sub_lines)
            res["gateway_hwm_mib"] = tp.proc_status_mib(gateway.proc.pid, "VmHWM")
            res["broker_hwm_mib"] = broker.peak_rss_mib()
            gateway.close_stdin()
            res["gateway"] = gateway.result(60)
            for key, child in (("sub", sub), ("alarm_sub", alarm_sub)):
                child.close_stdin()
                res[key] = child.result(30)
            t0 = min(t for t, _ in res["press"]["sends"].values())
            t1 = max([t for t, _ in res["sub"]["raised"].values()] or [t0 + 1])
            res["cpu"] = cpu.usage(t0, t1)
            res["cpu_window_s"] = t1 - t0
        except BaseException:
            log = tmp / "gateway.log"
            if log.exists():
                print("  gateway.log (last lines):\n" + "\n".join(
                    "    " + line for line in log.read_text().splitlines()[-20:]))  # fmt: skip
            raise
        finally:
            for child in reversed(children):
                child.stop()
            broker.stop()
    return res


def report(args: argparse.Namespace, r: dict[str, Any], backlog: int) -> None:
    sends: dict[str, list[float]] = r["press"]["sends"]
    raised: dict[str, list[float]] = r["sub"]["raised"]
    alarm_only: dict[str, list[float]] = r["alarm_sub"]["raised"]
    gw = r["gateway"]
    lat = {d: raised[d][0] - sends[d][0] for d in sends if d in raised}
    missing = len(sends) - len(lat)
    values = list(lat.values())
    print(
        f"  presses {len(sends)}, {1000 * args.spacing:g} ms apart, QoS 1; raised alarms at the "
        f"subscriber {len(lat)} ({missing or 'none'} missing, {r['sub']['duplicates']} "
        f"duplicates); store on {r['tmp_fs']}"
    )
    print("  press -> raised alarm at an upstream subscriber, ms   p50 / p90 / p99 / max")
    print(f"    subscriber to alarms and telemetry (one connection)  {ms(values)}")
    only = [alarm_only[d][0] - sends[d][0] for d in sends if d in alarm_only]
    print(
        f"    subscriber to alarms only                            {ms(only)}"
        + (f"  ({len(sends) - len(only)} missing)" if len(only) != len(sends) else "")
    )
    first = device_name(1)
    if values and first in lat:
        print(
            f"    mean {1000 * sum(values) / len(values):.2f} ms; first press "
            f"{1000 * lat[first]:.2f} ms"
        )

    def stage(a: dict[str, Any], ia: int, b: dict[str, Any], ib: int) -> list[float]:
        return [b[d][ib] - a[d][ia] for d in sends if d in a and d in b]

    contact = {d: (t,) for d, t in gw["contact"].items()}
    sent = {d: (t[0],) for d, t in sends.items()}
    # the engine handles inputs one at a time: how long each waited for earlier alarms' commits
    commits = sorted(gw["commit"].values())
    busy: dict[str, tuple[float]] = {}
    for d, (c0, _) in gw["commit"].items():
        if d in contact:
            before = [e for s, e in commits if s < c0]
            prev_end = max(before, default=-math.inf)
            busy[d] = (max(0.0, prev_end - contact[d][0]),)
    zero = {d: (0.0,) for d in busy}
    print("  where the time goes, ms   p50 / p90 / p99 / max (timestamps in the gateway process):")
    rows = [
        ("press -> button event at the engine (broker, aiomqtt, parse)", sent, 0, contact, 0),
        ("engine inbox -> its commit starts", contact, 0, gw["commit"], 0),
        ("  of which the engine still committing earlier alarms", zero, 0, busy, 0),
        ("commit starts -> store thread runs it (write lock, executor)", gw["commit"], 0,
         gw["insert"], 0),
        ("store transaction (BEGIN..COMMIT, fsync)", gw["insert"], 0, gw["insert"], 1),
        ("transaction done -> commit returns", gw["insert"], 1, gw["commit"], 1),
        ("commit returns -> sink calls publish (wake, fetch, window)", gw["commit"], 1,
         gw["publish"], 0),
        ("sink publish -> PUBACK", gw["publish"], 0, gw["publish"], 1),
        ("sink publish -> arrival, subscriber to alarms and telemetry", gw["publish"], 0,
         raised, 0),
        ("sink publish -> arrival, subscriber to alarms only", gw["publish"], 0, alarm_only, 0),
    ]  # fmt: skip
    for label, a, ia, b, ib in rows:
        print(f"    {label:<66} {ms(stage(a, ia, b, ib))}")
    window = (min(s[0] for s in sends.values()), r["t_alarms_done"])
    ops = [o for o in gw["store_ops"] if window[0] <= o[1] <= window[1]]
    for kind in ("insert", "ack", "select"):
        durs = [o[2] - o[1] for o in ops if o[0] == kind]
        if durs:
            busy_s = sum(durs)
            print(
                f"    store thread {kind:<6} x{len(durs):<5} ms {ms(durs)}   "
                f"({busy_s:.2f} s busy in {window[1] - window[0]:.1f} s)"
            )
    saves = [b - a for a, b in gw["dedup_saves"] if window[0] <= a <= window[1]]
    if saves:
        print(f"    button dedup-file writes on the event loop x{len(saves)}, ms {ms(saves)}")
    stalls = [late for t, late in gw["stalls"] if window[0] <= t <= window[1]]
    print(
        f"    event-loop wake-ups late by > {1000 * STALL:g} ms while pressing: {len(stalls)}"
        + (f", longest {1000 * max(stalls):.1f} ms" if stalls else "")
    )
    if backlog:
        sub = r["sub"]
        order = sorted(raised.values())
        if order:
            first_a, last_a = order[0], order[-1]
            print(
                f"  telemetry at the subscriber before the first alarm {first_a[1]:,}, before "
                f"the last {last_a[1]:,} (of {backlog:,}); presses began after "
                f"{args.start_after:,}"
            )
            draining = last_a[1] < backlog
            if sub["telemetry"] >= backlog:
                end = f"drain complete at the subscriber {sub['last_tele'] - last_a[0]:.2f} s later"
            else:
                end = f"only {sub['telemetry']:,} in by the end ({args.drain_wait:g} s wait)"
            print(
                f"  backlog still draining when the last alarm arrived: "
                f"{'yes' if draining else 'NO'}; {end}"
            )
        secs = sub["last_tele"] - sub["first_tele"]
        sc = gw["sent_curve"]
        if secs > 0 and len(sc) > 1:
            print(
                f"  drain: sink hands out {(sc[-1][1] - sc[0][1]) / (sc[-1][0] - sc[0][0]):,.0f} "
                f"msg/s, subscriber reads {(sub['telemetry'] - 1) / secs:,.0f} msg/s "
                f"({sub['telemetry']:,} received)"
            )
        fill = r["fill"]
        print(
            f"  fill: {backlog:,} rows, body {fill['body_bytes']:.0f} B avg, {fill['fill_s']:.2f} "
            f"s (separate process, before the gateway starts)"
        )
    use = r["cpu"]
    names = ["gateway", "broker", "subscriber", "alarm-subscriber", "presser"]
    cores = os.cpu_count() or 1
    print(
        f"  CPU while pressing ({r['cpu_window_s']:.1f} s), % of one core: "
        + ", ".join(f"{n} {use.get(n, math.nan):.0f}%" for n in names)
        + f"; machine {use['machine']:.0f}% of {100 * cores}%, other processes "
        f"{max(0.0, use['other']):.0f}%"
    )
    print(
        f"  peak RSS MiB: gateway {r['gateway_hwm_mib']:.1f} (VmHWM before stop), broker "
        f"{r['broker_hwm_mib']:.1f}, subscriber {r['sub']['max_rss_mib']:.1f}; gateway ready "
        f"{r['gateway_ready_s']:.2f} s after start; sink reconnects {gw['reconnects']}"
    )


def orchestrate(args: argparse.Namespace) -> int:
    print("command: " + shlex.join(sys.orig_argv))
    for line in tp.machine_lines():
        print(line)
    started = time.monotonic()
    phases = [("idle", 0), ("backlog", args.backlog)] if args.backlog else [("idle", 0)]
    if args.only:
        phases = [p for p in phases if p[0] == args.only]
    results: dict[str, dict[str, Any]] = {}
    titles = {
        "idle": "1. idle: button -> gateway -> upstream subscriber, no backlog",
        "backlog": f"2. backlog: the same while a {args.backlog:,}-message telemetry "
        "backlog drains",
    }
    for name, backlog in phases:
        print(f"\n{titles[name]}", flush=True)
        t = time.monotonic()
        results[name] = run_phase(args, name, backlog)
        report(args, results[name], backlog)
        print(f"  (phase took {time.monotonic() - t:.0f} s)", flush=True)
    print(f"\ntotal {time.monotonic() - started:.0f} s; goal: p99 under 25 ms with the backlog")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--presses", type=int, default=200, help="button presses per phase")
    ap.add_argument("--spacing", type=float, default=0.02, help="s between presses")
    ap.add_argument("--backlog", type=int, default=100_000, help="telemetry backlog (0: idle only)")
    ap.add_argument(
        "--start-after", type=int, default=1000, help="telemetry at the subscriber before pressing"
    )
    ap.add_argument(
        "--drain-wait", type=float, default=60.0, help="s to wait for the drain after the alarms"
    )
    ap.add_argument("--only", choices=["idle", "backlog"], help="run one phase")
    ap.add_argument(
        "--max-inflight",
        type=int,
        help="experiment: the gateway's upstream.mqtt.max_inflight (default: the bench's 100)",
    )
    ap.add_argument(
        "--switch-interval",
        type=float,
        help="experiment: sys.setswitchinterval() in the gateway process (Python's 0.005 s)",
    )
    ap.add_argument("--json", metavar="FILE", help="also write all raw figures as JSON")
    # internal: how the orchestrator starts its workers
    ap.add_argument(
        "--worker", choices=["subscriber", "presser", "gateway", "fill"], help=argparse.SUPPRESS
    )
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--expect", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--alarms-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is None:
        return orchestrate(args)
    if args.worker == "subscriber":
        worker_sub(args)
    elif args.worker == "presser":
        worker_press(args)
    elif args.worker == "gateway":
        asyncio.run(worker_gateway(args))
    else:
        asyncio.run(worker_fill(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
