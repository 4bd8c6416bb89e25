"""InfluxSink against a real VictoriaMetrics, and against a stub for the HTTP errors VM never sends.

VictoriaMetrics serves ``/api/v2/write`` and answers 204 even to bad lines (P13), so every test
reads back what was stored through ``/api/v1/export``. The 400/413/429 paths use a small aiohttp
server that answers like InfluxDB does. The sink runs in-process as a task on a real SQLite store
in ``tmp_path``; waits poll in-memory figures of the store and the sink (no fixed sleeps).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.config.influx import InfluxConfig
from gateway.core.clock import SystemClock
from gateway.core.contract import Identity, status_record, telemetry_record
from gateway.core.messages import DeviceStatus, Lane, Quality, Reading, Sample
from gateway.sinks.influx import InfluxSink
from gateway.store.outbox import Store
from tests.support.ports import free_port
from tests.support.victoria import VictoriaMetrics

IDENT = Identity("cgw", "site-1", "gw-1")
SINK = InfluxSink.name
# VictoriaMetrics drops samples outside its retention (1 d) or too far in the future
T0 = float(int(time.time()) - 600)
GOOD = Quality.GOOD


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    """A fresh VictoriaMetrics on a free loopback port; stopped by PID afterwards."""
    vm = VictoriaMetrics(tmp_path / "vm")
    vm.start()
    try:
        yield vm
    finally:
        vm.stop()


def config(url: str, **kw: Any) -> InfluxConfig:
    values: dict[str, Any] = {
        "url": url,
        "org": "test",
        "bucket": "telemetry",
        "timeout": 2.0,
        "retry_max": 0.3,
    }
    values.update(kw)
    return InfluxConfig(**values)


async def open_store(path: Path, sinks: list[str] | None = None) -> Store:
    return await Store.open(
        path / "store.db",
        quota=64 * 1024**2,
        reserve=1024**2,
        sinks=sinks or [SINK],
        lanes={SINK: [Lane.TELEMETRY]},
    )


async def add_sample(store: Store, device: str, ts: float, *readings: Reading) -> None:
    store.add(telemetry_record(Sample(device, ts, tuple(readings)), True))
    await store.flush()


def volts(value: float) -> Reading:
    return Reading("voltage", value, "V", GOOD)


async def wait_until(
    predicate: Callable[[], bool],
    what: str,
    timeout: float = 15.0,  # noqa: ASYNC109 (it goes into the error message)
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout} s: {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(sink: InfluxSink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(sink.run(), name="sink:influx")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled(), task


def series(exported: list[dict[str, Any]], name: str, device: str) -> list[tuple[int, float]]:
    """(ms, value) of one series, sorted by time."""
    for s in exported:
        if s["metric"]["__name__"] == name and s["metric"].get("device") == device:
            return sorted(zip(s["timestamps"], s["values"], strict=True))
    return []


# -- against VictoriaMetrics -----------------------------------------------------------------


async def test_values_tags_and_ms_timestamps_read_back(
    tmp_path: Path, victoria: VictoriaMetrics
) -> None:
    store = await open_store(tmp_path)
    try:
        for i in range(5):
            await add_sample(
                store,
                "meter-1",
                T0 + i + 0.123,
                volts(230.0 + i),
                Reading("energy", 1000 + i, "kWh", GOOD),
                Reading("door", i % 2 == 1, "", GOOD),
                Reading("current", None, "A", Quality.COMM_ERROR),  # skipped
                Reading("mode", "auto", "", GOOD),  # skipped: not numeric
                Reading("temp", 99.0, "°C", Quality.BAD),  # skipped: not good
                Reading("freq", 50.0, "Hz", Quality.STALE),  # skipped: not good
            )
        await add_sample(store, "meter-2", T0, volts(231.5))
        sink = InfluxSink(config(victoria.url), IDENT, store, SystemClock())
        async with running(sink):
            await wait_until(lambda: store.backlog(SINK) == 0, "all rows confirmed")
        assert await store.count_rows() == {}
        assert (sink.rows_written, sink.written, sink.skipped) == (6, 16, 20)
        assert (sink.dead_lettered, sink.retries, sink.last_error) == (0, 0, "")

        got = await victoria.query_export('{__name__=~"cgw_.*"}')
        stamps = [round((T0 + i + 0.123) * 1000) for i in range(5)]
        assert series(got, "cgw_voltage", "meter-1") == [
            (ms, 230.0 + i) for i, ms in enumerate(stamps)
        ]
        assert series(got, "cgw_energy", "meter-1") == [
            (ms, 1000.0 + i) for i, ms in enumerate(stamps)
        ]
        assert series(got, "cgw_door", "meter-1") == [
            (ms, float(i % 2)) for i, ms in enumerate(stamps)
        ]
        assert series(got, "cgw_voltage", "meter-2") == [(round(T0 * 1000), 231.5)]
        names = {s["metric"]["__name__"] for s in got}
        assert names == {"cgw_voltage", "cgw_energy", "cgw_door"}
        for s in got:
            assert s["metric"]["site"] == "site-1"
            assert s["metric"]["gateway"] == "gw-1"
            assert "unit" not in s["metric"]
    finally:
        await store.close()


async def test_server_stopped_mid_run_loses_nothing(
    tmp_path: Path, victoria: VictoriaMetrics
) -> None:
    store = await open_store(tmp_path)
    try:
        sink = InfluxSink(config(victoria.url, batch_size=20), IDENT, store, SystemClock())
        async with running(sink):
            for i in range(50):
                await add_sample(store, "m1", T0 + i, volts(float(i)))
            await wait_until(lambda: store.backlog(SINK) == 0, "first half confirmed")

            await asyncio.to_thread(victoria.stop)
            for i in range(50, 100):
                await add_sample(store, "m1", T0 + i, volts(float(i)))
            await wait_until(lambda: sink.retries >= 3, "writes failing")
            # the cursor did not move over anything that was not written
            assert store.backlog(SINK) == 50
            assert (await store.count_rows())[Lane.TELEMETRY] == 50
            assert sink.last_error

            await asyncio.to_thread(victoria.restart)
            await wait_until(lambda: store.backlog(SINK) == 0, "second half confirmed")
        assert await store.count_rows() == {}
        assert sink.rows_written == 100
        got = await victoria.query_export('{__name__="cgw_voltage"}')
        assert series(got, "cgw_voltage", "m1") == [
            (round((T0 + i) * 1000), float(i)) for i in range(100)
        ]
    finally:
        await store.close()


async def test_clock_stepped_back_keeps_every_point(
    tmp_path: Path, victoria: VictoriaMetrics
) -> None:
    store = await open_store(tmp_path)
    try:
        # same stamp twice, then the wall clock steps back 5 s, then on by 1 ms
        stamps = [T0, T0, T0 - 5.0, T0 + 0.001, T0 + 10.0]
        for i, ts in enumerate(stamps):
            await add_sample(store, "m1", ts, volts(float(i)))
        await add_sample(store, "m2", T0, volts(99.0))  # another series: its own stamps
        sink = InfluxSink(config(victoria.url, batch_size=2), IDENT, store, SystemClock())
        async with running(sink):
            await wait_until(lambda: store.backlog(SINK) == 0, "all rows confirmed")
        ms0 = round(T0 * 1000)
        got = await victoria.query_export('{__name__="cgw_voltage"}')
        assert series(got, "cgw_voltage", "m1") == [
            (ms0, 0.0),
            (ms0 + 1, 1.0),
            (ms0 + 2, 2.0),
            (ms0 + 3, 3.0),
            (ms0 + 10_000, 4.0),
        ]
        assert series(got, "cgw_voltage", "m2") == [(ms0, 99.0)]
    finally:
        await store.close()


async def test_dead_influx_keeps_rows_while_mqtt_cursor_moves_on(
    tmp_path: Path, victoria: VictoriaMetrics
) -> None:
    await asyncio.to_thread(victoria.stop)
    store = await open_store(tmp_path, ["mqtt", SINK])
    try:
        for i in range(10):
            await add_sample(store, "m1", T0 + i, volts(float(i)))
        store.add(status_record(DeviceStatus("m1", False, T0 + 10, "timeout"), True))
        await store.flush()
        sink = InfluxSink(config(victoria.url), IDENT, store, SystemClock())
        async with running(sink):
            await wait_until(lambda: sink.retries >= 2, "influx writes failing")
            # "mqtt" delivers everything meanwhile (by hand): its cursor is its own
            rows = await store.fetch("mqtt", 100)
            assert len(rows) == 11
            upto: dict[Lane, int] = {}
            for row in rows:
                upto[row.lane] = max(upto.get(row.lane, 0), row.id)
            await store.ack("mqtt", upto)
            assert store.backlog("mqtt") == 0
            # the event was not for influx: it is gone; telemetry waits for influx
            assert await store.count_rows() == {Lane.TELEMETRY: 10}
            assert store.backlog(SINK) == 10

            await asyncio.to_thread(victoria.restart)
            await wait_until(lambda: store.backlog(SINK) == 0, "influx confirmed")
        assert await store.count_rows() == {}
        got = await victoria.query_export('{__name__="cgw_voltage"}')
        assert len(series(got, "cgw_voltage", "m1")) == 10
    finally:
        await store.close()


# -- against a stub that answers like InfluxDB -------------------------------------------------


@dataclass
class Stub:
    """``/api/v2/write`` answering 429 once, 413 above ``max_lines``, 400 for a poison line."""

    max_lines: int = 1_000_000
    throttle_once: bool = False
    gate: asyncio.Event | None = None  # when set: requests wait for it
    accepted: list[str] = field(default_factory=list)
    answers: list[tuple[float, int, int]] = field(default_factory=list)  # (time, status, lines)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        lines = [ln for ln in (await request.text()).splitlines() if ln]
        if self.gate is not None:
            await self.gate.wait()
        status = 204
        headers: dict[str, str] = {}
        if self.throttle_once:
            self.throttle_once = False
            status, headers = 429, {"Retry-After": "1"}
        elif len(lines) > self.max_lines:
            status = 413
        elif any("poison=" in ln for ln in lines):
            status = 400
        self.answers.append((time.monotonic(), status, len(lines)))
        if status != 204:
            return web.json_response({"code": "invalid", "message": "no"}, status=status,
                                     headers=headers)  # fmt: skip
        self.accepted += lines
        return web.Response(status=204)


@contextlib.asynccontextmanager
async def serve(stub: Stub) -> AsyncIterator[Stub]:
    app = web.Application()
    app.router.add_post("/api/v2/write", stub.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    stub.url = f"http://127.0.0.1:{port}"
    try:
        yield stub
    finally:
        await runner.cleanup()


async def test_cursor_moves_only_after_the_write_succeeded(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    try:
        for i in range(3):
            await add_sample(store, "m1", T0 + i, volts(float(i)))
        gate = asyncio.Event()
        async with serve(Stub(gate=gate)) as stub:
            sink = InfluxSink(config(stub.url), IDENT, store, SystemClock())
            async with running(sink):
                await asyncio.sleep(0.3)  # the request is in the stub, waiting for the gate
                assert store.backlog(SINK) == 3
                assert sink.rows_written == 0
                gate.set()
                await wait_until(lambda: store.backlog(SINK) == 0, "confirmed")
        assert len(stub.accepted) == 3
    finally:
        await store.close()


async def test_poison_row_413_and_429(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    try:
        for i in range(10):
            reading = Reading("poison", 1.0, "", GOOD) if i == 6 else volts(float(i))
            await add_sample(store, f"m{i % 2}", T0 + i, reading)
        async with serve(Stub(max_lines=4, throttle_once=True)) as stub:
            sink = InfluxSink(config(stub.url, retry_max=5.0), IDENT, store, SystemClock())
            async with running(sink):
                await wait_until(lambda: store.backlog(SINK) == 0, "all confirmed or dead")
        assert await store.count_rows() == {}
        # 429 once, honoured: the next request came about Retry-After (1 s) later
        (t429, first, _), (t_next, _, _) = stub.answers[:2]
        assert first == 429
        assert t_next - t429 >= 0.9
        assert sink.retries == 1
        # 413 halved the batch size for good
        assert 413 in {s for _, s, _ in stub.answers}
        assert sink.batch_size <= 4
        assert all(n <= 4 for _, s, n in stub.answers if s == 204)
        # the poison row alone was dead-lettered; every other row arrived exactly once
        assert sink.dead_lettered == 1
        [dead] = sink.dead_letter
        assert (dead.device, dead.row_id) == ("m0", 7)
        assert "poison=1" in dead.line
        assert "400" in dead.error
        assert len(stub.accepted) == 9
        assert len(set(stub.accepted)) == 9
        assert not any("poison" in ln for ln in stub.accepted)
    finally:
        await store.close()


async def test_connection_refused_is_retried_with_the_cursor_unchanged(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    try:
        await add_sample(store, "m1", T0, volts(1.0))
        port = free_port()
        sink = InfluxSink(config(f"http://127.0.0.1:{port}"), IDENT, store, SystemClock())
        async with running(sink):
            await wait_until(lambda: sink.retries >= 3, "retrying")
            assert store.backlog(SINK) == 1
            assert sink.rows_written == 0
            assert "Connect" in sink.last_error or "refused" in sink.last_error
    finally:
        await store.close()
