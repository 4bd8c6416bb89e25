"""A telemetry backlog in the real ``Store``, and ``MqttSink`` draining it (worker bodies).

Contract:
- ``make_records(n)`` builds telemetry records as the runtime stores them (3 readings, ~240 B
  body); ``rendered`` gives each one's topic and payload exactly as ``MqttSink`` publishes it.
- ``worker_fill`` fills a fresh ``Store`` in ``--tmp`` with ``--backlog`` rows while no sink
  runs, then closes it (``RESULT``: fill time, body size, RSS).
- ``worker_drain`` opens that store as a restarted gateway would and times ``MqttSink`` (or a
  variant of it) until ``backlog == 0`` (``RESULT``: start, acknowledged, CPU, RSS).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.measure import cpu_seconds, max_rss_mib
from harness.peers import gateway_config
from harness.procs import GATEWAY, ROOT, SITE, emit_result

if TYPE_CHECKING:
    from gateway.core.messages import Record
    from gateway.sinks.mqtt import MqttSink


def make_records(n: int, devices: int = 500) -> list[Record]:
    """``n`` telemetry records as the runtime stores them: 3 readings each, ~250 B body.

    Built with ``gateway.core.contract.telemetry_record`` from a ``Sample``, round-robin over
    ``devices`` device ids, values drifting like a real T/RH/PM2.5 sensor.
    """
    from gateway.core.contract import telemetry_record
    from gateway.core.messages import Quality, Reading, Sample

    now = time.time()
    records = []
    for i in range(n):
        k = i % devices
        sample = Sample(
            device=f"env-station-{k:04d}",
            ts=now - (n - i) * 0.1,
            readings=(
                Reading("temperature", round(18.0 + (i % 97) * 0.113, 6), "degC", Quality.GOOD),
                Reading("humidity", round(40.0 + (i % 89) * 0.271, 6), "%RH", Quality.GOOD),
                Reading("pm25", round(12.0 + (i % 83) * 0.517, 6), "ug/m3", Quality.GOOD),
            ),
        )
        records.append(telemetry_record(sample, True))
    return records


def rendered(records: Sequence[Record]) -> list[tuple[str, bytes]]:
    """Topic and payload of each record exactly as ``MqttSink`` publishes it (seq = position)."""
    from gateway.core.contract import Identity, points_json, render
    from gateway.store.outbox import Row

    ident = Identity(ROOT, SITE, GATEWAY)
    out = []
    for i, rec in enumerate(records, 1):
        row = Row(
            i,
            rec.lane,
            i,
            rec.topic,
            rec.device,
            rec.ts,
            rec.clock_synced,
            False,
            rec.fields,
            points_json(rec.points) if rec.points else "",
        )
        out.append(render(ident, row))
    return out


async def open_store(tmp: Path, port: int) -> Any:
    """The benchmark's ``Store`` (``buffer.db`` in ``tmp``), as ``Runtime`` opens it."""
    from gateway.sinks.mqtt import MqttSink
    from gateway.store.outbox import Store

    cfg = gateway_config(tmp, port)
    return await Store.open(
        cfg.store.path,
        quota=int(cfg.store.quota),
        reserve=int(cfg.store.reserve),
        sinks=[MqttSink.name],
    )


async def worker_fill(args: argparse.Namespace) -> None:
    """Fill the Store with ``--backlog`` telemetry rows while no sink runs, then close it."""
    from gateway.store.codec import encode

    store = await open_store(Path(args.tmp), args.port)
    try:
        records = make_records(args.backlog)
        body = sum(len(encode(r)) for r in records) / len(records)
        t_fill = time.monotonic()
        for first in range(0, len(records), 10_000):  # Store.add drops telemetry past 50,000
            for rec in records[first : first + 10_000]:
                store.add(rec)
            await store.flush()
        fill_s = time.monotonic() - t_fill
    finally:
        await store.close()
    emit_result({"body_bytes": body, "fill_s": fill_s, "max_rss_mib": max_rss_mib()})


async def worker_drain(args: argparse.Namespace, sink_class: type[MqttSink] | None = None) -> None:
    """Open the filled Store as a restarted gateway would; time ``MqttSink`` draining it.

    ``sink_class`` (bench/drain_variants.py) replaces ``MqttSink`` by a variant of it.
    """
    from gateway.core.clock import SystemClock
    from gateway.core.contract import Identity
    from gateway.ops.logs import setup
    from gateway.sinks.mqtt import MqttSink

    setup("WARNING", json_lines=False)
    tmp = Path(args.tmp)
    cfg = gateway_config(tmp, args.port)
    rss_start = max_rss_mib()
    store = await open_store(tmp, args.port)
    try:
        rows = sum((await store.count_rows()).values())
        rss_open = max_rss_mib()
        ident = Identity(cfg.upstream.mqtt.topic_root, SITE, GATEWAY)
        sink = (sink_class or MqttSink)(cfg.upstream.mqtt, ident, store, SystemClock())
        profiler = None
        if args.cprofile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        cpu0 = cpu_seconds()
        t0 = time.monotonic()
        task = asyncio.create_task(sink.run(), name="sink")
        # The store has no "cursor moved" event; a 5 ms poll is far below the 0.2 s ack period.
        while store.backlog(sink.name) > 0 and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        t1 = time.monotonic()
        cpu = cpu_seconds() - cpu0
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.cprofile)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        emit_result(
            {
                "rows": rows,
                "t0": t0,
                "t_acked": t1,
                "published": sink.published,
                "reconnects": sink.reconnects,
                "backlog_end": store.backlog(sink.name),
                "cpu_s": cpu,
                "rss_start_mib": rss_start,
                "rss_filled_mib": rss_open,
                "max_rss_mib": max_rss_mib(),
            }
        )
    finally:
        await store.close()
