"""Fault-matrix row F29 at the matrix's size: SIGKILL at each named failpoint, ``--runs`` times.

    .venv/bin/python bench/failpoints.py                 # 50 runs of each of 7 points, ~20 min
    .venv/bin/python bench/failpoints.py --runs 5 --points during_eviction

Runs ``tests/faults/test_failpoints.py`` with ``CGW_FAILPOINT_RUNS=<runs>``: the same real
daemon, brokers and Modbus slave as the suite, and the same invariants checked after every
run (a press raised exactly once, no hole in the alarm lane, one epoch, telemetry received plus
the gap reports' counts equal to every seq given out, a migration finished by the next start).
Prints the exact command and the machine, then one line per failpoint: runs, runs whose
invariants all held, and the time per run (median / max). The failures, if any, follow with
pytest's own report of what did not hold.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.measure import print_header

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.support.faulty import POINTS  # noqa: E402  (the failpoints the daemon knows)

TESTS = {"during_eviction": "eviction", "during_migration": "migration"}


def point_of(name: str) -> str:
    """The failpoint of a test case's name, e.g. ``test_...[after_insert_before_commit-3]``."""
    for point, word in TESTS.items():
        if word in name:
            return point
    return name.split("[", 1)[1].rsplit("-", 1)[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=50, help="runs of each failpoint (matrix: 50)")
    ap.add_argument("--points", default=",".join(POINTS), help="comma-separated failpoints")
    args = ap.parse_args()
    wanted = [p for p in args.points.split(",") if p]
    unknown = set(wanted) - set(POINTS)
    if unknown:
        ap.error(f"unknown failpoints: {', '.join(sorted(unknown))}")
    press = [p for p in wanted if p not in TESTS]
    words = [f"({' or '.join(press)}) and press_once"] if press else []
    words += [TESTS[p] for p in wanted if p in TESTS]
    print_header()
    with tempfile.TemporaryDirectory(prefix="cgw-bench-failpoints-") as tmp:
        report = Path(tmp) / "junit.xml"
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "tests/faults/test_failpoints.py", "-k", " or ".join(words),
             f"--junitxml={report}", "-o", "junit_family=xunit2"],
            cwd=REPO, env={**os.environ, "CGW_FAILPOINT_RUNS": str(args.runs)},
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        cases = ET.parse(report).getroot().iter("testcase") if report.exists() else iter(())
        times: dict[str, list[float]] = defaultdict(list)
        passed: dict[str, int] = defaultdict(int)
        for case in cases:
            point = point_of(case.get("name", ""))
            times[point].append(float(case.get("time", "0")))
            passed[point] += not any(c.tag in ("failure", "error") for c in case)
    print()
    print("| failpoint | runs | invariants held | time per run median / max |")
    print("|---|---|---|---|")
    for point in wanted:
        t = times.get(point, [])
        shown = f"{statistics.median(t):.1f} / {max(t):.1f} s" if t else "-"
        print(f"| {point} | {len(t)} | {passed.get(point, 0)} | {shown} |")
    if done.returncode != 0:
        print("\n" + done.stdout[-6000:] + done.stderr[-2000:])
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
