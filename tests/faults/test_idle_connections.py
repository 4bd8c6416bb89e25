"""Fault 9: idle connections never take the API and the monitor down.

On main, 1,100 idle loopback connections under the unit's ``LimitNOFILE=1024`` made both
unreachable and asyncio logged some 10k tracebacks a second. Here the real daemon runs
under that limit and gets 1,100 idle connections on each listener: every connection
offered is either still open or was closed by the cap (offered = open + evicted, exactly),
``/health`` and the API answer, an SOS still goes through, and the log stays a few lines.
"""

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from gateway.ops.logs import RepeatFilter
from gateway.transport.listener import LISTENERS, RESERVED_FDS
from tests.faults.local_api import PREFIX, LimitedDaemon, call, config, press
from tests.support.daemon import write_config
from tests.support.mosquitto import Mosquitto
from tests.support.subscriber import Recorder

IDLE = 1100  # connections per listener, as in the finding
NOFILE = 1024  # the unit's LimitNOFILE


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[LimitedDaemon]:
    d = LimitedDaemon(tmp_path / "gw.yaml", tmp_path / "gw.log", NOFILE)
    try:
        yield d
    finally:
        d.stop()


class IdleClients:
    """``n`` loopback connections that never send a byte; counts those the server closed."""

    def __init__(self) -> None:
        self.closed = 0
        self.changed = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self, port: int, n: int) -> None:
        async with asyncio.timeout(60):
            await self._open(port, n)

    async def _open(self, port: int, n: int) -> None:
        for _ in range(n):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            self._writers.append(writer)
            task = asyncio.create_task(self._watch(reader))
            self._tasks.add(task)

    async def _watch(self, reader: asyncio.StreamReader) -> None:
        assert await reader.read() == b""  # the server never answers, it only closes
        self.closed += 1
        self.changed.set()

    async def until_closed(self, n: int) -> None:
        async with asyncio.timeout(30):
            while self.closed < n:
                self.changed.clear()
                await self.changed.wait()
        assert self.closed == n

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for writer in self._writers:
            writer.close()


@pytest.mark.slow
async def test_idle_connections_leave_health_and_the_api_answering(
    tmp_path: Path, mosquitto: Mosquitto, daemon: LimitedDaemon
) -> None:
    doc = config(tmp_path, mosquitto.port, header_timeout=300)  # no timeouts during the test
    write_config(daemon.config, doc)
    daemon.start()
    api_line = await daemon.wait_log("local alarm API on")
    monitor_line = await daemon.wait_log("health and metrics on")
    await daemon.wait_log("subscribed to 1 button topics")
    budget = await daemon.wait_log("file descriptors: soft limit")
    cap = (NOFILE - RESERVED_FDS) // LISTENERS
    assert (budget["nofile"], api_line["cap"], monitor_line["cap"]) == (NOFILE, cap, cap)
    lines_before = len(daemon.log_path.read_text().splitlines())
    monitor = f"http://127.0.0.1:{doc['monitor']['port']}"
    api = f"http://127.0.0.1:{doc['api']['port']}/v1"
    on_monitor, on_api = IdleClients(), IdleClients()
    try:
        async with Recorder(mosquitto.host, mosquitto.port, f"{PREFIX}/alarm/#") as rec:
            await on_monitor.open(doc["monitor"]["port"], IDLE)
            await on_api.open(doc["api"]["port"], IDLE)
            await on_monitor.until_closed(IDLE - cap)  # offered = open + evicted
            await on_api.until_closed(IDLE - cap)
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{monitor}/health") as resp:
                    assert resp.status == 200
                    assert (await resp.json())["status"] == "ok"
                await on_monitor.until_closed(IDLE - cap + 1)  # room made for /health
                assert (await call(session, "GET", f"{api}/alarms"))[0] == 200
                await on_api.until_closed(IDLE - cap + 1)
                flood = daemon.log_path.read_text().splitlines()[lines_before:]
                await press(mosquitto.port, "e-1")
                got = await rec.wait_for(lambda m: len(m) >= 2, timeout=15)
                assert [m.topic.split("/")[3] for m in got[:2]] == ["alarm", "alarm"]
                status, alarms = await call(session, "GET", f"{api}/alarms")
                assert (status, [a["device"] for a in alarms]) == (200, ["lobby-sos"])
            assert (on_monitor.closed, on_api.closed) == (IDLE - cap + 1, IDLE - cap + 1)
    finally:
        on_monitor.close()
        on_api.close()
    rc, _ = daemon.terminate()
    assert rc == 0
    logs = daemon.logs()
    assert [e for e in logs if e["level"] == "ERROR" or "exc" in e] == []
    assert not any("Too many open files" in e["msg"] for e in logs)
    caps = [e["listener"] for e in logs if "connections open, the cap" in e["msg"]]
    assert sorted(caps) == ["local alarm API", "monitor"]  # one warning each, not one a close
    assert len(flood) == 2, flood  # 2,200 connections, 1,434 closed: two log lines


def test_repeated_errors_are_rate_limited_and_counted() -> None:
    now = [0.0]
    kept: list[logging.LogRecord] = []
    limiter = RepeatFilter(burst=3, window=10.0, clock=lambda: now[0])

    def emit(msg: str, level: int = logging.ERROR) -> None:
        record = logging.LogRecord("asyncio", level, __file__, 1, msg, None, None)
        if limiter.filter(record):
            kept.append(record)

    for _ in range(10_000):
        emit("socket.accept() out of system resource")
    emit("another error")
    emit("alarm", logging.CRITICAL)
    emit("alarm", logging.CRITICAL)
    assert [r.getMessage() for r in kept] == [
        *["socket.accept() out of system resource"] * 3,
        "another error",
        "alarm",
        "alarm",
    ]
    assert limiter.suppressed == 10_000 - 3
    now[0] = 10.0  # a new window: the next one says how many were dropped before it
    emit("socket.accept() out of system resource")
    assert kept[-1].__dict__["suppressed"] == 10_000 - 3
    emit("socket.accept() out of system resource")
    assert "suppressed" not in kept[-1].__dict__
