"""mqtt_json benchmark: N vendor JSON devices at one message a second each into ``cgw run``,
beside door terminals that POST their events by HTTP (``http_push``).

    .venv/bin/python bench/mqtt_json.py [--devices 500] [--rate 1] [--window 60] [--warmup 10]
                                        [--layout fleet|entries] [--posts 50] [--terminals 10]

One fresh mosquitto (``harness.procs.Broker``) is both the community's local broker the
devices publish to and the upstream broker. The gateway is ``cgw run`` as systemd starts it
(``harness.peers.Daemon``), with the ``env-station-json`` profile: ``--layout fleet`` is one
entry on ``bench/+/up`` listing every device id, ``--layout entries`` one entry per device on
its own topic (500 subscriptions, every topic looked up exactly). Workers, each a process of
its own:

- publisher: paho, QoS 1, every device once every ``1/--rate`` s on an absolute schedule,
  spread evenly over the second, each message the shipped sample's shape with the current
  time in ms and values that move (5 points);
- subscriber: paho, QoS 1 on the gateway's telemetry topics, counting arrivals;
- poster (with ``--posts`` > 0): aiohttp on one keep-alive connection per terminal, ``--posts``
  door events a second in all (``facegate-json`` shape, a face grant with a fresh event id and
  a resident id the gateway pseudonymises) spread over ``--terminals`` terminals of one
  ``http_push`` entry with a token; each answer is awaited, which the gateway gives only once
  the event is committed, so its latency includes the commit. ``RESULT``: posts, answers by
  status, and the answer latency percentiles.

After ``--warmup`` s, over ``--window`` s: messages published, telemetry messages upstream,
the gateway's CPU (% of one core, and µs per message), its RSS at the end and its peak
(``VmHWM``), the broker's and the workers' CPU, the machine's and other processes' load, and
the gateway's reject counters and device availability from its ``/metrics``. Nothing is
asserted.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from harness.measure import CpuSampler, cpu_line, print_header, proc_status_mib
from harness.peers import Daemon, paho_subscriber
from harness.procs import HOST, PREFIX, Phase, emit_result, free_port, workdir, worker_argv

HERE = Path(__file__).resolve()


TOKEN = "bench-push-token-0123456789"


def device_ids(n: int) -> list[str]:
    return [f"es-{i:04d}" for i in range(n)]


def terminal_ids(args: argparse.Namespace) -> list[str]:
    return [f"FG-{i:03d}" for i in range(args.terminals)]


def config(tmp: Path, port: int, args: argparse.Namespace) -> Path:
    """The gateway's config: the devices, the local API off, the monitor on."""
    ids = device_ids(args.devices)
    entry: dict[str, Any] = {"kind": "mqtt_json", "profile": "env-station-json", "interval": 1.0}
    if args.layout == "fleet":
        devices = [entry | {"id": "bench", "topic": "bench/+/up", "device_from_topic": 1,
                            "devices": ids}]  # fmt: skip
    else:
        devices = [entry | {"id": i, "topic": f"bench/{i}/up"} for i in ids]
    if args.posts > 0:
        token, key = tmp / "push.token", tmp / "privacy.key"
        token.write_text(TOKEN)
        key.write_text(secrets.token_hex(32))
        for secret in (token, key):
            secret.chmod(0o600)
        doors = [{"id": f"door-{t}", "terminal": t, "ref": 1} for t in terminal_ids(args)]
        devices.append({"kind": "http_push", "id": "gates", "auth": {"token_file": str(token)},
                        "door": {"profile": "facegate-json", "device_from_path": True,
                                 "doors": doors}})  # fmt: skip
    broker = {"host": HOST, "port": port}
    doc = {
        "gateway": {"site_id": "bench", "gateway_id": "gw1"},
        "store": {"path": str(tmp / "buffer.db"), "quota": "256MiB", "reserve": "16MiB"},
        "upstream": {"mqtt": broker | {"topic_root": "cgw"}},
        "local_broker": broker,
        "monitor": {"port": free_port()},
        "devices": devices,
        "log_level": "WARNING",
    }
    if args.posts > 0:
        doc |= {"http_push": {"port": args.push_port}, "privacy": {"key_file": str(key)}}
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# -- workers ---------------------------------------------------------------------------------


