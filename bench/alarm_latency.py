"""Alarm latency benchmark: an MQTT button press to the alarm at an upstream subscriber.

    .venv/bin/python bench/alarm_latency.py [--presses 200] [--backlog 100000] [--spacing 0.02]
    .venv/bin/python bench/alarm_latency.py --fsync-delay 20     # the SD-card model

Two phases (see bench/README.md), each with a fresh mosquitto (the local broker the button
publishes to and the upstream broker at once, as in tests/e2e/test_alarms.py), a fresh store
and these processes, every one stopped by PID when the phase ends or fails:

``gateway``     the real ``Runtime`` (button subscriber, alarm engine, ``Store``, ``MqttSink``)
                with one ``mqtt_button`` on ``bench/btn/+/event`` (device from the topic,
                payload profile ``sos-state-json``) and one contact rule for every device.
``presser``     a paho client pressing ``--presses`` buttons ``--spacing`` s apart, QoS 1, each
                on a topic of its own (``bench/btn/b0001/event``, ...) with its own event id:
                every press is a new cause and so a new alarm.
``subscriber``  a paho QoS 1 subscriber to ``cgw/bench/gw1/alarm/+`` and ``.../telemetry/#``
                recording when each "raised" alarm arrives and how many telemetry messages
                had arrived by then.

``idle``     no backlog: presses start once the gateway is subscribed and connected.
``backlog``  the store is filled with ``--backlog`` telemetry messages (a separate process,
             before the gateway starts); presses start once the subscriber has seen
             ``--start-after`` of them, so the drain is under way.

Latency is press (``time.monotonic()`` just before the presser's ``publish``) to arrival at the
subscriber (``time.monotonic()`` first thing in ``on_message``): CLOCK_MONOTONIC is one clock
for every process on a Linux machine. The gateway process also timestamps each alarm along its
path (wrappers around a few methods, set up in that process only; gateway code is unchanged),
which splits the latency into stages. A second subscriber to the alarm topics alone shows
whether an alarm waited behind telemetry on the subscriber's connection.

Experiments (not defaults): ``--max-inflight N`` sets the gateway's ``upstream.mqtt.max_inflight``
(the bench config uses 100, as throughput.py does); ``--switch-interval S`` sets
``sys.setswitchinterval`` in the gateway process (how long the event loop may hold the GIL
while the store thread waits). Nothing here asserts a timing; it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alarm_workers import STALL, device_name, worker_fill, worker_gateway, worker_press, worker_sub
from harness import procs
from harness.measure import CpuSampler, fs_type, pct, print_header, proc_status_mib
from harness.procs import Child, Phase, hogs, workdir
from harness.slowfs import preload

HERE = Path(__file__).resolve()


# -- helpers ------------------------------------------------------------------------------------


def ms(values: Sequence[float]) -> str:
    """``p50 / p90 / p99 / max`` of seconds, in ms."""
    if not values:
        return "n/a"
    return " / ".join(f"{1000 * pct(values, p):.2f}" for p in (50, 90, 99, 100))


def worker_argv(kind: str, *extra: str) -> list[str]:
    """This script's worker ``kind``."""
    return procs.worker_argv(HERE, kind, *extra)


# -- orchestration ------------------------------------------------------------------------------


def wait_tag(child: Child, tag: str, timeout: float, seen: dict[str, str]) -> str | None:
    """The rest of ``child``'s ``tag`` line (lines may come in any order); None on timeout."""
    deadline = time.monotonic() + timeout
    while tag not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            line = child.expect("", left)
        except TimeoutError:
            return None
        key, _, rest = line.partition(" ")
        seen[key] = rest
    return seen[tag]


