"""A real VictoriaMetrics on loopback for tests (LIBRARIES.md §3.7, P12, P13).

It serves ``/api/v2/write`` like InfluxDB, so the InfluxDB sink writes to it unchanged; what was
written is read back from ``/api/v1/export`` after ``/internal/force_flush``. It answers 204 to
malformed writes (P13), so tests always read back. One ``VictoriaMetrics`` owns one process at a
time, on a port picked at start and kept across ``restart()``; the process is stopped by PID.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.support.ports import free_port

__all__ = ["VICTORIA_BIN", "VictoriaError", "VictoriaMetrics"]

VICTORIA_BIN = "/usr/bin/victoria-metrics"
_START_TIMEOUT = 15.0
_STOP_TIMEOUT = 10.0
_START_ATTEMPTS = 3  # a port from free_port() can be taken before the server binds it


class VictoriaError(RuntimeError):
    """The server did not start, or did not stop in time."""


class VictoriaMetrics:
    """``victoria-metrics`` with its data in ``directory``, on ``127.0.0.1:<free port>``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = directory / "victoria.log"

    @property
    def url(self) -> str:
        """Base URL for clients (``http://127.0.0.1:<port>``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's PID while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def log_text(self) -> str:
        """What the server logged (WARN and above)."""
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def start(self) -> None:
        """Start on a new free port and wait until ``/health`` answers OK."""
        last: Exception | None = None
        for _ in range(_START_ATTEMPTS):
            self.port = free_port()
            try:
                self._spawn_and_wait()
                return
            except VictoriaError as exc:
                last = exc
                self.stop()
        raise VictoriaError(f"victoria-metrics did not start: {last}")

    def restart(self) -> None:
        """Start again on the same port with the same data (after ``stop()``)."""
        if self.pid is not None:
            self.stop()
        self._spawn_and_wait()

    def stop(self) -> None:
        """Terminate by PID (a graceful shutdown flushes data to disk) and wait."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(_STOP_TIMEOUT)
            raise VictoriaError(f"victoria-metrics (pid {proc.pid}) ignored SIGTERM") from None

    def _spawn_and_wait(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    VICTORIA_BIN,
                    f"-storageDataPath={self.directory / 'data'}",
                    f"-httpListenAddr=127.0.0.1:{self.port}",
                    "-retentionPeriod=1d",
                    "-loggerLevel=WARN",
                    "-search.latencyOffset=0s",  # fresh data visible at once (P12)
                    "-search.disableCache",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise VictoriaError(
                    f"exited with {self._proc.returncode}: {self.log_text()[-2000:]}"
                )
            if self._health():
                return
            time.sleep(0.02)
        raise VictoriaError(f"/health not OK after {_START_TIMEOUT} s on port {self.port}")

    def _health(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=0.5) as resp:
                ok: bool = resp.status == 200 and resp.read().strip() == b"OK"
                return ok
        except (OSError, urllib.error.URLError):
            return False

    def _get(self, path: str, data: dict[str, str] | None = None) -> bytes:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        with urllib.request.urlopen(f"{self.url}{path}", data=body, timeout=10) as resp:
            out: bytes = resp.read()
            return out

    def export(self, match: str) -> list[dict[str, Any]]:
        """Flush, then every series matching ``match`` as ``{"metric", "values", "timestamps"}``."""
        self._get("/internal/force_flush")
        raw = self._get("/api/v1/export", {"match[]": match})
        return [json.loads(line) for line in raw.decode().splitlines() if line.strip()]

    async def query_export(self, match: str) -> list[dict[str, Any]]:
        """``export`` run in a thread, for async tests."""
        return await asyncio.to_thread(self.export, match)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
