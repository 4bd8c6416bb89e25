"""Junk flood benchmark (fault-matrix finding 7): does a real SOS still get through, fast?

    .venv/bin/python bench/flood.py [--rate 50000] [--duration 60] [--workers 2] [--client raw]

One run, with these processes, every one stopped by PID when it ends or fails:

``local broker``  mosquitto with the shipped local broker's bounds (``max_*`` lines of
                  ``config/mosquitto/local.conf``: ``max_queued_messages 10000``,
                  ``max_packet_size 65536``), anonymous, ``sys_interval 1``.
``upstream``      the benchmarks' usual mosquitto, where the platform would be.
``gateway``       ``cgw run`` as systemd starts it (``NOTIFY_SOCKET``, ``READY=1``): an
                  ``mqtt_button`` entry on ``bench/btn/+/event`` listing ``b0001``-``b0200``
                  and ``g0001``, a ``door_terminal`` entry on ``facegate/+/...`` with terminal
                  ``FG-A1``, one contact rule for every device, its monitor for ``/metrics``.
``flood-N``       ``--workers`` publishers of junk on the local broker at ``--rate`` msg/s
                  together, QoS 0, for ``--duration`` s, in the mix of ``flood_workers.MIX``.
``presser``       a configured SOS button pressed every second (QoS 1), from ``--warmup`` s
                  into the flood until 1 s before its end, each press on a new device
                  (``b0001``, ``b0002``...) so each is a new alarm.
``subscriber``    paho QoS 1 on the upstream alarm topics: when each ``raised`` alarm arrives.
``sys``           the local broker's ``$SYS`` counters (received, sent, dropped).

Printed: the junk rate achieved (what the publishers wrote over the time it took) and what the
broker dropped; SOS press -> upstream latency p50/p99/max (``time.monotonic()`` before the
presser's publish to the subscriber's ``on_message``: one clock on Linux); the gateway's RSS
before the flood and its peak (``VmHWM``), its CPU during the flood; how long after the flood
it had read everything; and what it counted as rejected per input and reason (``/metrics``).
Targets (the issue): SOS p99 < 1 s and RSS < 150 MB under 50k junk msg/s for 60 s. Nothing
here asserts a figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from alarm_workers import worker_press, worker_sub
from flood_report import SYS_TOPICS, log_summary, rejected, report, scrape, settle, subscribed
from flood_workers import GARBAGE, SOS_DEVICES, TERMINAL, sos_device, worker_flood, worker_sys
from harness import procs
from harness.measure import CpuSampler, print_header, proc_status_mib
from harness.peers import Daemon
from harness.procs import GATEWAY, HOST, REPO, ROOT, SITE, Broker, Child, Phase, free_port, workdir

HERE = Path(__file__).resolve()
LOCAL_CONF = REPO / "config" / "mosquitto" / "local.conf"


def worker_argv(kind: str, *extra: str) -> list[str]:
    """This script's worker ``kind``."""
    return procs.worker_argv(HERE, kind, *extra)


def flood_argv(args: argparse.Namespace, port: str, index: int) -> list[str]:
    """Publisher ``index`` of ``args.workers``."""
    return worker_argv(
        "flood", "--port", port, "--rate", str(args.rate), "--duration", str(args.duration),
        "--index", str(index), "--workers", str(args.workers), "--client", args.client,
    )  # fmt: skip


def shipped_bounds() -> list[str]:
    """The ``max_*`` lines of the shipped local broker config, and ``sys_interval 1``."""
    lines = [ln.strip() for ln in LOCAL_CONF.read_text().splitlines()]
    return [ln for ln in lines if ln.startswith("max_")] + ["sys_interval 1"]


