"""The rows of ``faults.py`` about the gateway's own process and its devices: ``sigkill`` and
``modbus-lies`` (see ``faults.py`` for what each does and prints)."""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fault_rig import counted_devices, read_store
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
from harness.measure import pct
from harness.procs import BENCH

# -- row: sigkill -------------------------------------------------------------------------------


@dataclass
class Life:
    """One life of the gateway between a start and a kill."""

    ready_s: float
    up_s: float
    answers: dict[int, tuple[int, int]]  # counted address -> (last before, last in this life)
    draining: bool  # backlog rows were still on their way at the kill
    copies_before: int
    press_to_kill: float  # s from this life's button press to its kill
    exited: int | None  # the exit code, if the life had ended on its own before the kill
    failed_polls: float  # polls without an answer in time (the monitor, just before the kill)


def fill(tmp: Path, backlog: int) -> int:
    """Top the store's backlog up to ``backlog`` rows; how many were added."""
    done = subprocess.run(
        [sys.executable, str(BENCH / "faults.py"), "--worker", "fill", "--tmp", str(tmp),
         "--backlog", str(backlog)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            added: int = json.loads(line[7:])["added"]
            return added
    raise RuntimeError(f"backlog filler failed ({done.returncode}): {done.stderr[-2000:]}")


def row_sigkill(args: argparse.Namespace) -> Result:
    devices = counted_devices(args.devices, args.interval)
    rng = random.Random(args.seed)
    bound = args.devices * (round(COMMIT_INTERVAL / args.interval) + 1)
    with rig("sigkill", keep=args.logs, devices=devices) as r:
        lives: list[Life] = []
        backlog = 0
        last = dict.fromkeys(r.slave.answered(), 0)
        for i in range(args.kills + 1):
            if args.backlog:
                backlog += fill(r.tmp, args.backlog)
            ready = r.started() if i == 0 else r.gw.start()
            if i == args.kills:
                break
            t0, up = time.monotonic(), rng.uniform(0, args.up)
            press = rng.uniform(0, up)
            time.sleep(press)
            r.presser.press()
            time.sleep(max(0.0, up - press))
            exited = r.gw.exited()
            failed = sum(
                v for k, v in r.gw.metrics().items() if k.startswith("cgw_device_poll_failures")
            )
            t = r.platform.snapshot()
            draining = sum(c for d, c in t.telemetry.items() if d.startswith("env-")) < backlog
            r.gw.kill()
            now = r.slave.answered()
            lives.append(
                Life(ready, time.monotonic() - t0, {a: (last[a], now[a]) for a in now}, draining,
                     sum(t.copies.values()), up - press, exited, failed)
            )  # fmt: skip
            last = now
            if (i + 1) % 10 == 0:
                print(f"  {i + 1} kills ...", flush=True)
        final_ready = ready
        if not r.platform.wait(
            lambda t: sum(c for d, c in t.telemetry.items() if d.startswith("env-")) >= backlog,
            300,
        ):
            print("  (the backlog had not arrived after 300 s)")
        answered, store, rc, took = r.finish()
        t = r.platform.snapshot()
        logs = r.gw.logs()
    # every answer of a life arrived, or it is one of that life's last (the uncommitted tail),
    # or it came after its poll had timed out (the gateway counts that poll as failed)
    lost_per_life, not_tail, unexplained, timed_out = [], [], 0, 0
    for i, life in enumerate(lives, 1):
        lost = early_in_life = 0
        for addr, (lo, hi) in life.answers.items():
            values = t.values[f"dev-{addr // 2}"]
            gone = values.missing(lo + 1, hi)
            kept = [v for v in range(lo + 1, hi + 1) if v in values]
            early = [v for v in gone if kept and v < max(kept)]
            lost += len(gone) - len(early)
            early_in_life += len(early)
            if early:
                not_tail.append(f"life {i} dev-{addr // 2}: answers {lo + 1}..{hi}, lost {early}")
        unexplained += max(0, early_in_life - round(life.failed_polls))
        timed_out += early_in_life
        lost_per_life.append(lost)
    final = {a: (last[a], answered[a]) for a in answered}
    final_lost = sum(
        len(t.values[f"dev-{a // 2}"].missing(lo + 1, hi)) for a, (lo, hi) in final.items()
    )
    final_late = min(final_lost, sum(r.failed.values()))  # answered after a timeout
    books = telemetry(t, answered, r.devices, r.failed)
    seqs = t.keys.get((store.epoch, "telemetry"))
    top = store.top.get("telemetry", 0)
    received = seqs.count if seqs else 0
    holes = top - received - store.waiting.get("telemetry", 0)
    presses = len(r.presser.sent)
    raised, no_alarm, double = alarms(t, r.presser.sent)
    latencies = [t.raised[d] - sent[0] for d, sent in r.presser.sent.items() if d in t.raised]
    unclean = sum(1 for e in logs if "last shutdown was not clean" in str(e.get("msg")))
    over = [x for x in lost_per_life if x > bound]
    per_kill = [
        (lives[i + 1].copies_before if i + 1 < len(lives) else sum(t.copies.values()))
        - life.copies_before
        for i, life in enumerate(lives)
    ]
    ok = (
        all(x.exited is None for x in lives) and holes == 0 and not over and not unexplained
        and final_lost == final_late and books.beyond == 0 and t.repeated == 0 and books.gaps == 0
        and not no_alarm and not double and len(t.epochs) == 1 and t.replaced == 0
        and store.integrity == "ok"
    )  # fmt: skip
    window = sum(lost_per_life)
    notes = [
        f"  {args.kills} kills, each U(0, {args.up:g}) s after READY=1 (mean "
        f"{sum(x.up_s for x in lives) / max(1, len(lives)):.2f} s); "
        f"spawn -> READY=1 median {pct([x.ready_s for x in lives] or [final_ready], 50):.2f} s; "
        f"starts that found the file unclean (after a kill or the backlog filler; logged, "
        f"quick_check passed): {unclean} of {r.gw.lives}",
        f"  devices {args.devices} x every {args.interval:g} s = {args.devices / args.interval:g} "
        f"readings/s; backlog topped up to {args.backlog:,} rows before each start "
        f"({backlog:,} added in all); kills that landed while the backlog drained: "
        f"{sum(x.draining for x in lives)} of {len(lives)}",
        f"  telemetry seqs 1..{top:,} committed (backlog and devices): {received:,} arrived, "
        f"{store.waiting.get('telemetry', 0)} still waiting, missing {holes}",
        f"  readings answered by the devices {books.offered:,} = arrived {books.arrived:,} + lost "
        f"at the kills {window:,} + answered after their poll timed out {timed_out} (+ "
        f"{final_lost} in the last life, {final_late} of them after their poll timed out); "
        f"per kill: mean "
        f"{window / max(1, len(lives)):.1f}, max {max(lost_per_life, default=0)}; documented bound "
        f"{bound} ({args.devices} devices x ({COMMIT_INTERVAL:g} s / {args.interval:g} s + the "
        f"answer on the wire)); lives over the bound {len(over)}; lost answers that were not "
        f"the last of their life: {timed_out}"
        + (f" ({'; '.join(not_tail[:5])})" if not_tail else "")
        + (
            f", {unexplained} more than the polls of their life that got no answer in time"
            if not_tail
            else ""
        ),
        f"  duplicates per restart: mean {sum(per_kill) / max(1, len(per_kill)):.0f}, max "
        f"{max(per_kill, default=0)} (rows published since the sink's last cursor commit, "
        f"every 0.2 s, and the window of max_inflight 100)",
        f"  lives that had ended on their own before their kill: "
        f"{sum(x.exited is not None for x in lives)}"
        + (
            f" (exit codes {sorted({x.exited for x in lives if x.exited is not None})}; "
            f"see the gateway log)"
            if any(x.exited is not None for x in lives)
            else ""
        )
        + f"; polls that got no answer in time (the monitor, just before each kill): "
        f"{sum(x.failed_polls for x in lives):.0f}",
        f"  presses {presses}, one per life: raised upstream {raised}"
        + (
            f"; no alarm for {no_alarm} (pressed "
            + ", ".join(f"{lives[int(d[1:]) - 1].press_to_kill:.3f}" for d in no_alarm[:10])
            + " s before their life's kill)"
            if no_alarm
            else ""
        )
        + (f"; two alarms for {double}" if double else ""),
        *common_notes(t, store, rc, took),
    ]
    offered = f"{books.offered:,} readings + {backlog:,} backlog rows, {presses} presses"
    return Result(
        "sigkill",
        f"{args.kills} kills" + (" (issue: 1,000)" if args.kills < 1000 else ""),
        offered,
        f"{received:,} telemetry, {raised} alarms",
        n(books.gaps),
        f"{window:,} (max {max(lost_per_life, default=0)} per kill, bound {bound})",
        copies(t),
        lat(latencies) + " (press -> upstream)",
        f"{r.gw.peak_mib:.1f} MiB",
        yes(ok),
        notes,
        {"lost_per_life": lost_per_life, "duplicates_per_restart": per_kill,
         "latencies": latencies, "holes": holes, "not_tail": not_tail,
         "failed_polls_per_life": [x.failed_polls for x in lives]},
    )  # fmt: skip


# -- row: modbus-lies ---------------------------------------------------------------------------

# unit -> (device id, points, the lie); each unit reads its own addresses
LIARS: dict[int, tuple[str, list[dict[str, Any]], str]] = {
    2: ("refuses-2", [{"name": "ghost", "address": 100}], "exception 0x02 on one point"),
    3: ("short-3", [{"name": "energy", "address": 200, "type": "uint32"}], "one register short"),
    4: ("long-4", [{"name": "energy", "address": 300, "type": "uint32"}], "one register long"),
    5: ("silent-5", [{"name": "energy", "address": 400, "type": "uint32"}], "never answers"),
    6: ("busy-6", [{"name": "energy", "address": 500, "type": "uint32"}], "exception 0x06 busy"),
    7: ("failing-7", [{"name": "energy", "address": 600, "type": "uint32"}], "exception 0x04"),
}


def row_lies(args: argparse.Namespace) -> Result:
    devices = counted_devices(2, args.interval)  # dev-1 honest; dev-2 honest too, beside a liar
    devices[1]["unit_id"] = 2  # refuses-2 and dev-2 share unit 2: one honest point, one refused
    for unit, (dev, points, _) in LIARS.items():
        if unit == 2:
            devices[1]["points"] += points
            devices[1]["disabled_retry"] = 5
            continue
        devices.append(
            {"kind": "modbus", "id": dev, "bus": "tcp", "unit_id": unit,
             "interval": args.interval, "points": points}
        )  # fmt: skip
    lying = {"dev-2": {"ghost"}, **{LIARS[u][0]: {"energy"} for u in (3, 4, 5, 6, 7)}}
    lies = {
        "exceptions": {100: 0x02, 500: 0x06, 600: 0x04},
        "miscount": {200: -1, 300: 1},
        "silent": {5},
    }
    with rig("lies", keep=args.logs, devices=devices, lying=lying, lies=lies) as r:
        r.started()
        t0 = time.monotonic()
        r.pressing(t0 + args.lies_for, args.press_every)
        answered = r.slave.silence()
        heard = r.slave.requests(before_silence=True)
        ghost = r.slave.requests(before_silence=True, by="address")[100]
        time.sleep(COMMIT_INTERVAL + 2.5)  # polls on the wire answered or timed out (1 s)
        metrics = r.gw.metrics()
        requests = r.slave.requests()
        r.gw.wait_drained(60)
        r.platform.quiet(1.0, 30)
        rc, took = r.gw.stop()
        r.platform.quiet(1.0, 10)
        store = read_store(r.gw.store)
        t = r.platform.snapshot()

    def metric(name: str, dev: str) -> int:
        return int(metrics.get(f'{name}{{device="{dev}"}}', 0))

    malformed = heard[3] + heard[4]
    bad = metric("cgw_device_bad_frames_total", "short-3") + metric(
        "cgw_device_bad_frames_total", "long-4"
    )
    malformed_msgs = t.telemetry["short-3"] + t.telemetry["long-4"]
    fabricated = sum(t.lies.values())
    failing = {
        u: (requests[u], metric("cgw_device_poll_failures_total", LIARS[u][0])) for u in (5, 7)
    }
    honest = telemetry(t, answered, r.devices)
    latencies = [t.raised[d] - m for d, (m, _) in r.presser.sent.items() if d in t.raised]
    raised, no_alarm, _ = alarms(t, r.presser.sent)
    ok = (
        fabricated == 0 and bad == malformed == malformed_msgs and not honest.unmatched
        and all(0 <= q - f <= 1 for q, f in failing.values()) and t.telemetry["silent-5"] == 0
        and t.telemetry["failing-7"] == 0 and t.telemetry["busy-6"] == heard[6]
        and t.no_value["dev-1"] == 0 and not no_alarm
    )  # fmt: skip
    notes = [
        f"  {args.lies_for:g} s, every device polled every {args.interval:g} s; lies by unit: "
        + "; ".join(f"{u} {LIARS[u][0]}: {LIARS[u][2]}" for u in LIARS),
        f"  malformed answers (short-3 + long-4) {malformed:,}; bad frames counted "
        f"(cgw_device_bad_frames_total) {bad:,}; their telemetry messages {malformed_msgs:,}, "
        f"every value null; values taken from a lie: {fabricated}",
        f"  unanswered (silent-5) and device failure (failing-7): requests vs failed polls "
        f"{failing[5]} and {failing[7]}; their telemetry {t.telemetry['silent-5']} and "
        f"{t.telemetry['failing-7']}; busy-6: {heard[6]:,} answers, {t.telemetry['busy-6']:,} "
        f"messages with null values",
        f"  dev-2's point 'ghost' refused (0x02): asked {ghost} times (found, then retried every "
        f"5 s), disabled in its status messages, values taken from it {t.lies['dev-2']}",
        f"  honest readings (dev-1, dev-2's counter) answered {honest.offered:,} = arrived "
        f"{honest.arrived:,} + gaps {honest.gaps}"
        + (f"; NOT MATCHED {honest.unmatched}" if honest.unmatched else ""),
        f"  device status messages: {dict(t.statuses)}; presses {len(r.presser.sent)}, raised "
        f"upstream {raised}" + (f"; no alarm for {no_alarm}" if no_alarm else ""),
        *common_notes(t, store, rc, took),
    ]
    return Result(
        "modbus-lies",
        f"{args.lies_for:g} s, 6 lying units",
        f"{sum(heard.values()):,} answers ({malformed:,} malformed), {len(r.presser.sent)} presses",
        f"{sum(t.telemetry.values()):,} readings ({fabricated} lie values), {raised} alarms",
        f"{bad:,} bad frames counted",
        "-",
        copies(t),
        lat(latencies) + " (press -> upstream)",
        f"{r.gw.peak_mib:.1f} MiB",
        yes(ok),
        notes,
        {"requests": dict(requests), "heard": dict(heard), "bad_frames": bad},
    )
