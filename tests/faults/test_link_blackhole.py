"""Fault F03: a black-holed uplink costs one socket at a time and loses nothing.

The real daemon publishes to a real mosquitto through ``MqttProxy`` while readings and presses
flow in on the local broker. Then the proxy black-holes the uplink in three ways, each for
``ATTEMPTS`` connect attempts of the gateway: it forwards nothing on the live connection or on
any new one (the CONNECT is swallowed: the PUBACK watchdog notices the silent link, then every
attempt waits for a CONNACK); it accepts new connections and never even connects to the broker
(a black hole at the TCP level); and it lets the CONNECT reach the broker but swallows the
CONNACK (a black hole mid-handshake). Then it forwards again.

What is held, exactly: every attempt is given up within its ``connect_timeout`` and the next
one comes no sooner than the backoff's shortest pause; the gateway's descriptors (read in
``/proc/<pid>/fd``) are the same at every attempt as while connected, before and after; its
asyncio tasks (``cgw_tasks``) stay flat across the
attempts and come back to where they were once connected (within ``TRANSIENT``); once the link
forwards again, the first message of the session is an alarm raised during the black hole
(ahead of the telemetry backlog), every reading number arrives (0 lost, 0 gap-reported) and
every press raises one alarm.

The second test does the same over TLS, where a black hole stops the handshake itself (paho
runs it on an executor thread, bounded by ``connect_timeout`` too): descriptors and threads
stay flat and the attempts end in time.
"""

import asyncio
import functools
import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.test_operate import metric
from tests.faults.link import BUTTONS, PREFIX, Tally, brokers, config, dead_letters, proxy, running
from tests.support.daemon import Daemon
from tests.support.mosquitto import Mosquitto, TlsFiles, client_tls
from tests.support.ports import free_port
from tests.support.proxy import MqttProxy
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow
__all__ = ["brokers", "proxy"]  # the fixtures
TIMEOUT = 1.5  # s: connect_timeout (TCP, TLS, CONNACK) and publish_timeout (the PUBACK watchdog)
PAUSE = 1.0 * (1 - 0.25)  # the backoff's shortest pause: RECONNECT_BASE less the full jitter
ATTEMPTS = 2  # connect attempts per way of black-holing
RATE = 20.0
TLS_ATTEMPTS = 3
# unnamed helper tasks of aiomqtt and aiohttp (a waiter for a queue or an event) come and go
# with what the process happens to wait for at the moment of the scrape
TRANSIENT = 3


class Probe:
    """The gateway's descriptors and tasks, read at the moments the test chooses."""

    def __init__(self, pid: int, http: aiohttp.ClientSession, url: str) -> None:
        self.pid, self.http, self.url = pid, http, url
        self.samples: list[tuple[str, int, int]] = []  # (when, descriptors, tasks)

    async def sample(self, when: str) -> tuple[int, int]:
        async with self.http.get(self.url) as resp:  # one keep-alive connection throughout
            text = await resp.text()
        fds = len(os.listdir(f"/proc/{self.pid}/fd"))
        tasks = int(metric(text, "cgw_tasks"))
        self.samples.append((when, fds, tasks))
        return fds, tasks


async def attempts(proxy: MqttProxy, n: int, probe: Probe, way: str) -> None:
    """Wait for ``n`` more connect attempts, sampling ``probe`` during each."""
    for _ in range(n):
        i = len(proxy.accepted_at)  # the index of the next attempt
        await wait_until(functools.partial(started, proxy, i), f"an attempt ({way})", 5)
        await probe.sample(way)
        await wait_until(functools.partial(ended, proxy, i), f"attempt {i} given up ({way})", 5)


def started(proxy: MqttProxy, i: int) -> bool:
    return len(proxy.accepted_at) > i


def ended(proxy: MqttProxy, i: int) -> bool:
    return i in proxy.closed_at


