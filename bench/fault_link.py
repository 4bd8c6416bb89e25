"""The rows of ``faults.py`` where the link between the gateway and the broker misbehaves:
``flap`` and ``blackhole`` (F04, F03 at the matrix's length; see ``faults.py``).

Contract:
- The gateway reaches the upstream broker through the suite's fault proxy (``rig(link=True)``,
  ``fault_proxy.Link``): the rows reset every connection (TCP RST) or black-hole the link
  (nothing forwarded on the live connection, new ones accepted and never answered).
- The books are the other rows' (``fault_table``): every answer a reading upstream or in a
  gap report, every press one raised alarm; a message the broker "refused" is counted from
  the gateway's ``cgw_sink_dead_lettered_total`` and must stay 0 (an outage is no refusal).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import time
from dataclasses import dataclass

from fault_rig import StoreFile, Tally, counted_devices
from fault_table import (
    Result,
    Rig,
    Telemetry,
    alarms,
    common_notes,
    copies,
    lat,
    n,
    rig,
    telemetry,
    yes,
)
from harness.measure import proc_status_mib

FLAP_EVERY = (5.0, 30.0)  # s between resets: the matrix's F04
DEAD = "cgw_sink_dead_lettered_total"
RECONNECTS = 'cgw_sink_reconnects_total{sink="mqtt"}'
# s of a black hole before the live connection is surely given up (publish_timeout 15 s, then
# a connect attempt of connect_timeout 10 s and a pause): its 100 publishers go with it, so the
# task count falls once; flat is judged on the samples after
SETTLE = 30.0
GROWTH = (2.0, 1.0, 3.0)  # what the samples after SETTLE may grow by: MiB, fds, tasks (helpers)


def dead_letters(metrics: dict[str, float]) -> float:
    """Messages the MQTT sink dead-lettered, over its lanes."""
    return sum(v for k, v in metrics.items() if k.startswith(DEAD) and 'sink="mqtt"' in k)


@dataclass
class Books:
    """A link row's books after ``Rig.finish``: what arrived, and whether all is accounted."""

    t: Tally
    telemetry: Telemetry
    raised: int
    dead: float  # messages the sink dead-lettered (an outage must cause none)
    ok: bool
    lines: list[str]  # the readings' and the presses' lines of the notes


def books_of(
    r: Rig, answered: dict[int, int], store: StoreFile, metrics: dict[str, float]
) -> Books:
    """Every answer a reading upstream or in a gap, every press one alarm, nothing refused."""
    t = r.platform.snapshot()
    books = telemetry(t, answered, r.devices, r.failed)
    raised, no_alarm, double = alarms(t, r.presser.sent)
    dead = dead_letters(metrics)
    ok = (
        not books.unmatched and books.beyond == 0 and t.repeated == 0 and not no_alarm
        and not double and len(t.epochs) == 1 and sum(store.waiting.values()) == 0 and dead == 0
    )  # fmt: skip
    lines = [
        f"  readings answered {books.offered:,} = arrived {books.arrived:,} + in gaps "
        f"{books.gaps:,} + answered after their poll timed out {books.late}"
        + (f"; NOT MATCHED: {books.unmatched}" if books.unmatched else ""),
        f"  presses {len(r.presser.sent)}: raised upstream {raised}"
        + (f"; no alarm for {no_alarm}" if no_alarm else "")
        + (f"; two alarms for {double}" if double else ""),
    ]
    return Books(t, books, raised, dead, ok, lines)


def row_flap(args: argparse.Namespace) -> Result:
    """Reset (RST) every connection after U(5, 30) s pauses, seeded, for ``--flap`` s."""
    devices = counted_devices(args.devices, args.interval)
    rng = random.Random(args.seed)
    with rig("flap", keep=args.logs, devices=devices, link=True) as r:
        assert r.link is not None
        r.started()
        time.sleep(args.warmup)
        m0 = r.gw.metrics()
        t0 = time.monotonic()
        end, next_press, next_reset = t0 + args.flap, t0, t0 + rng.uniform(*FLAP_EVERY)
        resets = cut = 0
        while (now := time.monotonic()) < end:
            if now >= next_press:
                r.presser.press()
                next_press += args.press_every
            if now >= next_reset:
                cut += r.link.reset()
                resets += 1
                next_reset = now + rng.uniform(*FLAP_EVERY)
            time.sleep(min(0.2, max(0.0, min(next_press, next_reset) - time.monotonic())))
        during = len(r.presser.sent)
        drain_s = r.drain(args.press_every, 120)
        m1 = r.gw.metrics()
        answered, store, rc, took = r.finish()
        connections = r.link.proxy.connections
        b = books_of(r, answered, store, m1)
    t = b.t
    latency = [t.raised[d] - m for d, (m, _) in r.presser.sent.items() if d in t.raised]
    reconnects = m1.get(RECONNECTS, math.nan) - m0.get(RECONNECTS, math.nan)
    notes = [
        f"  devices {args.devices} x every {args.interval:g} s; a press every "
        f"{args.press_every:g} s: {during} during the flapping, {len(r.presser.sent) - during} "
        f"after; seed {args.seed}",
        f"  {resets} resets ({cut} cut a live connection), {connections} connections in all; "
        f"the sink's connections lost meanwhile {n(reconnects)}; messages dead-lettered "
        f"{n(b.dead)} (must be 0); drained {drain_s:.1f} s after the last reset",
        *b.lines,
        *common_notes(t, store, rc, took),
    ]
    size = f"{args.flap:g} s, RST every {FLAP_EVERY[0]:g}-{FLAP_EVERY[1]:g} s"
    if args.flap < 3600:
        size += " (matrix: 1 h)"
    return Result(
        "flap",
        size,
        f"{b.telemetry.offered:,} readings, {len(r.presser.sent)} presses",
        f"{b.telemetry.arrived:,} readings, {b.raised} alarms",
        n(b.telemetry.gaps),
        "-",
        copies(t),
        f"{lat(latency)} (press -> upstream)",
        f"{r.gw.peak_mib:.1f} MiB",
        yes(b.ok),
        notes,
        {"latency": latency, "resets": resets, "connections": connections, "dead": b.dead},
    )