def run_phase(args: argparse.Namespace, name: str, backlog: int) -> dict[str, Any]:
    """One phase: broker, [fill], subscribers, presser, gateway; everything stopped by PID."""
    with (
        workdir(f"cgw-bench-alarm-{name}-") as tmp,
        CpuSampler() as cpu,
        Phase(tmp, cpu) as phase,
        hogs(args.hogs),
    ):
        res: dict[str, Any] = {"tmp_fs": fs_type(tmp)}
        broker = phase.broker

        def start(label: str, kind: str, *extra: str) -> Child:
            return phase.start(label, worker_argv(kind, "--port", str(broker.port), *extra))

        try:
            if backlog:
                filler = start("fill", "fill", "--backlog", str(backlog), "--tmp", str(tmp))
                res["fill"] = filler.result(300)
            sub_lines: dict[str, str] = {}
            alarm_lines: dict[str, str] = {}
            sub_args = ["--expect", str(args.presses), "--backlog", str(backlog or -1)]
            sub = start(
                "subscriber",
                "subscriber",
                *sub_args,
                *("--start-after", str(args.start_after if backlog else -1)),
            )
            alarm_sub = start("alarm-subscriber", "subscriber", *sub_args, "--alarms-only")
            sub.expect("READY", 15)
            alarm_sub.expect("READY", 15)
            presser = start(
                "presser", "presser", "--presses", str(args.presses), "--spacing", str(args.spacing)
            )
            presser.expect("READY", 15)
            t_gw = time.monotonic()
            knobs = []
            if args.max_inflight:
                knobs += ["--max-inflight", str(args.max_inflight)]
            if args.switch_interval:
                knobs += ["--switch-interval", str(args.switch_interval)]
            env = None if not args.fsync_delay else preload(args.fsync_delay, Path(tmp))
            argv = worker_argv("gateway", "--port", str(broker.port), "--tmp", str(tmp), *knobs)
            niced = ["nice", "-n", str(args.nice)] if args.nice else []
            gateway = phase.start("gateway", [*niced, *argv], env)
            gateway.expect("READY", 90)
            res["gateway_ready_s"] = time.monotonic() - t_gw
            if backlog:
                if wait_tag(sub, "STARTED", 60, sub_lines) is None:
                    raise RuntimeError(f"subscriber saw no {args.start_after} telemetry in 60 s")
            else:
                time.sleep(0.5)
            assert presser.proc.stdin is not None
            presser.proc.stdin.write("go\n")
            presser.proc.stdin.flush()
            res["press"] = presser.result(args.presses * args.spacing + 40)
            wait_tag(sub, "ALARMS", 20, sub_lines)
            wait_tag(alarm_sub, "ALARMS", 5, alarm_lines)
            res["t_alarms_done"] = time.monotonic()
            if backlog:
                wait_tag(sub, "DRAINED", args.drain_wait, sub_lines)
            res["gateway_hwm_mib"] = proc_status_mib(gateway.proc.pid, "VmHWM")
            res["broker_hwm_mib"] = broker.peak_rss_mib()
            gateway.close_stdin()
            res["gateway"] = gateway.result(60)
            for key, child in (("sub", sub), ("alarm_sub", alarm_sub)):
                child.close_stdin()
                res[key] = child.result(30)
            t0 = min(t for t, _ in res["press"]["sends"].values())
            t1 = max([t for t, _ in res["sub"]["raised"].values()] or [t0 + 1])
            res["cpu"] = cpu.usage(t0, t1)
            res["cpu_window_s"] = t1 - t0
        except BaseException:
            log = tmp / "gateway.log"
            if log.exists():
                print("  gateway.log (last lines):\n" + "\n".join(
                    "    " + line for line in log.read_text().splitlines()[-20:]))  # fmt: skip
            raise
    return res


