"""The backlog drain with variants of MqttSink's publish path: where the drain's time goes.

    .venv/bin/python bench/drain_variants.py [--variants base,notimeout,pool,direct]
                                             [--rounds 2] [--backlog 100000]

Evidence for docs/performance.md, not code to copy: the variants subclass ``MqttSink`` and
``direct`` reaches into aiomqtt's private paho client. Each variant drains the same
100,000-row backlog as ``throughput.py --phases drain`` (fresh broker, subscriber and store,
the drain in a process of its own), rounds interleaved with the raw paho ceiling, and prints
msg/s and the drain process's CPU µs per message (steadier than msg/s on a shared machine).

``base``       MqttSink as it is: one task per row, ``await client.publish(qos=1)`` each.
``notimeout``  the same with ``timeout=math.inf``: aiomqtt then skips ``asyncio.wait_for``,
               which on Python 3.11 costs a Task and a timer per publish.
``pool``       ``max_inflight`` long-lived workers instead of one task per row, and no
               per-publish timeout.
``direct``     no awaited publish at all: rows go to aiomqtt's paho client with
               ``publish()``; one ``on_publish`` hook maps the message id back to the row and
               acknowledges it; a watchdog replaces the per-publish PUBACK timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import aiomqtt
import throughput as tp
from harness.backlog import worker_drain
from harness.measure import CpuSampler, cpu_per_msg_us, print_header
from harness.procs import workdir, worker_argv
from paho.mqtt.client import Client as PahoClient
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.core.contract import render
from gateway.sinks.mqtt import FETCH, MqttSink
from gateway.sinks.window import AckTracker
from gateway.store.outbox import Row

HERE = Path(__file__).resolve()


class NoTimeoutSink(MqttSink):
    """``MqttSink`` publishing with ``timeout=math.inf`` (no ``wait_for`` per publish)."""

    async def _publish(
        self, client: aiomqtt.Client, row: Row, window: asyncio.Semaphore, tracker: AckTracker
    ) -> None:
        topic, payload = render(self.ident, row)
        try:
            await client.publish(topic, payload, qos=1, retain=row.retain, timeout=math.inf)
        finally:
            window.release()
        tracker.acked(row)
        self.published += 1


class PoolSink(MqttSink):
    """``max_inflight`` long-lived publishing workers fed from a deque; no per-publish timeout."""

    async def _drain(
        self, client: aiomqtt.Client, tracker: AckTracker, tg: asyncio.TaskGroup
    ) -> None:
        queue: deque[Row] = deque()
        more, room = asyncio.Event(), asyncio.Event()
        limit = self.cfg.max_inflight

        async def worker() -> None:
            while True:
                while not queue:
                    more.clear()
                    await more.wait()
                row = queue.popleft()
                room.set()
                topic, payload = render(self.ident, row)
                await client.publish(topic, payload, qos=1, retain=row.retain, timeout=math.inf)
                tracker.acked(row)
                self.published += 1

        for _ in range(limit):
            tg.create_task(worker())
        while True:
            rows = await self.store.fetch(self.name, FETCH)
            if not rows:
                await self.store.wait_for_rows(self.name)
                continue
            for row in rows:
                tracker.sent(row, time.monotonic())
                queue.append(row)
            more.set()
            while len(queue) >= limit:
                room.clear()
                await room.wait()


class DirectSink(MqttSink):
    """Rows handed to paho's ``publish()``; one ``on_publish`` hook acknowledges them by mid."""

    async def _drain(
        self, client: aiomqtt.Client, tracker: AckTracker, tg: asyncio.TaskGroup
    ) -> None:
        paho = client._client  # private in aiomqtt 2.5: this is the experiment's point
        aiomqtt_hook = paho.on_publish
        inflight: dict[int, tuple[Row, float]] = {}
        room = asyncio.Event()
        limit = self.cfg.max_inflight

        def on_publish(
            c: PahoClient, userdata: Any, mid: int, rc: ReasonCode, props: Properties
        ) -> None:
            entry = inflight.pop(mid, None)
            if entry is None:  # not ours (the retained status): aiomqtt's own waiter
                if aiomqtt_hook is not None:
                    aiomqtt_hook(c, userdata, mid, rc, props)  # type: ignore[call-arg]
                return
            tracker.acked(entry[0])
            self.published += 1
            room.set()

        async def watchdog() -> None:  # the PUBACK deadline, once per second for the window
            while True:
                await asyncio.sleep(1.0)
                oldest = min((sent for _, sent in inflight.values()), default=math.inf)
                if time.monotonic() - oldest > self.cfg.publish_timeout:
                    raise aiomqtt.MqttError("no PUBACK within publish_timeout")

        paho.on_publish = on_publish
        tg.create_task(watchdog())
        while True:
            rows = await self.store.fetch(self.name, FETCH)
            if not rows:
                await self.store.wait_for_rows(self.name)
                continue
            for row in rows:
                while len(inflight) >= limit:
                    room.clear()
                    await room.wait()
                topic, payload = render(self.ident, row)
                tracker.sent(row, time.monotonic())
                info = paho.publish(topic, payload, qos=1, retain=row.retain)
                inflight[info.mid] = (row, time.monotonic())


