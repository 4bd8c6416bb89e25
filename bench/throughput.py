"""Throughput benchmark of the gateway on loopback. Run by hand; the test suite never runs it.

    .venv/bin/python bench/throughput.py [--devices 50] [--backlog 100000] [--phases e2e,drain,raw]

Phases (see bench/README.md). Each phase gets a fresh mosquitto and a fresh subscriber, and its
gateway side runs in a subprocess of its own, so every peak RSS printed belongs to one phase:

``e2e``     N simulated Modbus TCP devices (a separate simulator process, several devices per
            port) -> the real ``Runtime`` (pollers, ``Store``, ``MqttSink``) -> mosquitto -> a
            paho subscriber process. Readings/s and messages/s over a fixed window after a
            warm-up, poll latency p50/p99, overruns, poll-to-subscriber latency p50/p99.
``drain``   a ``Store`` filled with a telemetry backlog while no sink runs, then ``MqttSink``
            started: time until ``store.backlog('mqtt') == 0`` and the subscriber has them all.
``raw``     plain paho-mqtt QoS 1 (``loop_start``, ``max_inflight_messages_set(100)``) publishing
            the same payloads to the same broker and subscriber: the ceiling the drain is
            compared with.
``aioraw``  (optional) aiomqtt QoS 1, 100 publishes in flight, same payloads: the client
            library's share of the gap between ``drain`` and ``raw``.

Nothing here asserts a timing; it prints figures. Every process it starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import procs
from harness.backlog import worker_drain, worker_fill
from harness.measure import (
    CpuSampler,
    cpu_per_msg_us,
    max_rss_mib,
    pct,
    print_header,
    usage_lines,
)
from harness.peers import start_simulator, worker_sim
from harness.procs import (
    PREFIX,
    Broker,
    Child,
    Phase,
    first_child,
    workdir,
)
from throughput_workers import STOP_WAIT, worker_aioraw, worker_e2e, worker_raw, worker_sub

if TYPE_CHECKING:
    pass

HERE = Path(__file__).resolve()
TELEMETRY_FILTER = f"{PREFIX}/telemetry/#"
PHASES = ("e2e", "drain", "raw", "aioraw")


# -- orchestration: processes -------------------------------------------------------------------


def worker_argv(kind: str, *extra: str) -> list[str]:
    """This script's worker ``kind``."""
    return procs.worker_argv(HERE, kind, *extra)


@contextlib.contextmanager
def peers(
    tmp: Path, sub_args: Sequence[str], cpu: CpuSampler
) -> Iterator[tuple[Broker, Child, Callable[[Child], Child]]]:
    """A fresh broker and subscriber; children registered through the callback are stopped too."""
    with Phase(tmp, cpu) as phase:
        sub = phase.start(
            "subscriber",
            worker_argv(
                "sub", "--port", str(phase.broker.port), "--filter", TELEMETRY_FILTER, *sub_args
            ),
        )
        sub.expect("READY", 15)
        yield phase.broker, sub, phase.own


def read_sub(sub: Child, out: Path) -> dict[str, Any]:
    """Stop the subscriber and load what it recorded."""
    sub.stop(30)
    data: dict[str, Any] = json.loads(out.read_text())
    return data


# -- orchestration: phases ----------------------------------------------------------------------


def phase_e2e(args: argparse.Namespace, tmp: Path, cpu: CpuSampler) -> dict[str, Any]:
    out = tmp / "sub.json"
    with peers(tmp, ["--keep", "--out", str(out)], cpu) as (broker, sub, own):
        sim_args = ["--devices", str(args.devices), "--per-port", str(args.per_port)]
        sim, ports = start_simulator(args.devices, args.per_port, args.profile)
        own(sim)
        gw_args = [
            *("--port", str(broker.port), "--modbus-ports", json.dumps(ports), *sim_args),
            *("--profile", args.profile, "--interval", str(args.interval)),
            *("--warmup", str(args.warmup), "--window", str(args.window), "--tmp", str(tmp)),
        ]
        gw = Child("gateway", worker_argv("e2e", *gw_args))
        own(gw)
        res = gw.result(args.warmup + args.window + 90)
        sim.close_stdin()
        sim_res = sim.result(30)
        res["broker_rss_mib"] = broker.peak_rss_mib()
        recv = read_sub(sub, out)
    t0, t1 = res["t0"], res["t1"]
    inside = [i for i, t in enumerate(recv["arrivals"]) if t0 <= t < t1]
    res["msgs"] = len(inside)
    res["points"] = sum(recv["points"][i] for i in inside)
    res["e2e_p50_ms"] = pct([recv["latency"][i] for i in inside], 50) * 1000
    res["e2e_p99_ms"] = pct([recv["latency"][i] for i in inside], 99) * 1000
    res["received_total"] = len(recv["arrivals"])
    res["unique_total"] = recv["unique"]
    res["sub_rss_mib"] = recv["max_rss_mib"]
    res["sim_rss_mib"] = sim_res["max_rss_mib"]
    res["cpu"] = cpu.usage(t0, t1)
    return res