async def test_a_black_holed_uplink_holds_one_socket_and_loses_nothing(
    tmp_path: Path, daemon: Daemon, brokers: tuple[Mosquitto, Mosquitto], proxy: MqttProxy
) -> None:
    up, local = brokers
    port = free_port()
    doc = config(
        tmp_path / "buf.db",
        proxy.port,
        local.port,
        connect_timeout=TIMEOUT,
        publish_timeout=TIMEOUT,
        reconnect_max=1,
    )
    async with (
        running(daemon, doc | {"monitor": {"port": port}}, up, local) as (rec, feed),
        aiohttp.ClientSession() as http,
    ):
        assert daemon.proc is not None
        probe = Probe(daemon.proc.pid, http, f"http://127.0.0.1:{port}/metrics")
        feeding = asyncio.ensure_future(feed.run(60.0, RATE))
        try:
            await wait_until(lambda: feed.readings >= RATE, "a second of readings")
            before = await probe.sample("connected")
            ways: list[tuple[str, Callable[[bool], None]]] = [
                ("nothing forwarded", proxy.stall),
                ("TCP black hole", proxy.block),
                ("CONNACK swallowed", proxy.drop_connacks),
            ]
            blackout = time.monotonic()
            for way, switch in ways:
                switch(True)
                if way == "nothing forwarded":
                    await daemon.wait_log("unreachable", timeout=TIMEOUT + 3)
                    await feed.press()
                await attempts(proxy, ATTEMPTS, probe, way)
                switch(False)
            await feed.press()
            back = time.monotonic()
            # connected again: the sink's workers are back (``max_inflight`` tasks)
            await wait_until(lambda: proxy.connects == 2 + ATTEMPTS, "connected again", 5)
            await rec.wait_for(lambda m: len(Tally.of(m).raised) >= 2, timeout=5)
            after = await probe.sample("connected again")
        finally:
            feeding.cancel()
        await rec.wait_for(lambda m: Tally.of(m).telemetry >= feed.readings, timeout=10)
        rc, _ = daemon.terminate()
    assert rc == 0
    tally = Tally.of(rec.messages)
    tries = [
        (proxy.accepted_at[i], proxy.closed_at[i] - proxy.accepted_at[i])
        for i in range(1, len(proxy.accepted_at))
        if blackout < proxy.accepted_at[i] < back
    ]
    gaps = [b[0] - (a[0] + a[1]) for a, b in itertools.pairwise(tries)]
    print(
        f"{len(tries)} attempts, each given up after {[round(d, 2) for _, d in tries]} s, "
        f"paused {[round(g, 2) for g in gaps]} s; (when, fds, tasks): {probe.samples}; "
        f"{feed.readings} readings, {tally.telemetry} arrived, duplicates {dict(tally.duplicates)}"
    )
    assert len(tries) == 3 * ATTEMPTS
    assert all(took <= TIMEOUT + 0.5 for _, took in tries)
    assert all(gap >= PAUSE - 0.05 for gap in gaps)
    during = [(fds, tasks) for when, fds, tasks in probe.samples if not when.startswith("conn")]
    assert {fds for fds, _ in during} == {before[0]} == {after[0]}  # one socket at a time
    tasks = [t for _, t in during]
    assert max(tasks) - min(tasks) <= TRANSIENT  # flat across attempts: nothing piles up
    assert abs(after[1] - before[1]) <= TRANSIENT  # and back where it was once connected
    assert tally.missing(feed.sent) == 0
    assert tally.telemetry == feed.readings
    assert tally.gaps == 0
    assert (tally.refused, dead_letters(daemon)) == ([], [])  # an outage is no refusal
    assert len(tally.raised) == 2
    first = next(m for m in rec.messages if m.at > back and m.topic != f"{PREFIX}/status")
    assert first.topic.startswith(f"{PREFIX}/alarm/"), first.topic


async def test_a_black_hole_during_the_tls_handshake_ends_each_attempt_in_time(
    tmp_path: Path, daemon: Daemon, mosquitto_tls: Mosquitto, tls_files: TlsFiles
) -> None:
    up = mosquitto_tls
    assert up.tls_port is not None
    tls = client_tls(tls_files, tmp_path)
    with Mosquitto(tmp_path / "local") as local:
        async with MqttProxy(up.host, up.tls_port, raw=True) as proxy:
            doc = config(tmp_path / "buf.db", proxy.port, local.port, connect_timeout=TIMEOUT)
            doc["upstream"]["mqtt"] |= {"tls": tls, "reconnect_max": 1}
            async with running(daemon, doc, up, local) as (rec, feed):
                assert daemon.proc is not None
                pid = daemon.proc.pid
                before = (len(os.listdir(f"/proc/{pid}/fd")), threads(pid))
                proxy.block(True)
                proxy.reset_all()
                blackout = time.monotonic()
                samples = []
                for _ in range(TLS_ATTEMPTS):
                    i = len(proxy.accepted_at)
                    await wait_until(functools.partial(started, proxy, i), "a TLS attempt", 5)
                    samples.append((len(os.listdir(f"/proc/{pid}/fd")), threads(pid)))
                    await wait_until(functools.partial(ended, proxy, i), f"attempt {i} given up", 5)
                await feed.press()
                proxy.block(False)
                back = time.monotonic()
                await rec.wait_for(lambda m: len(Tally.of(m).raised) >= 1, timeout=TIMEOUT + 5)
                after = (len(os.listdir(f"/proc/{pid}/fd")), threads(pid))
                rc, _ = daemon.terminate()
    assert rc == 0
    tries = [
        proxy.closed_at[i] - proxy.accepted_at[i]
        for i in range(1, len(proxy.accepted_at))
        if blackout < proxy.accepted_at[i] < back
    ]
    took = Tally.of(rec.messages).raised[BUTTONS[0]] - back
    print(
        f"TLS: {len(tries)} attempts given up after {[round(t, 2) for t in tries]} s; "
        f"(fds, threads) connected {before}, during {samples}, after {after}; "
        f"the alarm upstream {took:.2f} s after the link returned"
    )
    assert len(tries) == TLS_ATTEMPTS
    assert all(t <= TIMEOUT + 0.5 for t in tries)
    assert {fds for fds, _ in samples} == {before[0]} == {after[0]}
    assert max(t for _, t in [before, *samples, after]) <= before[1] + 1  # one executor thread


def threads(pid: int) -> int:
    """The process's threads (``/proc/<pid>/status``)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("Threads:")))
