"""Start-up benchmark: import time, time to READY=1 and RSS, idle and under 100 devices.

    .venv/bin/python bench/startup.py [--devices 100] [--runs 5] [--settle 30]

The gateway runs as ``cgw run`` (``python -m gateway run``), exactly as systemd starts it,
with everything that costs memory switched on: the upstream MQTT sink, the InfluxDB sink
(VictoriaMetrics from Debian as the server when installed, else an address nobody answers
on: the client library is loaded either way), a staff notification channel (apprise), the
local alarm API and the monitor endpoint. ``NOTIFY_SOCKET`` points at a datagram socket of
this script, so "ready" is the gateway's own ``READY=1``, sent once the store and the alarm
path are up.

Printed: import time of the daemon's modules (``-X importtime``, median of ``--runs``), spawn
to READY=1 (median and worst of ``--runs`` starts, idle config), RSS at READY, RSS after
``--settle`` s idle, and RSS and CPU after ``--settle`` s polling ``--devices`` simulated
Modbus TCP devices (1 s interval, 25 per simulator port). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from harness.measure import proc_cpu_seconds, proc_status_mib
from harness.peers import Daemon, start_simulator
from harness.procs import GATEWAY, HOST, REPO, ROOT, SITE, Broker, Child, free_port, workdir

HERE = Path(__file__).resolve()


def config(tmp: Path, broker: int, influx_url: str, sim_ports: list[int], devices: int) -> Path:
    """The benchmark config file: every optional component on."""
    secret = tmp / "secrets"
    secret.mkdir(exist_ok=True)
    for name, text in (("api-token", "b" * 32), ("webhook", f"json://127.0.0.1:{free_port()}")):
        (secret / name).write_text(text)
        (secret / name).chmod(0o600)
    doc: dict[str, Any] = {
        "gateway": {"site_id": SITE, "gateway_id": GATEWAY},
        "store": {"path": str(tmp / "buffer.db"), "quota": "256MiB", "reserve": "16MiB"},
        "upstream": {
            "mqtt": {"host": HOST, "port": broker, "topic_root": ROOT},
            "influx": {"url": influx_url, "org": "o", "bucket": "b"},
        },
        "channels": [{"id": "sms", "url_file": str(secret / "webhook")}],
        "api": {"port": free_port(), "token_file": str(secret / "api-token")},
        "monitor": {"port": free_port()},
        "log_level": "WARNING",
        "buses": [
            {"id": f"tcp{i}", "kind": "modbus_tcp", "host": HOST, "port": port, "timeout": 0.5}
            for i, port in enumerate(sim_ports)
        ],
        "devices": [
            {
                "kind": "modbus",
                "id": f"th-{n}",
                "bus": f"tcp{n // 25}",
                "unit_id": n % 25 + 1,
                "profile": "th-rs485",
                "interval": 1.0,
            }
            for n in range(devices)
        ],
    }
    path = tmp / f"gateway-{devices}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def import_ms(runs: int) -> float:
    """Median cumulative import time (ms) of the modules ``cgw run`` loads before READY."""
    code = "import gateway.cli.main, gateway.runtime.root"
    totals = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=True,
        ).stderr
        cumulative = 0
        for line in out.splitlines():
            found = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)
            if found and not found.group(2).startswith(" "):  # top-level imports only
                cumulative += int(found.group(1))
        totals.append(cumulative / 1000)
    return statistics.median(totals)


def run(args: argparse.Namespace) -> int:
    with workdir("cgw-startup-") as tmp:
        broker = Broker(tmp)
        sim: Child | None = None
        vm: Any = None
        try:
            broker.start()
            influx_url = f"http://127.0.0.1:{free_port()}"
            if shutil.which("victoria-metrics"):
                sys.path.insert(0, str(REPO))  # the tests' VictoriaMetrics runner
                from tests.support.victoria import VictoriaMetrics

                vm = VictoriaMetrics(tmp / "vm")
                vm.start()
                influx_url = vm.url
            print(f"$ {sys.executable} {HERE.relative_to(REPO)} " + " ".join(sys.argv[1:]))
            print(f"  python {sys.version.split()[0]}, {os.cpu_count()} CPUs; influx server:"
                  f" {'VictoriaMetrics' if vm else 'none (unreachable address)'}")  # fmt: skip
            ms = import_ms(args.runs)
            print(f"import gateway.cli.main + gateway.runtime.root: {ms:.0f} ms (median)")

            idle_cfg = config(tmp, broker.port, influx_url, [], 0)
            times, rss_ready = [], []
            for i in range(args.runs):
                with Daemon(idle_cfg, tmp) as gw:
                    times.append(gw.wait_ready())
                    rss_ready.append(proc_status_mib(gw.pid, "VmRSS"))
                    if i == args.runs - 1:
                        time.sleep(args.settle)  # idle: what the box carries all day
                        idle = proc_status_mib(gw.pid, "VmRSS")
            print(
                f"spawn -> READY=1 (idle config, {args.runs} starts): median"
                f" {statistics.median(times):.2f} s, worst {max(times):.2f} s"
            )
            print(f"RSS at READY: {statistics.median(rss_ready):.1f} MiB;"
                  f" after {args.settle:g} s idle: {idle:.1f} MiB")  # fmt: skip

            sim, ports = start_simulator(args.devices, 25, "th-rs485", name="sim")
            busy_cfg = config(tmp, broker.port, influx_url, ports, args.devices)
            with Daemon(busy_cfg, tmp) as gw:
                ready_s = gw.wait_ready()
                cpu0 = proc_cpu_seconds(gw.pid)
                time.sleep(args.settle)
                cpu = proc_cpu_seconds(gw.pid) - cpu0
                rss = proc_status_mib(gw.pid, "VmRSS")
                peak = proc_status_mib(gw.pid, "VmHWM")
            print(
                f"{args.devices} devices: READY after {ready_s:.2f} s; after {args.settle:g} s"
                f" polling: RSS {rss:.1f} MiB (peak {peak:.1f}), CPU"
                f" {100 * cpu / args.settle:.1f}% of one core"
            )
            return 0
        finally:
            if sim is not None:
                sim.stop()
            if vm is not None:
                vm.stop()
            broker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--settle", type=float, default=30.0, help="seconds to wait before RSS")
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
