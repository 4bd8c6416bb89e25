"""The rows of ``faults.py`` where the uplink is away: ``outage``, ``broker-pause`` and
``disk-full`` (see ``faults.py`` for what each does and prints)."""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fault_rig import counted_devices, log_wall
from fault_table import (
    COMMIT_INTERVAL,
    Result,
    alarms,
    common_notes,
    copies,
    lat,
    n,
    rig,
    telemetry,
    yes,
)
from harness.procs import workdir

# -- rows: outage, broker-pause -----------------------------------------------------------------


def outage_like(args: argparse.Namespace, name: str) -> Result:
    """The upstream broker gone (``outage``: stopped; ``broker-pause``: SIGSTOPped) for T s."""
    paused = name == "broker-pause"
    length = args.pause if paused else args.outage
    devices = counted_devices(args.devices, args.interval)
    mqtt = {"keepalive": args.keepalive} if args.keepalive else None
    with rig(name, keep=args.logs, devices=devices, persistent=not paused, mqtt=mqtt) as r:
        r.started()
        time.sleep(args.warmup)
        m0 = r.gw.metrics()
        t_down, wall_down = time.monotonic(), time.time()
        if paused:
            assert r.up.proc is not None
            os.kill(r.up.proc.pid, signal.SIGSTOP)
        else:
            r.up.stop()
        try:
            during = r.pressing(t_down + length, args.press_every)
            waiting = r.gw.backlog()
        finally:
            if paused:
                assert r.up.proc is not None
                t_back, wall_back = time.monotonic(), time.time()
                os.kill(r.up.proc.pid, signal.SIGCONT)
            else:
                r.up.start()  # returns once it accepts connections: the broker's return
                t_back, wall_back = time.monotonic(), time.time()
        drain_s = r.drain(args.press_every, max(120.0, length))
        m1 = r.gw.metrics()
        answered, store, rc, took = r.finish()
        t = r.platform.snapshot()
        logs = r.gw.logs()
    pending = {d for d, (m, _) in r.presser.sent.items() if t_down <= m < t_back}
    from_back = [t.raised[d] - t_back for d in pending if d in t.raised]
    after = [
        t.raised[d] - m
        for d, (m, _) in r.presser.sent.items()
        if d not in pending and d in t.raised
    ]
    books = telemetry(t, answered, r.devices, r.failed)
    raised, no_alarm, double = alarms(t, r.presser.sent)
    local = {
        str(e.get("alarm"))
        for e in logs
        if str(e.get("msg", "")).startswith("ALARM") and wall_down <= log_wall(e) < wall_back
    }
    reconnects = m1.get('cgw_sink_reconnects_total{sink="mqtt"}', math.nan) - m0.get(
        'cgw_sink_reconnects_total{sink="mqtt"}', math.nan
    )
    ok = (
        not books.unmatched and books.beyond == 0 and t.repeated == 0 and not no_alarm
        and not double and len(t.epochs) == 1 and sum(store.waiting.values()) == 0
    )  # fmt: skip
    notes = [
        f"  devices {args.devices} x every {args.interval:g} s; a press every "
        f"{args.press_every:g} s: {during} while the broker was {'hung' if paused else 'down'}, "
        f"{len(r.presser.sent) - during} after; raised at the local log channel while it was "
        f"{'hung' if paused else 'down'}: {len(local)}",
        f"  backlog when it returned: {n(waiting)} rows; drained {drain_s:.1f} s after; the "
        f"sink's connections lost or refused meanwhile: {n(reconnects)}",
        f"  alarms pressed while it was away, broker back -> at the platform: {lat(from_back)}; "
        f"pressed during the drain, press -> platform: {lat(after)}",
        f"  readings answered {books.offered:,} = arrived {books.arrived:,} + in gaps "
        f"{books.gaps:,} + answered after their poll timed out {books.late}"
        + (f"; NOT MATCHED: {books.unmatched}" if books.unmatched else ""),
        f"  presses {len(r.presser.sent)}: raised upstream {raised}"
        + (f"; no alarm for {no_alarm}" if no_alarm else "")
        + (f"; two alarms for {double}" if double else ""),
        *common_notes(t, store, rc, took),
    ]
    figures: dict[str, Any] = {"from_back": from_back, "after": after, "drain_s": drain_s}
    if paused:
        lost = [
            e for e in logs
            if "upstream broker" in str(e.get("msg")) and "unreachable" in str(e.get("msg"))
            and log_wall(e) >= wall_down
        ]  # fmt: skip
        back = [
            e for e in logs
            if "connected to upstream broker" in str(e.get("msg")) and log_wall(e) >= wall_back
        ]  # fmt: skip
        noticed = log_wall(lost[0]) - wall_down if lost else math.nan
        again = log_wall(back[0]) - wall_back if back else math.nan
        keepalive = args.keepalive or 30
        notes.insert(
            1,
            f"  hung link noticed after {noticed:.1f} s (keepalive {keepalive} s, publish_timeout "
            f"15 s): {str(lost[0]['msg'])[:90] if lost else 'not while it was hung'}; connected "
            f"again {again:.1f} s after SIGCONT",
        )
        figures.update({"noticed_s": noticed, "reconnected_s": again})
    size = f"{'paused' if paused else 'down'} {length:g} s"
    if not paused and length < 3600:
        size += " (issue: 1 h)"
    return Result(
        name,
        size,
        f"{books.offered:,} readings, {len(r.presser.sent)} presses",
        f"{books.arrived:,} readings, {raised} alarms",
        n(books.gaps),
        "-",
        copies(t),
        f"{lat(from_back)} (back -> upstream); {lat(after)} (press -> upstream, draining)",
        f"{r.gw.peak_mib:.1f} MiB",
        yes(ok),
        notes,
        figures,
    )


