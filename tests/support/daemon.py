"""The gateway as a real process (``python -m gateway run``), for end-to-end tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def write_config(path: Path, doc: dict[str, Any]) -> Path:
    """Write a config document as YAML; returns ``path``."""
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def gateway_config(
    store: Path,
    broker_port: int,
    modbus_port: int,
    units: list[int],
    interval: float = 0.2,
    timeout: float = 0.1,
) -> dict[str, Any]:
    """A config polling ``units`` on one Modbus TCP endpoint, publishing to a local broker.

    The short default ``timeout`` finds a stopped simulator fast; a test that needs every
    device to *stay* online on a busy machine (the simulator runs in the test's own process)
    passes a longer one.
    """
    return {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(store), "quota": "16MiB", "reserve": "1MiB", "commit_interval": 0.2},
        "upstream": {
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker_port,
                "reconnect_max": 2.0,
                "publish_timeout": 3.0,
            }
        },
        "buses": [
            {
                "id": "tcp",
                "kind": "modbus_tcp",
                "host": "127.0.0.1",
                "port": modbus_port,
                "timeout": timeout,
                "retries": 0,
            }
        ],
        "devices": [
            {
                "kind": "modbus",
                "id": f"dev-{u}",
                "bus": "tcp",
                "unit_id": u,
                "interval": interval,
                "points": [{"name": "counter", "address": 0, "type": "uint32"}],
            }
            for u in units
        ],
    }


class Daemon:
    """One ``cgw run`` process; logs (JSON lines) go to ``log_path``."""

    def __init__(self, config: Path, log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.fault: str | None = None  # a fault of ``tests.support.faulty`` to start with
        self.wrap: Callable[[list[str]], list[str]] | None = None  # e.g. a mount namespace
        self.env: dict[str, str] = {}  # added to the environment

    def start(self) -> None:
        """Start ``cgw run`` (with ``fault`` put in, when one is set)."""
        env = {**os.environ, "PYTHONPATH": str(REPO), **self.env}
        module = ["gateway"] if self.fault is None else ["tests.support.faulty", self.fault]
        command = [sys.executable, "-m", *module, "run", "-c", str(self.config)]
        command += ["--log-format", "json"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command if self.wrap is None else self.wrap(command),
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
                cwd=REPO,
            )

    def logs(self) -> list[dict[str, Any]]:
        """Every JSON log line written so far."""
        out = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    async def wait_log(self, text: str, timeout: float = 15.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The first log line containing ``text``; fails if the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.logs():
                if text in entry["msg"]:
                    return entry
            if self.proc is not None and self.proc.poll() is not None:
                break
            await asyncio.sleep(0.05)  # polling a file another process writes; bounded
        raise AssertionError(f"no log line with {text!r}; log:\n{self.log_path.read_text()}")

    def terminate(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        return rc, time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        """Make sure the process is gone (fixture teardown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def run_cgw(*argv: str) -> tuple[int, str, str]:
    """``cgw ARGV`` (``python -m gateway``) as a process: (exit code, stdout, stderr); the
    caller's event loop keeps running meanwhile."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def stored_telemetry(db: Path) -> tuple[int, set[int]]:
    """(highest telemetry seq ever assigned, seqs still waiting in the outbox)."""
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT next FROM lane_seq WHERE lane=2").fetchone()
        waiting = {r[0] for r in conn.execute("SELECT seq FROM outbox WHERE lane=2")}
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    assert check == "ok", check
    return (row[0] - 1 if row else 0), waiting