VARIANTS: dict[str, type[MqttSink]] = {
    "base": MqttSink,
    "notimeout": NoTimeoutSink,
    "pool": PoolSink,
    "direct": DirectSink,
}


def orchestrate(args: argparse.Namespace) -> int:
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    print_header()
    print(f"{args.backlog:,} messages per run; CPU µs/msg is the drain (or raw) process's own")
    rows: list[tuple[str, float, float, float]] = []
    for rnd in range(1, args.rounds + 1):
        for kind in ["raw", *variants]:
            with workdir("cgw-variants-") as tmp, CpuSampler() as cpu:
                if kind == "raw":
                    r = tp.phase_publish(args, tmp, cpu, "raw")
                    name, cost = (
                        "raw paho",
                        cpu_per_msg_us(r["cpu"], "raw", r["seconds"], args.backlog),
                    )
                else:

                    def argv(*worker_args: str, variant: str = kind) -> list[str]:
                        return worker_argv(HERE, variant, *worker_args)

                    r = tp.phase_publish(args, tmp, cpu, "drain", argv)
                    name = kind
                    cost = cpu_per_msg_us(r["cpu"], "drain", r["seconds"], args.backlog)
            missing = args.backlog - r["received"]
            rows.append((name, r["rate"], cost, r["cpu"]["other"]))
            print(
                f"round {rnd}  {name:10s} {r['rate']:8,.0f} msg/s  {cost:5.0f} µs/msg  "
                f"other load {max(0.0, r['cpu']['other']):3.0f}%"
                + (f"  MISSING {missing}" if missing else ""),
                flush=True,
            )
    print("\nbest of the rounds (the least disturbed run; the machine's cores are shared):")
    best_rate = {n: max(x for m, x, _, _ in rows if m == n) for n, _, _, _ in rows}
    best_cost = {n: min(c for m, _, c, _ in rows if m == n) for n, _, _, _ in rows}
    for name in ["raw paho", *variants]:
        rate, cost = best_rate[name], best_cost[name]
        print(
            f"  {name:10s} {rate:8,.0f} msg/s ({100 * rate / best_rate['raw paho']:3.0f}% of raw)"
            f"  {cost:5.0f} µs/msg (raw/this {100 * best_cost['raw paho'] / cost:3.0f}%)"
        )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variants")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    ap.add_argument("--backlog", type=int, default=100_000, help="messages per run")
    ap.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.profile_drain = args.spy_drain = args.cprofile = None  # what phase_publish reads
    if args.worker is None:
        return orchestrate(args)
    asyncio.run(worker_drain(args, VARIANTS[args.worker]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
