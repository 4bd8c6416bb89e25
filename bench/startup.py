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
import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import throughput as tp
import yaml

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]


def config(tmp: Path, broker: int, influx_url: str, sim_ports: list[int], devices: int) -> Path:
    """The benchmark config file: every optional component on."""
    secret = tmp / "secrets"
    secret.mkdir(exist_ok=True)
    for name, text in (("api-token", "b" * 32), ("webhook", f"json://127.0.0.1:{tp.free_port()}")):
        (secret / name).write_text(text)
        (secret / name).chmod(0o600)
    doc: dict[str, Any] = {
        "gateway": {"site_id": tp.SITE, "gateway_id": tp.GATEWAY},
        "store": {"path": str(tmp / "buffer.db"), "quota": "256MiB", "reserve": "16MiB"},
        "upstream": {
            "mqtt": {"host": tp.HOST, "port": broker, "topic_root": tp.ROOT},
            "influx": {"url": influx_url, "org": "o", "bucket": "b"},
        },
        "channels": [{"id": "sms", "url_file": str(secret / "webhook")}],
        "api": {"port": tp.free_port(), "token_file": str(secret / "api-token")},
        "monitor": {"port": tp.free_port()},
        "log_level": "WARNING",
        "buses": [
            {"id": f"tcp{i}", "kind": "modbus_tcp", "host": tp.HOST, "port": port, "timeout": 0.5}
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


@contextlib.contextmanager
def notify_socket(tmp: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp / f"notify-{time.monotonic_ns()}.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        yield sock, path
    finally:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)


def start_gateway(cfg: Path, notify: str, tmp: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NOTIFY_SOCKET": notify}
    log = (tmp / "gateway.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "-c", str(cfg), "--log-format", "json"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
        cwd=REPO,
    )


def wait_ready(sock: socket.socket, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    sock.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if b"READY=1" in sock.recv(4096).split(b"\n"):
                return
        except TimeoutError:
            if proc.poll() is not None:
                raise RuntimeError(f"the gateway exited with {proc.returncode}") from None
    raise TimeoutError("no READY=1")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


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
    tmp = Path(tempfile.mkdtemp(prefix="cgw-startup-"))
    broker = tp.Broker(tmp)
    sim: tp.Child | None = None
    vm: Any = None
    try:
        broker.start()
        influx_url = f"http://127.0.0.1:{tp.free_port()}"
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
            with notify_socket(tmp) as (sock, path):
                started = time.monotonic()
                proc = start_gateway(idle_cfg, path, tmp)
                try:
                    wait_ready(sock, proc)
                    times.append(time.monotonic() - started)
                    rss_ready.append(tp.proc_status_mib(proc.pid, "VmRSS"))
                    if i == args.runs - 1:
                        time.sleep(args.settle)  # idle: what the box carries all day
                        idle = tp.proc_status_mib(proc.pid, "VmRSS")
                finally:
                    stop(proc)
        print(
            f"spawn -> READY=1 (idle config, {args.runs} starts): median"
            f" {statistics.median(times):.2f} s, worst {max(times):.2f} s"
        )
        print(f"RSS at READY: {statistics.median(rss_ready):.1f} MiB;"
              f" after {args.settle:g} s idle: {idle:.1f} MiB")  # fmt: skip

        sim = tp.Child(
            "sim",
            tp.worker_argv("sim", "--devices", str(args.devices), "--per-port", "25",
                           "--profile", "th-rs485"),
        )  # fmt: skip
        ports = [int(p) for p in sim.expect("PORTS", 30).strip("[]").split(",")]
        busy_cfg = config(tmp, broker.port, influx_url, ports, args.devices)
        with notify_socket(tmp) as (sock, path):
            started = time.monotonic()
            proc = start_gateway(busy_cfg, path, tmp)
            try:
                wait_ready(sock, proc)
                ready_s = time.monotonic() - started
                cpu0 = tp.proc_cpu_seconds(proc.pid)
                time.sleep(args.settle)
                cpu = tp.proc_cpu_seconds(proc.pid) - cpu0
                rss = tp.proc_status_mib(proc.pid, "VmRSS")
                peak = tp.proc_status_mib(proc.pid, "VmHWM")
            finally:
                stop(proc)
        print(
            f"{args.devices} devices: READY after {ready_s:.2f} s; after {args.settle:g} s"
            f" polling: RSS {rss:.1f} MiB (peak {peak:.1f}), CPU {100 * cpu / args.settle:.1f}%"
            " of one core"
        )
        return 0
    finally:
        if sim is not None:
            sim.stop()
        if vm is not None:
            vm.stop()
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--settle", type=float, default=30.0, help="seconds to wait before RSS")
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