def gateway_yaml(tmp: Path, local: int, upstream: int, monitor: int) -> Path:
    """The gateway's config file (see the module docstring)."""
    key = tmp / "privacy.key"
    key.write_text(secrets.token_hex(32) + "\n")
    key.chmod(0o600)
    doc: dict[str, Any] = {
        "gateway": {"site_id": SITE, "gateway_id": GATEWAY},
        "store": {
            "path": str(tmp / "buffer.db"),
            "quota": "256MiB",
            "reserve": "16MiB",
        },
        "upstream": {"mqtt": {"host": HOST, "port": upstream, "topic_root": ROOT}},
        "local_broker": {"host": HOST, "port": local},
        "privacy": {"key_file": str(key)},
        "monitor": {"host": HOST, "port": monitor},
        "log_level": "WARNING",
        "devices": [
            {
                "kind": "mqtt_button",
                "id": "bench-buttons",
                "topic": "bench/btn/+/event",
                "device_from_topic": 2,
                "devices": [sos_device(i) for i in range(1, SOS_DEVICES + 1)] + [GARBAGE],
                "profile": "sos-state-json",
            },
            {
                "kind": "door_terminal",
                "id": "facegate",
                "topic": "facegate/+/event",
                "heartbeat_topic": "facegate/+/heartbeat",
                "device_from_topic": 1,
                "profile": "facegate-json",
                "doors": [{"id": "A1-main", "terminal": TERMINAL, "ref": 1}],
            },
        ],
        "alarms": {
            "rules": [{"kind": "contact", "id": "sos", "device": "*", "input": "sos"}],
            "storm": {"per_device": 1000, "window": 1},
        },
    }
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class RssWatch:
    """The gateway's ``VmRSS`` every 0.5 s, in a thread: (seconds since start, MiB)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.t0 = time.monotonic()
        self.curve: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            rss = proc_status_mib(self.pid, "VmRSS")
            if not math.isnan(rss):
                self.curve.append((time.monotonic() - self.t0, rss))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def sys_snapshot(child: Child) -> dict[str, float]:
    """The local broker's ``$SYS`` counters now (one ``sys_interval`` old at most)."""
    assert child.proc.stdin is not None
    child.proc.stdin.write("snap\n")
    child.proc.stdin.flush()
    last: dict[str, str] = json.loads(child.expect("SYS", 10))
    out = {}
    for topic in SYS_TOPICS:
        value = last.get(f"$SYS/broker/{topic}")
        out[topic] = float(value) if value is not None else math.nan
    return out


def start_spy(out: str | None, pid: int, seconds: float) -> subprocess.Popen[bytes] | None:
    """py-spy (``PY_SPY``) sampling ``pid`` for ``seconds``, collapsed stacks into ``out``."""
    if out is None:
        return None
    spy = os.environ.get("PY_SPY")
    if spy is None:
        raise SystemExit("--spy needs PY_SPY=/path/to/py-spy (see bench/README.md)")
    argv = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
            "--format", "raw", "--nonblocking", "--output", out]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_alarms(sub: Child, timeout: float) -> float | None:
    """Seconds until the subscriber had every alarm (its ``ALARMS`` line); None if it had not."""
    t0 = time.monotonic()
    try:
        sub.expect("ALARMS", timeout)
    except TimeoutError:
        return None
    return time.monotonic() - t0


def go(child: Child) -> None:
    assert child.proc.stdin is not None
    child.proc.stdin.write("go\n")
    child.proc.stdin.flush()


