"""Peers of the gateway in a benchmark: subscriber, simulator, config, the daemon itself.

Contract:
- ``paho_subscriber`` is the body of every subscriber worker: plain paho (the cheapest Python
  subscriber), QoS 1, subscribed again on each connect; prints ``READY`` once the first SUBACK
  is in and returns after stdin closes and the client disconnected. Its ``on_message`` runs
  on paho's thread and should only record.
- ``worker_sim`` serves simulated Modbus TCP devices, several per port, printing ``PORTS
  [...]``; ``start_simulator`` runs it as a ``Child`` (``throughput.py --worker sim``).
- ``gateway_config`` is the validated config of the benchmark gateway (temp store, upstream on
  the bench broker, WARNING logs); ``extra`` replaces top-level keys.
- ``Daemon`` is ``python -m gateway run`` as systemd starts it, with ``NOTIFY_SOCKET`` on a
  datagram socket of ours: ``wait_ready`` returns on its own ``READY=1``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self

from harness.measure import cpu_seconds, max_rss_mib
from harness.procs import (
    BENCH,
    GATEWAY,
    HOST,
    REPO,
    ROOT,
    SITE,
    Child,
    emit_result,
    stdin_eof,
    stop_process,
    worker_argv,
)

if TYPE_CHECKING:
    from paho.mqtt.client import MQTTMessage


def paho_subscriber(
    port: int, topics: Sequence[tuple[str, int]], on_message: Callable[[MQTTMessage], None]
) -> None:
    """Subscribe ``topics`` on the bench broker; ``READY``; run until stdin closes."""
    from paho.mqtt.client import Client, ConnectFlags
    from paho.mqtt.client import MQTTMessage as Message
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

    ready = threading.Event()

    def on_connect(
        client: Client, _u: Any, _f: ConnectFlags, _rc: ReasonCode, _p: Properties | None
    ) -> None:
        client.subscribe(list(topics))

    def on_subscribe(
        _c: Client, _u: Any, _mid: int, _rc: list[ReasonCode], _p: Properties | None
    ) -> None:
        ready.set()

    def on_msg(_c: Client, _u: Any, msg: Message) -> None:
        on_message(msg)

    client = Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{os.getpid()}", clean_session=True
    )
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_msg
    client.connect(HOST, port, keepalive=60)
    client.loop_start()
    try:
        if not ready.wait(10):
            raise SystemExit("subscriber: no SUBACK within 10 s")
        print("READY", flush=True)
        sys.stdin.read()
    finally:
        client.disconnect()
        client.loop_stop()


async def worker_sim(args: argparse.Namespace) -> None:
    """Serve ``--devices`` simulated devices, ``--per-port`` per TCP port, until stdin closes."""
    from gateway.config.loader import BUILTIN_PROFILES
    from gateway.demo.sim import SimulatedDevice, Simulator

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


def start_simulator(
    devices: int, per_port: int, profile: str, name: str = "simulator"
) -> tuple[Child, list[int]]:
    """The simulator worker as a ``Child``, and the TCP ports it listens on."""
    argv = worker_argv(
        BENCH / "throughput.py",
        "sim",
        *("--devices", str(devices), "--per-port", str(per_port), "--profile", profile),
    )
    sim = Child(name, argv)
    try:
        ports: list[int] = json.loads(sim.expect("PORTS", 60))
    except BaseException:
        sim.stop()
        raise
    return sim, ports


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


class Daemon:
    """``python -m gateway run -c <cfg>`` with its own ``NOTIFY_SOCKET``; log to ``gateway.log``.

    ``with Daemon(cfg, tmp) as d: d.wait_ready()``; stopped by PID on exit. After ``READY=1``
    a thread keeps reading the socket, as systemd does (``status`` is the last ``STATUS=``): a
    datagram socket queues 10 messages (``net.unix.max_dgram_qlen``), and the gateway's next
    notification would then block its event loop.
    """

    def __init__(self, cfg: Path, tmp: Path) -> None:
        self.cfg = cfg
        self.tmp = tmp
        self.started = 0.0
        self.proc: subprocess.Popen[bytes] | None = None
        self._path = str(tmp / f"notify-{time.monotonic_ns()}.sock")
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self.status = ""
        self._log: IO[bytes] | None = None

    def __enter__(self) -> Self:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self._path)
        env = {**os.environ, "PYTHONPATH": str(REPO), "NOTIFY_SOCKET": self._path}
        self._log = (self.tmp / "gateway.log").open("ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", str(self.cfg), "--log-format", "json"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=env,
            cwd=REPO,
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=15)
        if self._log is not None:
            self._log.close()
        if self._sock is not None:
            self._sock.close()
        if self._reader is not None:
            self._reader.join(1)
        with contextlib.suppress(OSError):
            os.unlink(self._path)

    @property
    def pid(self) -> int:
        """The daemon's PID."""
        assert self.proc is not None, "not started"
        return self.proc.pid

    def wait_ready(self, timeout: float = 30) -> float:
        """Seconds from spawn to the daemon's ``READY=1``; raises if it exits or stays silent."""
        assert self._sock is not None, "not started"
        assert self.proc is not None, "not started"
        self._sock.settimeout(0.2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if b"READY=1" in self._sock.recv(4096).split(b"\n"):
                    self._reader = threading.Thread(target=self._read, name="notify", daemon=True)
                    self._reader.start()
                    return time.monotonic() - self.started
            except TimeoutError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the gateway exited with {self.proc.returncode}") from None
        raise TimeoutError("no READY=1")

    def _read(self) -> None:
        """Read the notify socket until it is closed; keep the last ``STATUS=``."""
        sock = self._sock
        while sock is not None and sock.fileno() >= 0:
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            for line in data.decode(errors="replace").splitlines():
                if line.startswith("STATUS="):
                    self.status = line[7:]