def phase_publish(
    args: argparse.Namespace,
    tmp: Path,
    cpu: CpuSampler,
    kind: str,
    worker: Callable[..., list[str]] | None = None,
) -> dict[str, Any]:
    """``drain``, ``raw`` or ``aioraw``: ``--backlog`` messages to a fresh broker and subscriber.

    ``worker(*args)`` builds the measured worker's command line (default: this script's).
    """
    out = tmp / "sub.json"
    extra = ["--cprofile", args.profile_drain] if kind == "drain" and args.profile_drain else []
    sub_args = ["--expect", str(args.backlog), "--out", str(out)]
    with peers(tmp, sub_args, cpu) as (broker, sub, own):
        worker_args = [
            "--port",
            str(broker.port),
            "--backlog",
            str(args.backlog),
            "--tmp",
            str(tmp),
        ]
        fill: dict[str, Any] = {}
        if kind == "drain":  # its own process, so the drain's RSS is the drain's alone
            filler = Child("fill", worker_argv("fill", *worker_args))
            own(filler)
            fill = filler.result(300)
        argv = (worker or functools.partial(worker_argv, kind))(*worker_args, *extra)
        if kind == "drain" and args.spy_drain:  # py-spy starts the worker and samples it
            spy = os.environ.get("PY_SPY") or shutil.which("py-spy") or "py-spy"
            argv = [spy, "record", "--format", "raw", "--rate", "250", "--threads",
                    "-o", args.spy_drain, "--", *argv]  # fmt: skip
        measured = Child(kind, argv)
        own(measured)
        if argv[0] != sys.executable:  # under py-spy: watch the Python child as the worker
            cpu.watch("py-spy", measured.proc.pid)
            cpu.watch(kind, first_child(measured.proc.pid, 5.0))
        res = measured.result(600)
        res.update({f"fill_{k}": v for k, v in fill.items()})
        res["sub_done"] = float(sub.expect("DONE", 120))
        res["broker_rss_mib"] = broker.peak_rss_mib()
        recv = read_sub(sub, out)
    arrivals: list[float] = recv["arrivals"]
    res["received"] = len(arrivals)
    res["sub_first"] = arrivals[0]
    res["sub_last"] = max(arrivals)
    res["sub_rss_mib"] = recv["max_rss_mib"]
    res["end"] = max(res["t_acked"], res["sub_last"])
    res["seconds"] = res["end"] - res["t0"]
    res["rate"] = args.backlog / res["seconds"]
    res["sub_rate"] = (len(arrivals) - 1) / (res["sub_last"] - res["sub_first"])
    res["cpu"] = cpu.usage(res["t0"], res["end"])
    return res


# -- orchestration: report ----------------------------------------------------------------------


