"""Measurements of a benchmark: RSS and CPU per process, machine load, percentiles, headers.

Contract: figures are read from ``resource.getrusage`` (this process) and ``/proc`` (others);
a process that is gone reads NaN, never raises. ``CpuSampler`` samples every 0.2 s in a thread
and turns two moments into % of one core per watched process, for the machine, and for
"other" (load on the shared cores that is not this benchmark). Percentiles are nearest-rank.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import os
import platform
import resource
import shlex
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
MOSQUITTO = "/usr/sbin/mosquitto"


def max_rss_mib() -> float:
    """Peak RSS of this process so far (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def proc_status_mib(pid: int | str, key: str) -> float:
    """A ``kB`` field of ``/proc/<pid>/status`` (VmRSS, VmHWM) in MiB; NaN if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process from ``/proc/<pid>/stat``; NaN if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile ``p`` (0-100) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (``/proc/stat``: all but idle and iowait)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK


class CpuSampler:
    """Every 0.2 s: machine-wide busy CPU and the CPU time of each watched process.

    ``usage(t0, t1)`` turns the samples around a window into % of one core per process, for
    the machine, and for "other" (load on the machine that is not this benchmark: the cores
    are shared, so that load is part of every figure).
    """

    def __init__(self, period: float = 0.2) -> None:
        self.period = period
        self.pids: dict[str, int] = {"orchestrator": os.getpid()}
        self.samples: list[tuple[float, float, dict[str, float]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def watch(self, name: str, pid: int) -> None:
        """Sample ``pid`` as ``name`` from now on."""
        with self._lock:
            self.pids[name] = pid
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()

    def sample(self) -> None:
        """Take one sample now."""
        with self._lock:
            last = self.samples[-1][2] if self.samples else {}
            cpu = {}
            for name, pid in self.pids.items():
                value = proc_cpu_seconds(pid)
                cpu[name] = last.get(name, math.nan) if math.isnan(value) else value
            self.samples.append((time.monotonic(), machine_busy_seconds(), cpu))

    def usage(self, t0: float, t1: float) -> dict[str, float]:
        """% of one core per watched process, ``machine`` and ``other``, between t0 and t1."""
        with self._lock:
            before = [s for s in self.samples if s[0] <= t0] or self.samples[:1]
            after = [s for s in self.samples if s[0] >= t1] or self.samples[-1:]
        (m0, busy0, cpu0), (m1, busy1, cpu1) = before[-1], after[0]
        span = max(m1 - m0, 1e-9)
        out = {}
        for name, end in cpu1.items():
            start = cpu0.get(name, 0.0)  # started inside the window: from 0
            out[name] = 100 * (end - (0.0 if math.isnan(start) else start)) / span
        out["machine"] = 100 * (busy1 - busy0) / span
        out["other"] = out["machine"] - sum(v for k, v in out.items() if k != "machine")
        return out


def cpu_per_msg_us(use: dict[str, float], name: str, seconds: float, n: int) -> float:
    """CPU µs per message of process ``name`` that used ``use[name]`` % for ``seconds``."""
    return 1e6 * use.get(name, math.nan) / 100 * seconds / n if n else math.nan


def cpu_line(use: dict[str, float], names: Sequence[str], what: str = "") -> str:
    """``CPU<what>, % of one core: a 12%, b 3%; machine 80% of 200%, of which other 5%``."""
    ours = ", ".join(f"{name} {use.get(name, math.nan):.0f}%" for name in names)
    cores = os.cpu_count() or 1
    return (
        f"  CPU{what}, % of one core: {ours}; machine {use['machine']:.0f}% of {100 * cores}%, "
        f"of which other processes {max(0.0, use['other']):.0f}%"
    )


def usage_lines(use: dict[str, float], names: Sequence[str], seconds: float, n: int) -> str:
    """CPU per process (% of one core, and µs per message: steadier than rates under load)."""
    per = ", ".join(f"{name} {cpu_per_msg_us(use, name, seconds, n):.0f}" for name in names)
    return f"{cpu_line(use, names)}\n  CPU µs per message: {per}"


def version(dist: str) -> str:
    """The installed version of ``dist``, or "?"."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def machine_lines() -> list[str]:
    """Architecture, cores, CPU model, library versions and the load at start."""
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        first = subprocess.run(
            [MOSQUITTO, "-h"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.splitlines()[0]
        mosq = first.removeprefix("mosquitto version ").strip()
    except (OSError, IndexError, subprocess.TimeoutExpired):
        mosq = "?"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"machine: {platform.machine()}, nproc {os.cpu_count()}, {cpu}; {platform.platform()}",
        f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, mosquitto {mosq}, "
        f"paho-mqtt {version('paho-mqtt')}, aiomqtt {version('aiomqtt')}, "
        f"pymodbus {version('pymodbus')}",
        f"load average at start: {load} (loopback only; ±25% run to run)",
    ]


def print_header() -> None:
    """The exact command line and the machine: the first lines of every report."""
    print("command: " + shlex.join(sys.orig_argv))
    for line in machine_lines():
        print(line)


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