def report(args: argparse.Namespace, r: dict[str, Any], backlog: int) -> None:
    sends: dict[str, list[float]] = r["press"]["sends"]
    raised: dict[str, list[float]] = r["sub"]["raised"]
    alarm_only: dict[str, list[float]] = r["alarm_sub"]["raised"]
    gw = r["gateway"]
    lat = {d: raised[d][0] - sends[d][0] for d in sends if d in raised}
    missing = len(sends) - len(lat)
    values = list(lat.values())
    print(
        f"  presses {len(sends)}, {1000 * args.spacing:g} ms apart, QoS 1; raised alarms at the "
        f"subscriber {len(lat)} ({missing or 'none'} missing, {r['sub']['duplicates']} "
        f"duplicates); store on {r['tmp_fs']}"
        + (f", every fsync +{args.fsync_delay:g} ms (SD-card model)" if args.fsync_delay else "")
    )
    print("  press -> raised alarm at an upstream subscriber, ms   p50 / p90 / p99 / max")
    print(f"    subscriber to alarms and telemetry (one connection)  {ms(values)}")
    only = [alarm_only[d][0] - sends[d][0] for d in sends if d in alarm_only]
    print(
        f"    subscriber to alarms only                            {ms(only)}"
        + (f"  ({len(sends) - len(only)} missing)" if len(only) != len(sends) else "")
    )
    first = device_name(1)
    if values and first in lat:
        print(
            f"    mean {1000 * sum(values) / len(values):.2f} ms; first press "
            f"{1000 * lat[first]:.2f} ms"
        )

    def stage(a: dict[str, Any], ia: int, b: dict[str, Any], ib: int) -> list[float]:
        return [b[d][ib] - a[d][ia] for d in sends if d in a and d in b]

    contact = {d: (t,) for d, t in gw["contact"].items()}
    sent = {d: (t[0],) for d, t in sends.items()}
    # the engine handles inputs one at a time: how long each waited for earlier alarms' commits
    commits = sorted(gw["commit"].values())
    busy: dict[str, tuple[float]] = {}
    for d, (c0, _) in gw["commit"].items():
        if d in contact:
            before = [e for s, e in commits if s < c0]
            prev_end = max(before, default=-math.inf)
            busy[d] = (max(0.0, prev_end - contact[d][0]),)
    zero = {d: (0.0,) for d in busy}
    print("  where the time goes, ms   p50 / p90 / p99 / max (timestamps in the gateway process):")
    rows = [
        ("press -> button event at the engine (broker, aiomqtt, parse)", sent, 0, contact, 0),
        ("engine inbox -> its commit starts", contact, 0, gw["commit"], 0),
        ("  of which the engine still committing earlier alarms", zero, 0, busy, 0),
        ("commit starts -> store thread runs it (write lock, executor)", gw["commit"], 0,
         gw["insert"], 0),
        ("store transaction (BEGIN..COMMIT, fsync)", gw["insert"], 0, gw["insert"], 1),
        ("transaction done -> commit returns", gw["insert"], 1, gw["commit"], 1),
        ("commit returns -> sink calls publish (wake, fetch, window)", gw["commit"], 1,
         gw["publish"], 0),
        ("sink publish -> PUBACK", gw["publish"], 0, gw["publish"], 1),
        ("sink publish -> arrival, subscriber to alarms and telemetry", gw["publish"], 0,
         raised, 0),
        ("sink publish -> arrival, subscriber to alarms only", gw["publish"], 0, alarm_only, 0),
    ]  # fmt: skip
    for label, a, ia, b, ib in rows:
        print(f"    {label:<66} {ms(stage(a, ia, b, ib))}")
    window = (min(s[0] for s in sends.values()), r["t_alarms_done"])
    ops = [o for o in gw["store_ops"] if window[0] <= o[1] <= window[1]]
    for kind in ("insert", "ack", "select"):
        durs = [o[2] - o[1] for o in ops if o[0] == kind]
        if durs:
            busy_s = sum(durs)
            print(
                f"    store thread {kind:<6} x{len(durs):<5} ms {ms(durs)}   "
                f"({busy_s:.2f} s busy in {window[1] - window[0]:.1f} s)"
            )
    saves = [b - a for a, b in gw["dedup_saves"] if window[0] <= a <= window[1]]
    if saves:
        print(f"    button dedup-file writes on the event loop x{len(saves)}, ms {ms(saves)}")
    stalls = [late for t, late in gw["stalls"] if window[0] <= t <= window[1]]
    print(
        f"    event-loop wake-ups late by > {1000 * STALL:g} ms while pressing: {len(stalls)}"
        + (f", longest {1000 * max(stalls):.1f} ms" if stalls else "")
    )
    if backlog:
        sub = r["sub"]
        order = sorted(raised.values())
        if order:
            first_a, last_a = order[0], order[-1]
            print(
                f"  telemetry at the subscriber before the first alarm {first_a[1]:,}, before "
                f"the last {last_a[1]:,} (of {backlog:,}); presses began after "
                f"{args.start_after:,}"
            )
            draining = last_a[1] < backlog
            if sub["telemetry"] >= backlog:
                end = f"drain complete at the subscriber {sub['last_tele'] - last_a[0]:.2f} s later"
            else:
                end = f"only {sub['telemetry']:,} in by the end ({args.drain_wait:g} s wait)"
            print(
                f"  backlog still draining when the last alarm arrived: "
                f"{'yes' if draining else 'NO'}; {end}"
            )
        secs = sub["last_tele"] - sub["first_tele"]
        sc = gw["sent_curve"]
        if secs > 0 and len(sc) > 1:
            print(
                f"  drain: sink hands out {(sc[-1][1] - sc[0][1]) / (sc[-1][0] - sc[0][0]):,.0f} "
                f"msg/s, subscriber reads {(sub['telemetry'] - 1) / secs:,.0f} msg/s "
                f"({sub['telemetry']:,} received)"
            )
        fill = r["fill"]
        print(
            f"  fill: {backlog:,} rows, body {fill['body_bytes']:.0f} B avg, {fill['fill_s']:.2f} "
            f"s (separate process, before the gateway starts)"
        )
    use = r["cpu"]
    names = ["gateway", "broker", "subscriber", "alarm-subscriber", "presser"]
    cores = os.cpu_count() or 1
    print(
        f"  CPU while pressing ({r['cpu_window_s']:.1f} s), % of one core: "
        + ", ".join(f"{n} {use.get(n, math.nan):.0f}%" for n in names)
        + f"; machine {use['machine']:.0f}% of {100 * cores}%, other processes "
        f"{max(0.0, use['other']):.0f}%"
    )
    print(
        f"  peak RSS MiB: gateway {r['gateway_hwm_mib']:.1f} (VmHWM before stop), broker "
        f"{r['broker_hwm_mib']:.1f}, subscriber {r['sub']['max_rss_mib']:.1f}; gateway ready "
        f"{r['gateway_ready_s']:.2f} s after start; sink reconnects {gw['reconnects']}"
    )


