"""Processes of a benchmark: workers, mosquitto, temporary folders; all stopped by PID.

Contract:
- A worker is this or another bench script run with ``--worker <kind>``; it talks to the
  orchestrator by stdout lines (``READY``, ``RESULT {json}``, ...) and stops when its stdin
  is closed (``stdin_eof``). ``Child.expect`` returns the next line with a prefix and echoes
  the others; a worker that exits early or stays silent raises.
- ``Broker`` is a mosquitto on a free loopback port that never drops a QoS 1 message for a slow
  subscriber (queues unbounded), so a benchmark measures the gateway, not the broker's limits;
  given other ``bounds`` (the shipped local broker's, for a flood) it drops what they say.
  With ``persistence`` it saves sessions and their queued messages when stopped and restores
  them when started again on the same port (a broker outage the platform's subscriber outlives).
- ``Phase`` owns a phase's broker and workers and stops them all, whatever happens.
- ``stop_process`` is the one way to end a process: SIGTERM, then SIGKILL, by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Self

from harness.measure import CpuSampler, proc_cpu_seconds, proc_status_mib

BENCH = Path(__file__).resolve().parents[1]
REPO = BENCH.parent
MOSQUITTO = "/usr/sbin/mosquitto"
HOST = "127.0.0.1"
ROOT, SITE, GATEWAY = "cgw", "bench", "gw1"
PREFIX = f"{ROOT}/{SITE}/{GATEWAY}"
# a broker that never drops a QoS 1 message for a slow subscriber (LIBRARIES §5a: the default
# max_queued_messages 1000 does)
NEVER_DROP = (
    "max_queued_messages 1000000",
    "max_queued_bytes 0",
    "max_inflight_messages 1000",
    "max_inflight_bytes 0",
)


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A fresh temporary folder, removed with everything in it afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def worker_argv(script: Path, kind: str, *extra: str) -> list[str]:
    """The command line of ``script``'s worker ``kind``."""
    return [sys.executable, str(script), "--worker", kind, *extra]


def emit_result(result: dict[str, Any]) -> None:
    """A worker's result: one ``RESULT {json}`` line on stdout."""
    print("RESULT " + json.dumps(result), flush=True)


async def stdin_eof() -> None:
    """Return once standard input is closed (how the orchestrator stops a long-lived worker)."""
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """SIGTERM by PID, SIGKILL if it is still there after ``timeout`` s; reaped either way."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class Child:
    """A worker subprocess: stdin to stop it, stdout lines read by a thread into a queue."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env
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
        """Close stdin and give the worker ``timeout`` s to finish; then ``stop_process``."""
        self.close_stdin()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)


class Broker:
    """A mosquitto on a free loopback port; by default it never drops a QoS 1 message.

    ``bounds`` are config lines that replace ``NEVER_DROP`` (queue and packet limits, and
    ``sys_interval`` for a benchmark that reads the broker's ``$SYS`` counters).
    """

    def __init__(
        self, workdir: Path, bounds: Sequence[str] = NEVER_DROP, *, persistence: bool = False
    ) -> None:
        self.workdir = workdir
        self.bounds = tuple(bounds)
        self.persistence = persistence
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
                    *(
                        ["persistence true", f"persistence_location {self.workdir}/"]
                        if self.persistence  # saved on SIGTERM, read back at the next start
                        else ["persistence false"]
                    ),
                    f"user {user}",
                    *self.bounds,
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
        """The broker's peak RSS (``VmHWM``)."""
        return proc_status_mib(self.proc.pid, "VmHWM") if self.proc else float("nan")

    def cpu_s(self) -> float:
        """The broker's CPU time so far."""
        return proc_cpu_seconds(self.proc.pid) if self.proc else float("nan")

    def stop(self) -> None:
        """``stop_process`` and close the log."""
        if self.proc is not None:
            stop_process(self.proc)
        if self._log is not None:
            self._log.close()


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


class Phase:
    """The broker and workers of one benchmark phase, each watched by ``cpu``.

    ``with Phase(tmp, cpu) as phase:`` starts a fresh ``Broker``; ``phase.own(child)`` adds a
    worker; on exit every worker is stopped (last started first), then the broker.
    """

    def __init__(self, tmp: Path, cpu: CpuSampler) -> None:
        self.tmp = tmp
        self.cpu = cpu
        self.broker = Broker(tmp)
        self.children: list[Child] = []

    def __enter__(self) -> Self:
        try:
            self.broker.start()
        except BaseException:
            self.broker.stop()
            raise
        assert self.broker.proc is not None
        self.cpu.watch("broker", self.broker.proc.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for child in reversed(self.children):
                child.stop()
        finally:
            self.broker.stop()

    def own(self, child: Child) -> Child:
        """Watch ``child`` and stop it with the phase."""
        self.children.append(child)
        self.cpu.watch(child.name, child.proc.pid)
        return child

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        """Start the worker ``argv`` as ``name`` (in ``env``, if given) and own it."""
        return self.own(Child(name, argv, env))


@contextlib.contextmanager
def hogs(n: int) -> Iterator[None]:
    """``n`` busy loops at niceness 0 while inside (CPU starvation, F40); stopped by PID."""
    loops = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        for _ in range(n)
    ]
    try:
        yield
    finally:
        for proc in loops:
            proc.kill()
            proc.wait()
