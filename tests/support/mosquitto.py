"""A real mosquitto broker on loopback for tests (LIBRARIES.md §3.1).

One ``Mosquitto`` owns one broker process at a time, on a port picked at run time and kept across
``restart()`` so clients can reconnect to the same address after an outage. The process is always
stopped by PID; every method that starts it waits until the port accepts connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from tests.support.ports import free_port

__all__ = [
    "MOSQUITTO_BIN",
    "Mosquitto",
    "MosquittoError",
    "TlsFiles",
    "client_tls",
    "make_tls_files",
]

MOSQUITTO_BIN = "/usr/sbin/mosquitto"
_POLL_INTERVAL = 0.02
_START_ATTEMPTS = 3  # a port freed by free_port() can be taken before mosquitto binds it
_RUNNING_LINE = re.compile(rb"mosquitto version \S+ running")  # logged once listeners are bound


class MosquittoError(RuntimeError):
    """The broker did not start, or did not stop in time."""


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA, a server certificate for localhost/127.0.0.1 and a client certificate."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def client_tls(tls: TlsFiles, folder: Path) -> dict[str, str]:
    """A config's ``tls`` section for the client certificate, its key copied into ``folder``
    with mode 0600 (the config refuses a key others can read)."""
    key = folder / "client.key"
    shutil.copyfile(tls.client_key, key)
    key.chmod(0o600)
    return {"ca_file": str(tls.ca_cert), "cert_file": str(tls.client_cert), "key_file": str(key)}


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise MosquittoError(f"openssl {' '.join(args)} failed: {result.stderr.strip()}")


def make_tls_files(directory: Path, *, days: int = 3) -> TlsFiles:
    """Generate a CA, a server cert (SAN localhost, 127.0.0.1) and a client cert in ``directory``.

    Uses the ``openssl`` CLI as in LIBRARIES.md §3.1. Takes about a second (three RSA keys), so
    share the result across tests (the ``tls_files`` session fixture does).
    """
    directory.mkdir(parents=True, exist_ok=True)
    d = str(days)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", d, "-subj", "/CN=test-ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=directory)  # fmt: skip
    (directory / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    )
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, cn in (("server", "localhost"), ("client", "test-client")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", d, "-extfile", f"{name}.ext",
                 "-out", f"{name}.crt", cwd=directory)  # fmt: skip
    return TlsFiles(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )


def _port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


async def _port_accepts_async(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _wait_exit_async(proc: subprocess.Popen[bytes], timeout: float) -> bool:  # noqa: ASYNC109
    """Wait up to ``timeout`` s for ``proc`` to exit, woken by a pidfd (no polling)."""
    if proc.poll() is not None:
        return True
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()
    # The child is not reaped until poll() sees it exit, so its pid cannot be reused meanwhile.
    pidfd = os.pidfd_open(proc.pid)
    try:

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(pidfd, on_exit)
        try:
            async with asyncio.timeout(timeout):
                await exited
        except TimeoutError:
            pass
        finally:
            loop.remove_reader(pidfd)
    finally:
        os.close(pidfd)
    return proc.poll() is not None


class Mosquitto:
    """A mosquitto process with a plain listener and, with ``tls=``, a TLS listener.

    ``port`` (and ``tls_port``) are chosen once and reused by every (re)start. The TLS listener
    requires a client certificate signed by ``tls.ca_cert``. Use it as a context manager or call
    ``start()`` / ``stop()``; async tests that must keep their event loop running while the broker
    is down use the ``*_async`` variants.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        *,
        tls: TlsFiles | None = None,
        port: int | None = None,
        extra_config: str = "",
        persistence: bool = False,
    ) -> None:
        self.workdir = workdir
        self.persistence = persistence
        self.tls = tls
        self.extra_config = extra_config
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self.tls_port: int | None = free_port() if tls is not None else None
        self.config_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_offset = 0

    # -- configuration -----------------------------------------------------------------------

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Started as root, mosquitto drops to user "mosquitto", which could not read pytest's
        # 0700 tmp dirs (TLS keys). "user root" keeps root (mosquitto only logs a warning);
        # as a non-root user the option is ignored, so naming the current user works for both.
        user = pwd.getpwuid(os.geteuid()).pw_name
        lines = [
            "per_listener_settings false",
            "allow_anonymous true",
            # With persistence the broker saves sessions and their queued messages on SIGTERM,
            # so a persistent subscriber misses nothing across ``restart()``.
            *(
                ["persistence true", f"persistence_location {self.workdir}/"]
                if self.persistence
                else ["persistence false"]
            ),
            f"user {user}",
            # Test subscribers must never lose QoS 1 messages to the broker's per-client queue.
            "max_queued_messages 1000000",
            "max_queued_bytes 0",  # 0 = no limit
            "max_inflight_bytes 0",  # 0 = no limit
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            f"listener {self.port} {self.host}",
        ]
        if self.tls is not None:
            lines += [
                f"listener {self.tls_port} {self.host}",  # TLS options apply to this listener
                f"cafile {self.tls.ca_cert}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                "require_certificate true",
            ]
        if self.extra_config:
            lines.append(self.extra_config)
        self.config_path.write_text("\n".join(lines) + "\n")

    # -- process control (sync) -------------------------------------------------------------

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def log_text(self) -> str:
        """Everything the broker logged so far (all starts)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _spawn(self) -> None:
        if self.is_running():
            raise MosquittoError(f"mosquitto already running (pid {self.pid})")
        self._reap()
        self._write_config()
        self._log = self.log_path.open("ab")
        self._log_offset = self._log.tell()
        self._proc = subprocess.Popen(
            [MOSQUITTO_BIN, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def _ports(self) -> list[int]:
        return [self.port] + ([self.tls_port] if self.tls_port is not None else [])

    def _logged_running(self) -> bool:
        """True once this start logged "mosquitto version X running": all listeners are bound.

        Needed besides a port check, because another process holding the port would accept
        connections while our mosquitto is about to exit with "Address already in use".
        """
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read()
        except FileNotFoundError:
            return False
        return _RUNNING_LINE.search(text) is not None

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            code = self._proc.returncode
            self._reap()
            raise MosquittoError(f"mosquitto exited with {code}:\n{self.log_text()[-2000:]}")

    def _new_ports(self) -> None:
        """After a failed first start (port taken), pick new ports unless the caller fixed them."""
        if self._fixed_port:
            return
        self.port = free_port()
        if self.tls_port is not None:
            self.tls_port = free_port()

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until every listener accepts connections."""
        for attempt in range(_START_ATTEMPTS):
            self._spawn()
            try:
                self._wait_ready(timeout)
                return
            except MosquittoError:
                self._terminate_now()
                if attempt == _START_ATTEMPTS - 1 or self._fixed_port:
                    raise
                self._new_ports()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = self._ports()
        while True:
            self._check_alive()
            if self._logged_running():
                pending = [p for p in pending if not _port_accepts(self.host, p)]
                if not pending:
                    return
            if time.monotonic() > deadline:
                raise MosquittoError(f"mosquitto not listening on {pending} after {timeout} s")
            time.sleep(_POLL_INTERVAL)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited after ``timeout`` s; wait for the exit."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self._reap()

    def kill(self) -> None:
        """SIGKILL (no clean shutdown, no will messages sent by the broker itself) and wait."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        self._reap()

    def restart(self, down_for: float = 0.0, timeout: float = 10.0) -> None:
        """Stop, stay down ``down_for`` seconds (the outage), start again on the same port(s).

        Blocks the calling thread; from async tests use ``restart_async``.
        """
        self.stop()
        if down_for > 0:
            time.sleep(down_for)
        self._spawn()
        try:
            self._wait_ready(timeout)
        except MosquittoError:
            self._terminate_now()
            raise

    def _terminate_now(self) -> None:
        with contextlib.suppress(MosquittoError):
            self.stop(timeout=2.0)

    def _reap(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None
        if self._proc is None and self._log is not None:
            self._log.close()
            self._log = None

    # -- process control (async: never blocks the event loop for long) ----------------------

    async def start_async(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (mirrors start)
        """Like ``start()`` (same port), polling without blocking the event loop."""
        self._spawn()
        try:
            await self._wait_ready_async(timeout)
        except MosquittoError:
            await self.stop_async(timeout=2.0)
            raise

    async def _wait_ready_async(self, timeout: float) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        pending = self._ports()
        while True:
            self._check_alive()
            if self._logged_running():
                pending = [p for p in pending if not await _port_accepts_async(self.host, p)]
                if not pending:
                    return
            if time.monotonic() > deadline:
                raise MosquittoError(f"mosquitto not listening on {pending} after {timeout} s")
            await asyncio.sleep(_POLL_INTERVAL)

    async def stop_async(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (mirrors stop)
        """Like ``stop()``, waiting for the exit without blocking the event loop."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            if not await _wait_exit_async(proc, timeout):
                proc.kill()
                if not await _wait_exit_async(proc, timeout):
                    raise MosquittoError(f"mosquitto (pid {proc.pid}) survived SIGKILL")
        self._reap()

    async def restart_async(
        self,
        down_for: float = 0.0,
        timeout: float = 10.0,  # noqa: ASYNC109 (mirrors restart)
    ) -> None:
        """Like ``restart()``; the event loop keeps running during the ``down_for`` s outage."""
        await self.stop_async()
        if down_for > 0:
            await asyncio.sleep(down_for)
        await self.start_async(timeout)

    # -- context manager ----------------------------------------------------------------------

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
        return f"Mosquitto({self.host}:{self.port}, tls_port={self.tls_port}, pid={self.pid})"
