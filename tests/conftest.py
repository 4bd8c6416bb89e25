"""Shared fixtures: real peers (mosquitto, socat ptys, MQTT proxy), the daemon as a process, and
leak guards."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis import settings

from tests.support.daemon import Daemon
from tests.support.modem import EmulatedModem
from tests.support.mosquitto import Mosquitto, TlsFiles, make_tls_files
from tests.support.proxy import MqttProxy
from tests.support.socat import PtyPair

# -- property tests ---------------------------------------------------------------------------
# The suite is deterministic: hypothesis draws the same examples on every run, so a run on CI
# never meets a case no run here met. `HYPOTHESIS_PROFILE=explore make test` draws fresh ones
# (a thousand where a test sets no count of its own): run it after changing the store or the
# rules, and pin what it finds with @example.
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# -- real peers -------------------------------------------------------------------------------


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh broker on a free loopback port for this test; stopped (by PID) afterwards."""
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """Throwaway CA, server (localhost/127.0.0.1) and client certificates, made once per session."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def mosquitto_tls(tmp_path: Path, tls_files: TlsFiles) -> Iterator[Mosquitto]:
    """Like ``mosquitto``, plus a TLS listener on ``.tls_port`` that requires a client cert."""
    broker = Mosquitto(tmp_path / "mosquitto-tls", tls=tls_files)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest_asyncio.fixture
async def mqtt_proxy(mosquitto: Mosquitto) -> AsyncIterator[MqttProxy]:
    """An MQTT-aware fault-injection proxy in front of ``mosquitto``; connect to ``.port``."""
    async with MqttProxy(mosquitto.host, mosquitto.port) as proxy:
        yield proxy


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[PtyPair]:
    """Two linked pseudo-terminals ``.a`` and ``.b`` (socat); socat is stopped afterwards."""
    pair = PtyPair(tmp_path / "pty")
    pair.start()
    try:
        yield pair
    finally:
        pair.stop()


@pytest.fixture
def emulated_modem(tmp_path: Path) -> Iterator[EmulatedModem]:
    """An emulated 4G modem on a socat pty (``.port`` is the gateway's end); stopped after."""
    with EmulatedModem(tmp_path / "modem") as modem:
        yield modem


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A ``Daemon`` (``cgw run`` as a process) on ``tmp_path/gw.yaml``, not started; killed
    afterwards if the test left it running."""
    d = Daemon(tmp_path / "gw.yaml", tmp_path / "gw.log")
    try:
        yield d
    finally:
        d.stop()


# -- leak guards ------------------------------------------------------------------------------

_THREAD_GRACE = 2.0  # seconds a thread started by the test gets to finish after it
_TASK_GRACE = 2.0  # seconds a task still pending at teardown gets to finish

# Worker threads of an event loop's default executor are named "asyncio_N" (aiomqtt connects
# through run_in_executor). They idle in the pool until the loop's owner shuts the executor down.
# For the default function-scoped loop the thread check below runs after pytest-asyncio's runner
# has closed the loop and joined them, so they are checked like any other thread. A test on a
# module- or session-scoped loop keeps that pool alive past the test on purpose: only there are
# they ignored, as pool workers the loop's owner will join, not threads the test forgot.
_EXECUTOR_THREAD_PREFIX = "asyncio_"


@pytest.fixture(autouse=True)
def _no_leaked_threads(request: pytest.FixtureRequest) -> None:
    """Fail a test that leaves threads it started alive (and, if async, pending tasks)."""
    before = set(threading.enumerate())
    own_loop = _wants_task_check(request.node)
    # Registered on the test item before the event loop exists: pytest runs item finalizers last
    # in first out, so this runs after the runner fixture has closed the test's loop. (A check
    # after a `yield` here would run first: a fixture's own finalizer is added only once its
    # setup, including the getfixturevalue below, has finished.)
    request.node.addfinalizer(functools.partial(_check_threads, before, own_loop))
    if own_loop:
        request.getfixturevalue("_no_leaked_tasks")


def _check_threads(before: set[threading.Thread], own_loop: bool) -> None:
    deadline = time.monotonic() + _THREAD_GRACE
    leaked: list[threading.Thread] = []
    for thread in threading.enumerate():
        if thread in before:
            continue
        if not own_loop and thread.name.startswith(_EXECUTOR_THREAD_PREFIX):
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            leaked.append(thread)
    if leaked:
        pytest.fail(f"test left threads running: {leaked}", pytrace=False)


def _wants_task_check(node: pytest.Item) -> bool:
    """Async tests on a function-scoped loop (the default); a wider loop outlives the test."""
    if not pytest_asyncio.is_async_test(node):
        return False
    marker = node.get_closest_marker("asyncio")
    loop_scope = marker.kwargs.get("loop_scope") if marker is not None else None
    return loop_scope in (None, "function")


@pytest_asyncio.fixture
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Runs in the test's loop; at teardown no task but this one may still be pending."""
    yield
    current = asyncio.current_task()
    pending = asyncio.all_tasks() - {current}
    if pending:  # cancelled tasks need a few loop iterations to finish; give them a moment
        _, pending = await asyncio.wait(pending, timeout=_TASK_GRACE)
    if pending:
        names = sorted(f"{t.get_name()}: {t.get_coro()!r}" for t in pending)
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=_TASK_GRACE)
        pytest.fail(f"test left asyncio tasks pending: {names}", pytrace=False)