def report_e2e(args: argparse.Namespace, r: dict[str, Any]) -> None:
    w = r["window_s"]
    offered = args.devices / args.interval
    print(
        f"  devices {args.devices} ({args.profile}, {args.per_port} per Modbus TCP port), "
        f"poll interval {args.interval} s -> offered {offered:.0f} polls/s; "
        f"window {w:.1f} s after {args.warmup} s warm-up"
    )
    print(
        f"  readings/s end to end: {r['points'] / w:,.0f}   telemetry msg/s: {r['msgs'] / w:,.1f}"
        f"   polls/s: {r['polls'] / w:,.1f}   published/s (sink): {r['published'] / w:,.1f}"
    )
    print(
        f"  poll latency p50 {r['poll_p50_ms']:.2f} ms, p99 {r['poll_p99_ms']:.2f} ms, "
        f"max {r['poll_max_ms']:.2f} ms (incl. waiting for the shared bus)"
    )
    print(
        f"  poll -> subscriber latency p50 {r['e2e_p50_ms']:.0f} ms, p99 {r['e2e_p99_ms']:.0f} ms "
        f"(includes the store's 1 s commit interval)"
    )
    print(
        f"  overruns in window {r['overruns']} (total {r['overruns_total']}), failed polls "
        f"{r['failed_polls']}, backlog at window end {r['backlog_end']}, "
        f"received {r['received_total']} ({r['unique_total']} unique)"
    )
    stop = f"{r['stop_s']:.2f} s" if r["stop_s"] is not None else f"did NOT return in {STOP_WAIT} s"
    print(f"  Runtime shutdown after stop: {stop}")
    if r["swallowed"]:
        print(
            f"  polls that returned normally while their task was being cancelled "
            f"(cancellation lost, Python 3.11 wait_for): {', '.join(r['swallowed'])}"
        )
    names = ["gateway", "simulator", "broker", "subscriber"]
    print(usage_lines(r["cpu"], names, w, r["msgs"]))
    print(
        f"  peak RSS MiB: gateway {r['max_rss_mib']:.1f} (after imports/config "
        f"{r['rss_start_mib']:.1f}), broker {r['broker_rss_mib']:.1f}, "
        f"simulator {r['sim_rss_mib']:.1f}, subscriber {r['sub_rss_mib']:.1f}"
    )


def report_publish(kind: str, r: dict[str, Any], n: int) -> None:
    after = "store opened" if kind == "drain" else "payloads built"
    secs = r["seconds"]
    lost = n - r["received"]
    print(
        f"  {n:,} msgs in {secs:.2f} s = {r['rate']:,.0f} msg/s (start -> acked and all at the "
        f"subscriber); subscriber first->last {r['sub_rate']:,.0f} msg/s"
    )
    if kind == "drain":
        print(
            f"  fill (separate process, peak RSS {r['fill_max_rss_mib']:.1f} MiB): {r['rows']:,} "
            f"rows, body {r['fill_body_bytes']:.0f} B avg, {r['fill_fill_s']:.2f} s "
            f"({r['rows'] / r['fill_fill_s']:,.0f} rows/s, 10,000 per commit)"
        )
        print(
            f"  backlog 0 after {r['t_acked'] - r['t0']:.2f} s, subscriber complete after "
            f"{r['sub_last'] - r['t0']:.2f} s; reconnects {r['reconnects']}"
        )
    else:
        print(
            f"  payload {r['payload_bytes']:.0f} B avg; all acked after "
            f"{r['t_acked'] - r['t0']:.2f} s, subscriber complete after "
            f"{r['sub_last'] - r['t0']:.2f} s"
        )
    print(f"  received {r['received']:,} ({'none' if lost == 0 else lost} missing)")
    print(usage_lines(r["cpu"], [kind, "broker", "subscriber"], secs, n))
    print(
        f"  peak RSS MiB: {kind} process {r['max_rss_mib']:.1f} (after imports "
        f"{r['rss_start_mib']:.1f}, {after} {r['rss_filled_mib']:.1f}), broker "
        f"{r['broker_rss_mib']:.1f}, subscriber {r['sub_rss_mib']:.1f}"
    )


