"""Fault-matrix row F33: the disk fails its flushes (fsync EIO) while the gateway runs.

The real daemon, two real mosquitto brokers (upstream and local, persisting sessions) and a real
MQTT button. Once a first press is raised and upstream, ``strace`` attaches to every thread of
the daemon and makes each ``fsync`` and ``fdatasync`` fail with EIO, as a dying SD card does.
A second press then cannot be committed. What the matrix asks: the store is marked failed, the
press is not acknowledged to its source, the daemon exits non-zero (systemd restarts it), and
nothing committed before the error is lost. The next start, on a healthy disk, gets the press
again from the local broker and raises it: exactly two alarms, each raised once.
"""

import asyncio
import contextlib
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.test_broker_return import PREFIX, brokers, config, press, raised, ready
from tests.support.daemon import Daemon, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.subscriber import Recorder

pytestmark = pytest.mark.slow
__all__ = ["brokers"]  # the fixture


def two_buttons(store: Path, upstream: int, local: int) -> dict[str, Any]:
    doc = config(store, upstream, local)
    doc["devices"].append({**doc["devices"][0], "id": "flat-14-sos", "topic": "flat14/sos"})
    doc["alarms"]["rules"].append({"kind": "contact", "id": "sos14", "device": "flat-14-sos"})
    return doc


@contextlib.contextmanager
def failing_flushes(pid: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``strace`` on every thread of ``pid``: each fsync and fdatasync fails with EIO."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (make test installs it)")
    proc = subprocess.Popen(
        [strace, "-f", "-qq", "-p", str(pid), "-o", str(log),
         "-e", "trace=fsync,fdatasync", "-e", "inject=fsync,fdatasync:error=EIO"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=10)  # reaps it and closes its stderr pipe


def _all_traced(pid: int) -> bool:
    tasks = list(Path(f"/proc/{pid}/task").iterdir())
    traced = 0
    for task in tasks:
        with contextlib.suppress(OSError):
            traced += "TracerPid:\t0\n" not in (task / "status").read_text()
    return traced == len(tasks)


async def attached(strace: subprocess.Popen[bytes], pid: int) -> None:
    """Until strace traces every thread of ``pid`` (each shows ``TracerPid`` in its status)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if strace.poll() is not None:
            err = strace.stderr.read().decode() if strace.stderr else ""
            pytest.skip(f"strace cannot attach here: {err.strip() or strace.returncode}")
        if _all_traced(pid):
            return
        await asyncio.sleep(0.05)  # another process's state; bounded
    raise AssertionError("strace did not attach to every thread within 10 s")


async def test_a_failing_flush_stops_the_gateway_before_it_acknowledges_the_press(
    tmp_path: Path, daemon: Daemon, brokers: tuple[Mosquitto, Mosquitto]
) -> None:
    up, local = brokers
    db = tmp_path / "buf.db"
    write_config(daemon.config, two_buttons(db, up.port, local.port))

    def platform() -> Recorder:
        return Recorder(up.host, up.port, f"{PREFIX}/alarm/#", identifier="pf", clean_session=False)

    async with platform() as rec:
        daemon.start()
        await ready(daemon)
        await press(local.port, "e-12")
        await rec.wait_for(lambda _: len(raised(rec)) == 1, timeout=15)
        assert daemon.proc is not None
        pid = daemon.proc.pid
        with failing_flushes(pid, tmp_path / "strace.log") as strace:
            await attached(strace, pid)
            await press(local.port, "e-14", "flat14/sos")
            rc = await asyncio.to_thread(daemon.proc.wait, 20)
        assert rc != 0  # an exit, for systemd to restart: never going on silently
        first = raised(rec)
    assert len(first) == 1  # the second press was not raised upstream
    errors = [e["msg"] for e in daemon.logs() if e["level"] in ("ERROR", "CRITICAL")]
    assert any("disk I/O error" in m for m in errors), errors

    daemon.start()  # the disk is healthy again
    async with platform() as rec:
        await rec.wait_for(lambda _: len(raised(rec)) >= 1, timeout=30)
        rc, _ = daemon.terminate()
    assert rc == 0
    second = raised(rec)
    ids = [a["alarm_id"] for a in first + second]
    assert len(set(ids)) == len(ids) == 2, ids  # each press raised once, none lost
    assert [a["device"] for a in first + second] == ["flat-12-sos", "flat-14-sos"]
    with sqlite3.connect(db) as conn:  # what the gateway itself committed
        assert sorted(r[0] for r in conn.execute("SELECT id FROM alarms")) == sorted(ids)