def worker_publish(args: argparse.Namespace) -> None:
    """Publish every device at ``--rate`` until stdin closes; ``RESULT`` the count."""
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion

    client = Client(CallbackAPIVersion.VERSION2, client_id="bench-devices", clean_session=True)
    client.max_inflight_messages_set(1000)
    client.connect(HOST, args.port, keepalive=60)
    client.loop_start()
    ids, stop = device_ids(args.devices), threading.Event()

    def stop_at_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=stop_at_eof, daemon=True).start()
    print("READY", flush=True)
    step = 1.0 / (args.rate * len(ids))
    sent, start = 0, time.monotonic()
    while not stop.is_set():
        device = ids[sent % len(ids)]
        now = time.time()
        v = sent // len(ids)
        payload = {
            "dev": device,
            "ts": int(now * 1000),
            "data": {"pm25": 20 + v % 40, "pm10": 40 + v % 60, "temp": 21.4 + (v % 10) / 10,
                     "hum": 48.5, "noise": 45 + (v % 20) / 2},
        }  # fmt: skip
        client.publish(f"bench/{device}/up", json.dumps(payload), qos=1)
        sent += 1
        delay = start + sent * step - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    client.disconnect()
    client.loop_stop()
    emit_result({"sent": sent})


def worker_subscribe(args: argparse.Namespace) -> None:
    """Count telemetry arrivals into ``--count-file`` (every 0.1 s) until stdin closes."""
    from paho.mqtt.client import MQTTMessage

    count = [0]
    path = Path(args.count_file)

    def on_message(_msg: MQTTMessage) -> None:
        count[0] += 1

    def report() -> None:
        while True:
            path.with_suffix(".tmp").write_text(str(count[0]))
            path.with_suffix(".tmp").replace(path)
            time.sleep(0.1)

    threading.Thread(target=report, daemon=True).start()
    paho_subscriber(args.port, [(f"{PREFIX}/telemetry/#", 1)], on_message)