def orchestrate(args: argparse.Namespace) -> int:
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases {sorted(unknown)}; choose from {PHASES}")
    print_header()
    print(f"orchestrator RSS {max_rss_mib():.1f} MiB (each phase's gateway side is a subprocess)")
    results: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    titles = {
        "e2e": "a. end to end: Modbus TCP simulator -> Runtime -> mosquitto -> subscriber",
        "drain": f"b. drain of a {args.backlog:,}-message telemetry backlog by MqttSink",
        "raw": f"c. raw paho-mqtt QoS 1, {args.backlog:,} messages, 100 in flight",
        "aioraw": f"c2. raw aiomqtt QoS 1, {args.backlog:,} messages, 100 in flight (tasks)",
    }
    for phase in phases:
        print(f"\n{titles[phase]}", flush=True)
        t = time.monotonic()
        with (
            workdir(f"cgw-bench-{phase}-") as tmp,
            CpuSampler() as cpu,
        ):
            if phase == "e2e":
                results[phase] = phase_e2e(args, tmp, cpu)
                report_e2e(args, results[phase])
            else:
                results[phase] = phase_publish(args, tmp, cpu, phase)
                report_publish(phase, results[phase], args.backlog)
        print(f"  (phase took {time.monotonic() - t:.0f} s)", flush=True)
    if "drain" in results and "raw" in results:
        drain, raw = results["drain"]["rate"], results["raw"]["rate"]
        print(
            f"\ndrain / raw paho = {drain:,.0f} / {raw:,.0f} = {100 * drain / raw:.0f}% "
            f"(goal >= 60%); subscriber-side rates: "
            f"{100 * results['drain']['sub_rate'] / results['raw']['sub_rate']:.0f}%"
        )
    if "drain" in results and "raw" in results:
        cost = [
            cpu_per_msg_us(results[k]["cpu"], k, results[k]["seconds"], args.backlog)
            for k in ("drain", "raw")
        ]
        print(
            f"publisher CPU per message: drain {cost[0]:.0f} µs, raw paho {cost[1]:.0f} µs "
            f"(raw/drain {100 * cost[1] / cost[0]:.0f}%)"
        )
    if "drain" in results and "aioraw" in results:
        drain, aio = results["drain"]["rate"], results["aioraw"]["rate"]
        print(f"drain / raw aiomqtt = {drain:,.0f} / {aio:,.0f} = {100 * drain / aio:.0f}%")
    if args.profile_drain and "drain" in results:
        print(f"cProfile of the drain written to {args.profile_drain}; top functions:")
        import pstats

        pstats.Stats(args.profile_drain).sort_stats("tottime").print_stats(25)
    print(f"total {time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--devices", type=int, default=50, help="simulated Modbus devices (e2e)")
    ap.add_argument("--per-port", type=int, default=10, help="devices per simulator TCP port")
    ap.add_argument("--profile", default="env-station-rs485", help="device profile (e2e)")
    ap.add_argument("--interval", type=float, default=0.2, help="poll interval, s (e2e)")
    ap.add_argument("--warmup", type=float, default=5.0, help="s before the window (e2e)")
    ap.add_argument("--window", type=float, default=30.0, help="measuring window, s (e2e)")
    ap.add_argument("--backlog", type=int, default=100_000, help="messages (drain, raw)")
    ap.add_argument(
        "--phases", default="e2e,drain,raw", help=f"comma-separated subset of {','.join(PHASES)}"
    )
    ap.add_argument("--profile-drain", metavar="FILE", help="cProfile the drain into FILE")
    ap.add_argument(
        "--spy-drain",
        metavar="FILE",
        help="sample the drain worker with py-spy (PATH or $PY_SPY) into FILE, collapsed stacks",
    )
    ap.add_argument("--json", metavar="FILE", help="also write all figures as JSON")
    # internal: how the orchestrator starts its workers
    ap.add_argument(
        "--worker", choices=["sim", "sub", "e2e", "fill", *PHASES[1:]], help=argparse.SUPPRESS
    )
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--modbus-ports", help=argparse.SUPPRESS)
    ap.add_argument("--filter", help=argparse.SUPPRESS)
    ap.add_argument("--expect", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    ap.add_argument("--cprofile", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workers: dict[str, Callable[[argparse.Namespace], Awaitable[None] | None]] = {
        "sim": worker_sim,
        "sub": worker_sub,
        "e2e": worker_e2e,
        "fill": worker_fill,
        "drain": worker_drain,
        "raw": worker_raw,
        "aioraw": worker_aioraw,
    }
    if args.worker is None:
        return orchestrate(args)
    outcome = workers[args.worker](args)
    if outcome is not None:
        asyncio.run(_awaited(outcome))
    return 0


async def _awaited(aw: Awaitable[None]) -> None:
    await aw


if __name__ == "__main__":
    sys.exit(main())
