"""Field console benchmark: what the console adds to the daemon's memory, and how fast it serves.

    .venv/bin/python bench/console.py [--devices 200] [--alarms 50] [--requests 200] [--settle 20]

The gateway runs as ``cgw run`` twice on the same config, polling ``--devices`` simulated
PM2.5 sensors (Modbus TCP, 1 s interval) with ``--alarms`` of them above a threshold rule (so
that many alarms are open), and its monitor on (as in production, so aiohttp's ~10 MiB are
paid by both): once without the ``console`` section, once with it. Printed: RSS
of both after ``--settle`` s idle (no browser connected) and the difference; then, signed in,
the time to answer ``--requests`` requests of the duty view (``/api/duty``), the device table
(``/api/devices``) and the page shell (``/``), one after another on one keep-alive
connection: median, p95, p99 and worst; and the size of each answer. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import yaml
from harness.measure import pct, proc_status_mib
from harness.peers import Daemon, start_simulator
from harness.procs import GATEWAY, HOST, REPO, ROOT, SITE, Broker, Child, free_port, workdir

HERE = Path(__file__).resolve()
PASSWORD = "bench-password-1"


def config(
    tmp: Path, broker: int, ports: list[int], args: argparse.Namespace, console: int | None
) -> Path:
    doc: dict[str, Any] = {
        "gateway": {"site_id": SITE, "gateway_id": GATEWAY},
        "store": {"path": str(tmp / f"buffer-{console}.db"), "quota": "256MiB", "reserve": "16MiB"},
        "upstream": {"mqtt": {"host": HOST, "port": broker, "topic_root": ROOT}},
        "log_level": "WARNING",
        "monitor": {"host": HOST, "port": free_port()},  # on in production: aiohttp is loaded
        "buses": [
            {"id": f"tcp{i}", "kind": "modbus_tcp", "host": HOST, "port": port, "timeout": 0.5}
            for i, port in enumerate(ports)
        ],
        "devices": [
            {"kind": "modbus", "id": f"pm-{n}", "bus": f"tcp{n // 25}", "unit_id": n % 25 + 1,
             "profile": "pm-laser-rs485", "interval": 1.0}
            for n in range(args.devices)
        ],
        "alarms": {"rules": [
            {"kind": "threshold", "id": "pm25-bench", "point": "pm25", "limit": 1, "clear": 0,
             "devices": [f"pm-{n}" for n in range(args.alarms)]},
        ]},
    }  # fmt: skip
    if console is not None:
        doc["console"] = {"host": HOST, "port": console, "users_file": str(tmp / "users.yaml")}
    path = tmp / f"gateway-{console}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def sign_in(url: str) -> urllib.request.OpenerDirector:
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    page = opener.open(url + "/login").read().decode()
    token = re.search(r'name="token" value="([^"]+)"', page)
    assert token is not None
    body = f"name=bench&password={PASSWORD}&token={token.group(1)}".encode()
    opener.open(url + "/login", body).read()
    return opener


def timed(opener: urllib.request.OpenerDirector, url: str, n: int) -> tuple[list[float], int]:
    times, size = [], 0
    for _ in range(n):
        t0 = time.perf_counter()
        size = len(opener.open(url).read())
        times.append(time.perf_counter() - t0)
    return times, size


def run(args: argparse.Namespace) -> int:
    with workdir("cgw-console-") as tmp:
        broker = Broker(tmp)
        sim: Child | None = None
        try:
            broker.start()
            print(f"$ {sys.executable} {HERE.relative_to(REPO)} " + " ".join(sys.argv[1:]))
            print(f"  python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
            subprocess.run(
                [sys.executable, "-m", "gateway", "users", "add", "bench", "--role", "admin",
                 "--file", str(tmp / "users.yaml"), "--password-stdin"],
                input=PASSWORD.encode(), check=True, cwd=REPO, capture_output=True,
            )  # fmt: skip
            sim, ports = start_simulator(args.devices, 25, "pm-laser-rs485", name="sim")
            rss: dict[str, float] = {}
            for label, port in (("without console", None), ("with console", free_port())):
                with Daemon(config(tmp, broker.port, ports, args, port), tmp) as gw:
                    gw.wait_ready()
                    time.sleep(args.settle)
                    rss[label] = proc_status_mib(gw.pid, "VmRSS")
                    if port is None:
                        continue
                    url = f"http://{HOST}:{port}"
                    opener = sign_in(url)
                    duty = json.loads(opener.open(url + "/api/duty").read())
                    print(f"open alarms in the duty view: {len(duty['alarms'])}")
                    for path in ("/api/duty", "/api/devices", "/"):
                        times, size = timed(opener, url + path, args.requests)
                        ms = [1000 * t for t in times]
                        print(
                            f"GET {path:<12} {size / 1024:6.1f} KiB: median"
                            f" {statistics.median(ms):.1f} ms, p95 {pct(ms, 95):.1f} ms, p99"
                            f" {pct(ms, 99):.1f} ms, worst {max(ms):.1f} ms ({args.requests}"
                            " requests)"
                        )
            print(
                f"RSS after {args.settle:g} s, {args.devices} devices polled:"
                f" {rss['without console']:.1f} MiB without the console,"
                f" {rss['with console']:.1f} MiB with it"
                f" (+{rss['with console'] - rss['without console']:.1f} MiB)"
            )
            return 0
        finally:
            if sim is not None:
                sim.stop()
            broker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--alarms", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--settle", type=float, default=20.0, help="seconds before RSS")
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