# -- orchestration ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    presses = max(1, int(args.duration - args.warmup))
    res: dict[str, Any] = {"presses": presses}
    with (
        workdir("cgw-bench-flood-") as tmp,
        CpuSampler() as cpu,
        Phase(tmp, cpu) as phase,
    ):
        upstream = phase.broker
        (tmp / "local").mkdir()
        local = Broker(tmp / "local", shipped_bounds())
        try:
            local.start()
            assert local.proc is not None
            cpu.watch("local broker", local.proc.pid)
            lport = str(local.port)
            sysw = phase.start("sys", worker_argv("sys", "--port", lport))
            sysw.expect("READY", 15)
            sub = phase.start(
                "subscriber",
                worker_argv(
                    "subscriber", "--port", str(upstream.port), "--expect", str(presses),
                    "--backlog", "-1", "--start-after", "-1", "--alarms-only",
                ),
            )  # fmt: skip
            sub.expect("READY", 15)
            press = ["--port", lport, "--presses", str(presses), "--spacing", "1"]
            presser = phase.start("presser", worker_argv("presser", *press))
            presser.expect("READY", 15)
            floods = [
                phase.start(f"flood-{i}", flood_argv(args, lport, i)) for i in range(args.workers)
            ]
            for f in floods:
                f.expect("READY", 15)
            monitor = free_port()
            url = f"http://{HOST}:{monitor}"
            cfg = gateway_yaml(tmp, local.port, upstream.port, monitor)
            with Daemon(cfg, tmp) as gw:
                res["ready_s"] = gw.wait_ready(60)
                cpu.watch("gateway", gw.pid)
                deadline = time.monotonic() + 30
                while not subscribed(scrape(url)):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the gateway did not subscribe within 30 s")
                    time.sleep(0.1)
                time.sleep(1.0)
                res["rss_before_mib"] = proc_status_mib(gw.pid, "VmRSS")
                res["sys_before"] = sys_snapshot(sysw)
                watch = RssWatch(gw.pid)
                spy = start_spy(args.spy, gw.pid, args.duration)
                t0 = time.monotonic()
                for f in floods:
                    go(f)
                time.sleep(args.warmup)
                go(presser)
                res["flood"] = [f.result(args.duration + 120) for f in floods]
                t_end = time.monotonic()
                res["press"] = presser.result(120)
                res["alarms_wait_s"] = wait_alarms(sub, args.alarm_wait)
                if spy is not None:
                    spy.wait(60)
                res["flood_s"] = t_end - t0
                text, res["catch_up_s"] = settle(url, quiet=3.0, timeout=args.catch_up)
                res["rejected"] = rejected(text)
                time.sleep(2.5)  # two sys_interval ticks: the counters include the end
                res["sys_after"] = sys_snapshot(sysw)
                res["hwm_mib"] = proc_status_mib(gw.pid, "VmHWM")
                res["rss_after_mib"] = proc_status_mib(gw.pid, "VmRSS")
                res["cpu"] = cpu.usage(t0, t_end)
                watch.stop()
                res["rss_curve"] = watch.curve
            sub.close_stdin()
            res["sub"] = sub.result(30)
            sysw.close_stdin()
            res["log"] = log_summary(tmp / "gateway.log")
        finally:
            local.stop()
    return res


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rate", type=int, default=50_000, help="junk msg/s, all publishers")
    ap.add_argument("--duration", type=float, default=60.0, help="s of flood")
    ap.add_argument("--workers", type=int, default=2, help="publisher processes")
    ap.add_argument(
        "--client",
        choices=["raw", "paho"],
        default="raw",
        help="raw: PUBLISH packets on a plain socket; paho: paho-mqtt (~40 µs CPU a message)",
    )
    ap.add_argument("--warmup", type=float, default=2.0, help="s of flood before the first press")
    ap.add_argument(
        "--catch-up",
        type=float,
        default=180.0,
        help="s to wait for the gateway after the flood",
    )
    ap.add_argument(
        "--alarm-wait",
        type=float,
        default=30.0,
        help="s to wait for the alarms after the flood",
    )
    ap.add_argument("--json", metavar="FILE", help="also write all raw figures as JSON")
    ap.add_argument(
        "--spy",
        metavar="FILE",
        help="py-spy (PY_SPY=/path/to/py-spy) samples the gateway during the flood: "
        "collapsed stacks into FILE",
    )
    # internal: how the orchestrator starts its workers
    ap.add_argument(
        "--worker",
        choices=["flood", "sys", "presser", "subscriber"],
        help=argparse.SUPPRESS,
    )
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--presses", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--spacing", type=float, default=1.0, help=argparse.SUPPRESS)
    ap.add_argument("--expect", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--backlog", type=int, default=-1, help=argparse.SUPPRESS)
    ap.add_argument("--start-after", type=int, default=-1, help=argparse.SUPPRESS)
    ap.add_argument("--alarms-only", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker == "flood":
        worker_flood(args)
    elif args.worker == "sys":
        worker_sys(args)
    elif args.worker == "presser":
        worker_press(args)
    elif args.worker == "subscriber":
        worker_sub(args)
    else:
        print_header()
        started = time.monotonic()
        r = run(args)
        report(args, r)
        print(f"\ntotal {time.monotonic() - started:.0f} s")
        if args.json:
            Path(args.json).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