def orchestrate(args: argparse.Namespace) -> int:
    print_header()
    started = time.monotonic()
    phases = [("idle", 0), ("backlog", args.backlog)] if args.backlog else [("idle", 0)]
    if args.only:
        phases = [p for p in phases if p[0] == args.only]
    results: dict[str, dict[str, Any]] = {}
    titles = {
        "idle": "1. idle: button -> gateway -> upstream subscriber, no backlog",
        "backlog": f"2. backlog: the same while a {args.backlog:,}-message telemetry "
        "backlog drains",
    }
    for name, backlog in phases:
        print(f"\n{titles[name]}", flush=True)
        t = time.monotonic()
        results[name] = run_phase(args, name, backlog)
        report(args, results[name], backlog)
        print(f"  (phase took {time.monotonic() - t:.0f} s)", flush=True)
    print(f"\ntotal {time.monotonic() - started:.0f} s; goal: p99 under 25 ms with the backlog")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--presses", type=int, default=200, help="button presses per phase")
    ap.add_argument("--spacing", type=float, default=0.02, help="s between presses")
    ap.add_argument("--backlog", type=int, default=100_000, help="telemetry backlog (0: idle only)")
    ap.add_argument(
        "--start-after", type=int, default=1000, help="telemetry at the subscriber before pressing"
    )
    ap.add_argument(
        "--drain-wait", type=float, default=60.0, help="s to wait for the drain after the alarms"
    )
    ap.add_argument("--only", choices=["idle", "backlog"], help="run one phase")
    ap.add_argument(
        "--max-inflight",
        type=int,
        help="experiment: the gateway's upstream.mqtt.max_inflight (default: the bench's 100)",
    )
    ap.add_argument(
        "--switch-interval",
        type=float,
        help="experiment: sys.setswitchinterval() in the gateway process (Python's 0.005 s)",
    )
    ap.add_argument(
        "--fsync-delay",
        type=float,
        default=0.0,
        metavar="MS",
        help="the SD-card model: every fsync/fdatasync of the gateway process takes MS longer"
        " (an LD_PRELOAD shim, compiled with cc; 20 is a typical SD card)",
    )
    ap.add_argument(
        "--nice", type=int, default=0, help="F40, CPU starvation: the gateway at this niceness"
    )
    ap.add_argument(
        "--hogs", type=int, default=0, help="F40: busy loops at niceness 0 for the whole phase"
    )
    ap.add_argument("--json", metavar="FILE", help="also write all raw figures as JSON")
    # internal: how the orchestrator starts its workers
    ap.add_argument(
        "--worker", choices=["subscriber", "presser", "gateway", "fill"], help=argparse.SUPPRESS
    )
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--expect", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--alarms-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is None:
        return orchestrate(args)
    if args.worker == "subscriber":
        worker_sub(args)
    elif args.worker == "presser":
        worker_press(args)
    elif args.worker == "gateway":
        asyncio.run(worker_gateway(args))
    else:
        asyncio.run(worker_fill(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
