"""A pair of connected pseudo-terminals from socat, for Modbus RTU tests (LIBRARIES.md §3.5).

Bytes written to ``a`` come out of ``b`` and back. Either end can be closed and reopened while
socat runs. ``stop()`` terminates socat by PID, which also removes the two links.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = ["SOCAT_BIN", "PtyPair", "PtyPairError"]

SOCAT_BIN = "/usr/bin/socat"
_POLL_INTERVAL = 0.01
_counter = itertools.count()


class PtyPairError(RuntimeError):
    """socat did not create the links in time, or exited."""


class PtyPair:
    """``socat -d -d pty,raw,echo=0,link=A pty,raw,echo=0,link=B`` with per-instance link names."""

    def __init__(self, directory: Path, *, name: str = "tty") -> None:
        self.directory = directory
        tag = f"{name}-{os.getpid()}-{next(_counter)}"
        self.a = directory / f"{tag}-a"
        self.b = directory / f"{tag}-b"
        self.log_path = directory / f"{tag}.socat.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = 5.0) -> None:
        """Start socat and wait until both links exist."""
        if self.is_running():
            raise PtyPairError(f"socat already running (pid {self.pid})")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [
                SOCAT_BIN,
                "-d",
                "-d",
                f"pty,raw,echo=0,link={self.a}",
                f"pty,raw,echo=0,link={self.b}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        try:
            while not (self.a.exists() and self.b.exists()):
                if self._proc.poll() is not None:
                    raise PtyPairError(
                        f"socat exited with {self._proc.returncode}: {self.log_text()[-2000:]}"
                    )
                if time.monotonic() > deadline:
                    raise PtyPairError(f"socat links not created after {timeout} s")
                time.sleep(_POLL_INTERVAL)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM socat by PID (SIGKILL after ``timeout`` s) and wait for it to exit."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        # socat removes its links on SIGTERM, not after SIGKILL
        for link in (self.a, self.b):
            link.unlink(missing_ok=True)

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

    def __repr__(self) -> str:
        return f"PtyPair(a={self.a}, b={self.b}, pid={self.pid})"