def row_outage(args: argparse.Namespace) -> Result:
    return outage_like(args, "outage")


def row_pause(args: argparse.Namespace) -> Result:
    return outage_like(args, "broker-pause")


# -- row: disk-full -----------------------------------------------------------------------------


def row_disk(args: argparse.Namespace) -> Result:
    skipped = Result("disk-full", f"{args.disk_mib} MiB tmpfs", accounted="skipped")
    if os.geteuid() != 0:
        skipped.notes.append("  skipped: needs root to mount a tmpfs")
        return skipped
    from tests.support.disk import ballast

    with workdir("cgw-faults-disk-") as outer:
        disk = outer / "disk"
        disk.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={args.disk_mib}m", "tmpfs", str(disk)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            skipped.notes.append(f"  skipped: cannot mount a tmpfs: {done.stderr.strip()}")
            return skipped
        try:
            return disk_full(args, disk, ballast)
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=False)


def disk_full(args: argparse.Namespace, disk: Path, ballast: Callable[[Path], Path]) -> Result:
    devices = counted_devices(args.disk_devices, args.disk_interval)
    with rig("disk", keep=args.logs, devices=devices, persistent=True, store_dir=disk) as r:
        r.started()
        m0 = r.gw.metrics()
        t_down = time.monotonic()
        r.up.stop()
        writable: list[float] = []
        full_at = t_down + args.disk_outage * 2 / 3
        r.pressing(full_at, args.press_every)
        m_quota = r.gw.metrics()
        weight = ballast(disk)
        try:
            end = t_down + args.disk_outage
            while time.monotonic() < end:
                r.pressing(min(end, time.monotonic() + args.press_every), args.press_every)
                writable.append(r.gw.metrics().get("cgw_store_writable", math.nan))
            m_full = r.gw.metrics()
        finally:
            weight.unlink()
        time.sleep(COMMIT_INTERVAL + 1)  # the next commit finds room again
        r.up.start()
        t_back = time.monotonic()
        drain_s = r.drain(args.press_every, 120)
        answered, store, rc, took = r.finish()
        t = r.platform.snapshot()
    pending = {d for d, (m, _) in r.presser.sent.items() if t_down <= m < t_back}
    from_back = [t.raised[d] - t_back for d in pending if d in t.raised]
    books = telemetry(t, answered, r.devices, r.failed)
    raised, no_alarm, double = alarms(t, r.presser.sent)
    evicted = store.counters.get("evicted", 0)
    dropped = int(m_full.get("cgw_store_dropped_total", 0))  # memory only: read before the stop
    ok = (
        not books.unmatched and books.beyond == 0 and not no_alarm and not double
        and sum(store.waiting.values()) == 0 and len(t.epochs) == 1
    )  # fmt: skip

    def q(m: dict[str, float]) -> str:
        return (
            f"quota {n(m.get('cgw_store_quota_bytes', math.nan))} B, evicted "
            f"{n(m.get('cgw_store_evicted_total', math.nan))}, dropped "
            f"{n(m.get('cgw_store_dropped_total', math.nan))}"
        )

    notes = [
        f"  {args.disk_mib} MiB tmpfs; {args.disk_devices} devices x every "
        f"{args.disk_interval:g} s; uplink down {args.disk_outage:g} s, a ballast file took the "
        f"rest of the disk for its last third; a press every {args.press_every:g} s",
        f"  at start: {q(m0)}; disk full by the quota: {q(m_quota)}; at the end of the ballast: "
        f"{q(m_full)}; store writable while the ballast was there: "
        f"{sum(1 for w in writable if w == 1)} of {len(writable)} looks",
        f"  readings answered {books.offered:,}; arrived {books.arrived:,}; in gap reports "
        f"{books.gaps:,} ({t.gap_reports} reports); answered after their poll timed out "
        f"{books.late}; missing from all of these: "
        f"{books.offered - books.arrived - books.gaps - books.late:,} on "
        f"{len(books.unmatched)} devices"
        + (f", e.g. {books.unmatched[0]}" if books.unmatched else ""),
        f"  the store's own counts: evicted {evicted:,} (file) + dropped while nothing fitted "
        f"{dropped:,} (memory) = {evicted + dropped:,}; the gap reports carry {books.gaps:,}: "
        f"{evicted + dropped - books.gaps:,} lost readings were never reported",
        f"  presses {len(r.presser.sent)}: raised upstream {raised}"
        + (f"; no alarm for {no_alarm}" if no_alarm else "")
        + f"; drained {drain_s:.1f} s after the uplink returned",
        *common_notes(t, store, rc, took),
    ]
    return Result(
        "disk-full",
        f"{args.disk_mib} MiB tmpfs, uplink down {args.disk_outage:g} s",
        f"{books.offered:,} readings, {len(r.presser.sent)} presses",
        f"{books.arrived:,} readings, {raised} alarms",
        n(books.gaps),
        "-",
        copies(t),
        lat(from_back) + " (back -> upstream)",
        f"{r.gw.peak_mib:.1f} MiB",
        yes(ok),
        notes,
        {"from_back": from_back},
    )