def worker_post(args: argparse.Namespace) -> None:
    """POST door events at ``--posts`` a second until stdin closes; ``RESULT`` the figures."""
    import asyncio

    import aiohttp
    from harness.procs import stdin_eof

    terminals = terminal_ids(args)
    latencies: list[float] = []
    status: dict[str, int] = {}

    async def post(http: aiohttp.ClientSession, n: int) -> None:
        terminal = terminals[n % len(terminals)]
        event = {"eventId": f"{terminal}-{n:09d}", "deviceSn": terminal, "doorNo": 1,
                 "eventType": "FACE_PASS", "personId": f"R-{n % 400:04d}",
                 "time": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
        url = f"http://{HOST}:{args.push_port}/push/gates/{terminal}"
        start = time.monotonic()
        try:
            async with http.post(url, json=event, headers={"X-Auth-Token": TOKEN}) as reply:
                await reply.read()
                key = str(reply.status)
        except aiohttp.ClientError as exc:
            key = type(exc).__name__
        latencies.append(time.monotonic() - start)
        status[key] = status.get(key, 0) + 1

    async def main() -> None:
        stop = asyncio.ensure_future(stdin_eof())
        pending: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession() as http:
            print("READY", flush=True)
            step, sent, start = 1.0 / args.posts, 0, time.monotonic()
            while not stop.done():
                task = asyncio.ensure_future(post(http, sent))
                pending.add(task)
                task.add_done_callback(pending.discard)
                sent += 1
                await asyncio.sleep(max(0.0, start + sent * step - time.monotonic()))
            await asyncio.gather(*pending)
        ordered = sorted(latencies) or [0.0]

        def pick(q: float) -> float:
            return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

        emit_result({"posts": sent, "status": status, "p50_ms": pick(0.5), "p99_ms": pick(0.99),
                     "max_ms": round(1000 * ordered[-1], 1)})  # fmt: skip

    asyncio.run(main())


# -- orchestrator ------------------------------------------------------------------------------


def metrics(port: int) -> dict[str, float]:
    """Rejects and devices online from the gateway's ``/metrics``."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    out = {"rejected": 0.0, "online": 0.0, "devices": 0.0}
    for line in text.splitlines():
        if line.startswith('cgw_input_rejected_total{input="mqtt_json"'):
            out["rejected"] += float(line.split()[-1])
        elif line.startswith("cgw_device_online{"):
            out["devices"] += 1
            out["online"] += float(line.split()[-1])
    return out


def run(args: argparse.Namespace) -> None:
    print_header()
    with workdir("cgw-bench-json-") as tmp, CpuSampler() as cpu, Phase(tmp, cpu) as phase:
        port = phase.broker.port
        cfg = config(tmp, port, args)
        monitor = yaml.safe_load(cfg.read_text())["monitor"]["port"]
        extra = ["--port", str(port), "--devices", str(args.devices), "--rate", str(args.rate),
                 "--posts", str(args.posts), "--terminals", str(args.terminals),
                 "--push-port", str(args.push_port)]  # fmt: skip
        counted = tmp / "count"
        sub = phase.start(
            "subscriber", worker_argv(HERE, "subscribe", *extra, "--count-file", str(counted))
        )
        sub.expect("READY", 30)
        with Daemon(cfg, tmp) as gw:
            ready = gw.wait_ready()
            cpu.watch("gateway", gw.pid)
            time.sleep(1.0)  # its local session subscribes right after READY
            pub = phase.start("publisher", worker_argv(HERE, "publish", *extra))
            pub.expect("READY", 30)
            poster = None
            if args.posts > 0:
                poster = phase.start("poster", worker_argv(HERE, "post", *extra))
                poster.expect("READY", 30)
            time.sleep(args.warmup)
            t0, n0 = time.monotonic(), int(counted.read_text())
            time.sleep(args.window)
            t1, n1 = time.monotonic(), int(counted.read_text())
            rss = proc_status_mib(gw.pid, "VmRSS")
            peak = proc_status_mib(gw.pid, "VmHWM")
            seen = metrics(monitor)
            pub.close_stdin()
            sent = pub.result(30)["sent"]
            posted: dict[str, Any] = {}
            if poster is not None:
                poster.close_stdin()
                posted = poster.result(30)
        use = cpu.usage(t0, t1)
    span = t1 - t0
    up = (n1 - n0) / span
    gateway_us = 1e6 * use["gateway"] / 100 * span / max(n1 - n0, 1)
    print(f"gateway: {args.devices} mqtt_json devices ({args.layout}), {args.rate:g} msg/s each,"
          f" READY after {ready:.2f} s")  # fmt: skip
    print(f"  window {span:.0f} s after {args.warmup:g} s of warm-up")
    print(f"  published {sent} in all; telemetry upstream {up:.0f} msg/s in the window"
          f" (offered {args.devices * args.rate:g}/s)")  # fmt: skip
    print(f"  gateway CPU {use['gateway']:.1f}% of one core ({gateway_us:.0f} µs per message);"
          f" RSS {rss:.1f} MiB at the end, peak {peak:.1f} MiB")  # fmt: skip
    if posted:
        print(f"  http_push: {posted['posts']} door events posted at {args.posts:g}/s over"
              f" {args.terminals} terminals; answers {posted['status']}; answered after commit"
              f" in p50 {posted['p50_ms']} ms, p99 {posted['p99_ms']} ms,"
              f" max {posted['max_ms']} ms")  # fmt: skip
    workers = ["gateway", "broker", "publisher", "subscriber"] + (["poster"] if posted else [])
    print(cpu_line(use, workers))
    print(f"  devices online {seen['online']:.0f} of {seen['devices']:.0f};"
          f" mqtt_json rejects {seen['rejected']:.0f}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": use, "rss_mib": rss, "peak_mib": peak,
                                               "upstream_per_s": up, "sent": sent,
                                               "posted": posted}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--rate", type=float, default=1.0, help="messages per second per device")
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--layout", choices=("fleet", "entries"), default="fleet")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--posts", type=float, default=50.0, help="HTTP door events a second")
    parser.add_argument("--terminals", type=int, default=10, help="terminals that post")
    parser.add_argument("--push-port", type=int, default=0)
    parser.add_argument("--worker", choices=("publish", "subscribe", "post"))
    parser.add_argument("--port", type=int)
    parser.add_argument("--count-file")
    args = parser.parse_args()
    args.push_port = args.push_port or free_port()
    if args.worker == "publish":
        worker_publish(args)
    elif args.worker == "subscribe":
        worker_subscribe(args)
    elif args.worker == "post":
        worker_post(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
