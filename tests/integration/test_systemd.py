"""The notify protocol against a datagram socket standing in for systemd."""

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import validate
from gateway.ops import systemd
from gateway.runtime.root import Runtime
from tests.support.ports import free_port
from tests.support.wait import wait_until


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    try:
        yield sock
    finally:
        sock.close()


async def receive(sock: socket.socket, until: str, timeout: float = 10.0) -> list[str]:  # noqa: ASYNC109
    """Datagrams up to and including the first that starts with ``until``."""
    loop = asyncio.get_running_loop()
    got: list[str] = []
    async with asyncio.timeout(timeout):
        while not got or not got[-1].startswith(until):
            got.append((await loop.sock_recv(sock, 4096)).decode())
    return got


def test_no_socket_is_a_quiet_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False


def test_watchdog_period_is_half_of_watchdogsec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert systemd.watchdog_period() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert systemd.watchdog_period() is None


async def test_socket_recreated_between_messages_still_receives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "n"
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    for state in ("WATCHDOG=1", "WATCHDOG=1"):  # as after `systemctl daemon-reexec`
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(path))
            assert systemd.notify(state)
            assert sock.recv(100) == state.encode()
        path.unlink()


async def test_daemon_reports_ready_status_watchdog_and_stopping(
    tmp_path: Path, notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # ping every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    cfg = validate(
        {
            "gateway": {"site_id": "s1", "gateway_id": "gw1"},
            "store": {"path": str(tmp_path / "buf.db")},
            "upstream": {"mqtt": {"host": "127.0.0.1", "port": free_port()}},  # down
        },
        tmp_path,
    )
    runtime = Runtime(cfg)
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(runtime.run(stop))
        first = await receive(notify_socket, "WATCHDOG=1")
        pings = await receive(notify_socket, "WATCHDOG=1")  # the loop keeps feeding it
        stop.set()
        last = await receive(notify_socket, "STOPPING=1")
    assert first[0] == "READY=1"  # ready with the uplink down: the local alarm path is up
    assert "STATUS=0/0 devices online, uplink down, backlog 0, 0 open alarms" in first
    assert pings[-1] == "WATCHDOG=1"
    assert last[-1] == "STOPPING=1"


def fill(sock_path: Path) -> int:
    """Send datagrams to ``sock_path`` until its receive queue is full; how many went in."""
    sent = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as out:
        out.setblocking(False)
        try:
            while True:
                out.sendto(b"X" * 64, str(sock_path))
                sent += 1
        except BlockingIOError:
            return sent


def drain(sock: socket.socket) -> list[str]:
    """Every datagram waiting on ``sock`` (non-blocking)."""
    got: list[str] = []
    try:
        while True:
            got.append(sock.recv(4096).decode())
    except BlockingIOError:
        return got


async def test_a_notify_socket_nobody_reads_never_blocks_the_loop(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    assert fill(tmp_path / "notify") > 0  # systemd stopped reading: its queue is full
    before = systemd.counts.dropped
    try:
        # in a thread, so a blocking sendto shows as a timeout here, not a hung test
        async with asyncio.timeout(5):
            sent = await asyncio.to_thread(systemd.notify, "WATCHDOG=1")
    finally:
        drain(notify_socket)  # frees a sendto that blocked, so no thread is left behind
    assert sent is False
    assert systemd.counts.dropped == before + 1
    assert systemd.notify("WATCHDOG=1")  # room again: sent at once
    assert notify_socket.recv(100) == b"WATCHDOG=1"


async def test_keep_alive_attempts_every_ping_while_full_and_resends_the_status(
    tmp_path: Path, notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000")  # ping every 10 ms
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    fill(tmp_path / "notify")
    before = systemd.counts.dropped
    async with asyncio.TaskGroup() as tg:
        pinger = tg.create_task(systemd.keep_alive(lambda: "1/1 devices online"))
        # three ticks, a status and a ping each
        await wait_until(lambda: systemd.counts.dropped >= before + 6, "six messages dropped")
        assert not pinger.done()  # the loop ran on: nothing blocked
        assert set(drain(notify_socket)) == {"X" * 64}  # nothing of ours got in
        got = await receive(notify_socket, "WATCHDOG=1")
        pinger.cancel()
    assert got == ["STATUS=1/1 devices online", "WATCHDOG=1"]  # the dropped status again
