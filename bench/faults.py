"""The long versions of the fault suite, and one table of what each fault cost.

    .venv/bin/python bench/faults.py                            # every row, defaults: ~16 min
    .venv/bin/python bench/faults.py --faults sigkill --kills 1000 --backlog 20000
    .venv/bin/python bench/faults.py --faults outage --outage 3600
    .venv/bin/python bench/faults.py --faults flap,blackhole --flap 3600 --blackhole 3600

``tests/faults/`` and ``tests/e2e/test_daemon.py`` run short versions of these faults in CI;
this script runs them long, against the same real peers (mosquitto, a Modbus TCP slave, the
daemon as systemd starts it), and prints for each row: what was offered, what arrived
upstream (first copies by the dedup key), what the gateway reported lost (gap reports'
counts), what it lost inside its documented window, duplicates (copies of a key already
seen), the alarm latency during the fault (press -> raised alarm at the platform's
subscriber, p50 / p99 / max), the gateway's peak RSS, and "all accounted: yes/no". Nothing is
asserted: the counts are printed so a reader can check ``offered = arrived + reported lost
(+ the documented window)`` and see where a row does not add up.

Rows (``--faults a,b``; sizes below the issue's are the defaults, see docs/reliability.md):

``sigkill``      ``--kills`` SIGKILLs of ``cgw run`` (issue: 1,000), each ``U(0, --up)`` s after
                 its ``READY=1``, restarted each time, while ``--devices`` devices are polled
                 every ``--interval`` s and a ``--backlog`` of telemetry drains (topped up
                 before each start by a process that exits without closing the store, as a
                 crash would: every start opens a file marked unclean); one button press per
                 life. Every committed reading must arrive once (or be in a gap); readings
                 answered by a device but not committed when the kill landed are counted per
                 life as the documented window (at most ``commit_interval`` of polling, plus
                 the answers on the wire) and must be the last answers of that life.
``outage``       the upstream broker down for ``--outage`` s (issue: 1 hour) while the devices
                 are polled and a button is pressed every ``--press-every`` s; after it
                 returns everything drains. Latency of the alarms pressed during the outage is
                 from the broker's return; of those pressed during the drain, from the press.
``broker-pause`` the upstream broker SIGSTOPped (hung, socket open) for ``--pause`` s (the
                 matrix's F02: 120 s): when the gateway noticed, when it was back, the alarms.
``modbus-lies``  for ``--lies-for`` s a slave that refuses a point, answers short and long
                 frames, stays silent, says busy and says device failure, one unit each:
                 every malformed answer must be a counted bad frame, never a value.
``disk-full``    the store on a ``--disk-mib`` MiB tmpfs while the uplink is down for
                 ``--disk-outage`` s: the quota fills, the oldest telemetry is evicted into gap
                 reports, then a ballast file takes the rest of the disk; alarms are kept.
                 Needs root to mount the tmpfs; otherwise the row says it was skipped.
``flap``         the link between the gateway and the broker reset (TCP RST, the suite's fault
                 proxy) after pauses of U(5, 30) s, seeded (``--seed``), for ``--flap`` s
                 (matrix F04: 1 hour): every reading and press must arrive, reconnects one
                 per reset, nothing dead-lettered; alarm latency press -> platform.
``blackhole``    the link black-holed for ``--blackhole`` s (matrix F03: 1 hour): nothing
                 forwarded on the live connection, new connections accepted and never
                 answered; the gateway's RSS, descriptors and asyncio tasks sampled every
                 ``--sample-every`` s must stay flat; afterwards everything drains.
``flood``        ``bench/flood.py --json FILE`` if that script exists (its figures go into the
                 table), otherwise the row says "see bench/flood.py".

Each row gets its own brokers (upstream and the community's local broker), slave, platform
subscriber, button presser and gateway in a temporary folder; every process is stopped by PID.
The output starts with the exact command line and the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fault_link import row_blackhole, row_flap
from fault_rows import row_lies, row_sigkill
from fault_table import Result, table, yes
from fault_uplink import row_disk, row_outage, row_pause
from harness.measure import print_header
from harness.procs import BENCH, emit_result, workdir

# -- row: flood (the hook for bench/flood.py) ---------------------------------------------------

FLOOD = BENCH / "flood.py"


def row_flood(args: argparse.Namespace) -> Result:
    """``bench/flood.py --json FILE [--flood-args]`` when it exists; its figures in the row.

    The hook reads these keys of the JSON object when present and shows the rest as notes:
    ``size``, ``offered``, ``arrived``, ``lost``, ``duplicates``, ``alarm_ms`` (``p50``,
    ``p99``, ``max``), ``peak_rss_mib``, ``accounted`` (true/false).
    """
    if not FLOOD.exists():
        return Result("flood", notes=["  see bench/flood.py (not in this checkout)"])
    with workdir("cgw-faults-flood-") as tmp:
        out = tmp / "flood.json"
        cmd = [sys.executable, str(FLOOD), "--json", str(out), *shlex.split(args.flood_args)]
        print(f"  $ {shlex.join(cmd)}", flush=True)
        done = subprocess.run(cmd, check=False)
        if done.returncode != 0 or not out.exists():
            return Result("flood", notes=[f"  bench/flood.py failed ({done.returncode})"])
        data: dict[str, Any] = json.loads(out.read_text())
    ms = data.get("alarm_ms") or {}
    shown = {"size", "offered", "arrived", "lost", "duplicates", "alarm_ms", "peak_rss_mib"}
    return Result(
        "flood",
        str(data.get("size", "-")),
        str(data.get("offered", "-")),
        str(data.get("arrived", "-")),
        str(data.get("lost", "-")),
        "-",
        str(data.get("duplicates", "-")),
        " / ".join(str(ms.get(k, "?")) for k in ("p50", "p99", "max")) + " ms" if ms else "-",
        f"{data['peak_rss_mib']:.1f} MiB" if "peak_rss_mib" in data else "-",
        yes(bool(data["accounted"])) if "accounted" in data else "-",
        [f"  {k}: {v}" for k, v in data.items() if k not in shown | {"accounted"}],
        data,
    )


# -- the command --------------------------------------------------------------------------------

ROWS: dict[str, Callable[[argparse.Namespace], Result]] = {
    "sigkill": row_sigkill,
    "outage": row_outage,
    "broker-pause": row_pause,
    "modbus-lies": row_lies,
    "disk-full": row_disk,
    "flap": row_flap,
    "blackhole": row_blackhole,
    "flood": row_flood,
}


def orchestrate(args: argparse.Namespace) -> int:
    print_header()
    wanted = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in ROWS]
    if unknown:
        raise SystemExit(f"unknown fault {unknown}; choose from {', '.join(ROWS)}")
    results = []
    started = time.monotonic()
    for name in wanted:
        print(f"\n{name}", flush=True)
        t0 = time.monotonic()
        result = ROWS[name](args)
        if any("NO EXIT" in line for line in result.notes):  # the clean stop failed (F30)
            result.accounted += "; SIGTERM did not stop it"
        results.append(result)
        for line in result.notes:
            print(line)
        print(f"  all accounted: {result.accounted.replace('*', '')}; row took "
              f"{time.monotonic() - t0:.0f} s", flush=True)  # fmt: skip
    print(f"\n{table(results)}\n\ntotal {time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in results], indent=1))
    return 0


async def worker_fill(args: argparse.Namespace) -> None:
    """Top the store's backlog up to ``--backlog`` rows, then exit without closing it.

    Leaving the file as a crash leaves it (no clean-shutdown mark, the WAL as it is) means the
    gateway's next start opens a file marked unclean, as after its own kill.
    """
    from harness.backlog import make_records, open_store

    store = await open_store(Path(args.tmp), 1)
    waiting = store.backlog("mqtt")
    records = make_records(max(0, args.backlog - waiting))
    for first in range(0, len(records), 10_000):  # Store.add drops telemetry past 50,000
        for rec in records[first : first + 10_000]:
            store.add(rec)
        await store.flush()
    emit_result({"added": len(records), "waiting": waiting})
    sys.stdout.flush()
    os._exit(0)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--faults", default=",".join(ROWS), help="rows to run, comma-separated")
    ap.add_argument(
        "--devices", type=int, default=10, help="polled devices (sigkill, outage, pause)"
    )
    ap.add_argument("--interval", type=float, default=0.1, help="their poll interval, s")
    ap.add_argument("--press-every", type=float, default=3.0, help="s between button presses")
    ap.add_argument("--kills", type=int, default=50, help="sigkill: SIGKILLs (issue: 1,000)")
    ap.add_argument("--up", type=float, default=4.0, help="sigkill: kill U(0, UP) s after READY")
    ap.add_argument(
        "--backlog", type=int, default=20_000, help="sigkill: backlog rows at each start"
    )
    ap.add_argument("--seed", type=int, default=1, help="sigkill: seed of the kill times")
    ap.add_argument("--outage", type=float, default=120.0, help="outage: s down (issue: 3,600)")
    ap.add_argument("--pause", type=float, default=120.0, help="broker-pause: s SIGSTOPped")
    ap.add_argument("--keepalive", type=int, help="upstream keepalive, s (default: the shipped 30)")
    ap.add_argument("--warmup", type=float, default=5.0, help="s of normal running before a fault")
    ap.add_argument("--lies-for", type=float, default=60.0, help="modbus-lies: s")
    ap.add_argument("--disk-mib", type=int, default=4, help="disk-full: tmpfs size, MiB")
    ap.add_argument("--disk-outage", type=float, default=90.0, help="disk-full: s uplink down")
    ap.add_argument("--disk-devices", type=int, default=30, help="disk-full: polled devices")
    ap.add_argument("--disk-interval", type=float, default=0.1, help="disk-full: poll interval")
    ap.add_argument(
        "--flap", type=float, default=120.0, help="flap: s of resets every 5-30 s (matrix: 1 h)"
    )
    ap.add_argument(
        "--blackhole", type=float, default=120.0, help="blackhole: s black-holed (matrix: 1 h)"
    )
    ap.add_argument("--sample-every", type=float, default=10.0, help="blackhole: s per sample")
    ap.add_argument("--flood-args", default="", help="flood: more arguments for bench/flood.py")
    ap.add_argument("--json", metavar="FILE", help="also write every row's figures as JSON")
    ap.add_argument("--logs", metavar="DIR", help="keep each row's gateway log in DIR")
    ap.add_argument("--worker", choices=["fill"], help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker == "fill":
        asyncio.run(worker_fill(args))
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