def row_blackhole(args: argparse.Namespace) -> Result:
    """Black-hole the link for ``--blackhole`` s; RSS, descriptors and tasks sampled."""
    devices = counted_devices(args.devices, args.interval)
    with rig("blackhole", keep=args.logs, devices=devices, link=True) as r:
        assert r.link is not None
        r.started()
        time.sleep(args.warmup)
        before = sample(r)
        t_down = time.monotonic()
        r.link.blackhole(True)
        samples: list[tuple[float, tuple[float, float, float]]] = []  # (s into it, sample)
        try:
            end, next_press, next_sample = t_down + args.blackhole, t_down, t_down + 1.0
            while (now := time.monotonic()) < end:
                if now >= next_press:
                    r.presser.press()
                    next_press += args.press_every
                if now >= next_sample:
                    samples.append((now - t_down, sample(r)))
                    next_sample += args.sample_every
                time.sleep(min(0.2, max(0.0, min(next_press, next_sample) - time.monotonic())))
        finally:
            r.link.blackhole(False)
        t_back = time.monotonic()
        during = len(r.presser.sent)
        drain_s = r.drain(args.press_every, 120)
        after = sample(r)
        m1 = r.gw.metrics()
        answered, store, rc, took = r.finish()
        b = books_of(r, answered, store, m1)
    t = b.t
    pending = {d for d, (m, _) in r.presser.sent.items() if t_down <= m < t_back}
    from_back = [t.raised[d] - t_back for d in pending if d in t.raised]
    steady = [v for at, v in samples if at >= min(SETTLE, args.blackhole / 2)]
    rss, fds, tasks = (
        [v[i] for v in steady if not math.isnan(v[i])] or [math.nan] for i in range(3)
    )
    flat = bool(steady) and all(
        max(col) - col[0] <= limit for col, limit in zip((rss, fds, tasks), GROWTH, strict=True)
    )
    hung = [v for at, v in samples if at < min(SETTLE, args.blackhole / 2)]
    notes = [
        f"  devices {args.devices} x every {args.interval:g} s; a press every "
        f"{args.press_every:g} s: {during} during the black hole; sampled every "
        f"{args.sample_every:g} s ({len(samples)} samples)",
        f"  after the first {min(SETTLE, args.blackhole / 2):g} s ({len(steady)} samples): RSS "
        f"{min(rss):.1f}-{max(rss):.1f} MiB, descriptors {min(fds):.0f}-{max(fds):.0f}, tasks "
        f"{min(tasks):.0f}-{max(tasks):.0f}; flat (growth within {GROWTH[0]:g} MiB, "
        f"{GROWTH[1]:g} fd, {GROWTH[2]:g} tasks of the first): {yes(flat)}",
        f"  while the live connection hung: tasks {[round(v[2]) for v in hung]}; before: RSS "
        f"{before[0]:.1f} MiB, {before[1]:.0f} fds, {before[2]:.0f} tasks; after: "
        f"{after[0]:.1f} MiB, {after[1]:.0f} fds, {after[2]:.0f} tasks",
        f"  backlog drained {drain_s:.1f} s after the link returned; dead-lettered "
        f"{n(b.dead)} (must be 0); connections through the proxy {r.link.proxy.connections}",
        *b.lines,
        *common_notes(t, store, rc, took),
    ]
    return Result(
        "blackhole",
        f"{args.blackhole:g} s" + (" (matrix: 1 h)" if args.blackhole < 3600 else ""),
        f"{b.telemetry.offered:,} readings, {len(r.presser.sent)} presses",
        f"{b.telemetry.arrived:,} readings, {b.raised} alarms",
        n(b.telemetry.gaps),
        "-",
        copies(t),
        f"{lat(from_back)} (back -> upstream)",
        f"{r.gw.peak_mib:.1f} MiB",
        yes(b.ok and flat),
        notes,
        {"samples": samples, "from_back": from_back, "dead": b.dead},
    )


def sample(r: Rig) -> tuple[float, float, float]:
    """The gateway's RSS (MiB), open descriptors and asyncio tasks (``cgw_tasks``) now."""
    pid = r.gw.pid
    try:
        fds = float(len(os.listdir(f"/proc/{pid}/fd")))
    except OSError:
        fds = math.nan
    tasks = r.gw.metrics().get("cgw_tasks", math.nan)
    return proc_status_mib(pid, "VmRSS"), fds, tasks
