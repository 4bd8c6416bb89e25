"""What ``flood.py`` reads from the gateway and prints: its ``/metrics`` (rejects by input and
reason, whether both inputs are subscribed), its log lines counted by message, and the report.

Contract: pure reading and printing; the run's figures come in as ``flood.run``'s dict (the
same one ``--json`` writes), nothing here starts or stops a process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flood_workers import MIX
from harness.measure import pct

SYS_TOPICS = ("publish/messages/received", "publish/messages/sent", "publish/messages/dropped")


_REJECTED = re.compile(
    r'^cgw_input_rejected_total\{input="([^"]+)",reason="([^"]+)"\} (\S+)$',
    re.MULTILINE,
)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        text: str = resp.read().decode()
        return text


def rejected(text: str) -> dict[str, dict[str, int]]:
    """``cgw_input_rejected_total`` by input and reason (zeros left out)."""
    out: dict[str, dict[str, int]] = {}
    for name, reason, value in _REJECTED.findall(text):
        if float(value):
            out.setdefault(name, {})[reason] = int(float(value))
    return out


def subscribed(text: str) -> bool:
    """Both inputs running (``cgw_input_running``: their local broker session subscribed)."""
    found = re.findall(r"^cgw_input_running\{([^}]*)\} (\S+)$", text, re.MULTILINE)
    return len(found) == 2 and all(float(v) == 1 for _, v in found)


def settle(url: str, quiet: float, timeout: float) -> tuple[str, float]:
    """Scrape until the reject counters stay the same for ``quiet`` s; (text, seconds taken)."""
    t0 = time.monotonic()
    text = scrape(url)
    last, since = rejected(text), time.monotonic()
    while time.monotonic() - t0 < timeout:
        time.sleep(0.25)
        text = scrape(url)
        now = rejected(text)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return text, since - t0


def log_summary(path: Path) -> dict[str, int]:
    """The gateway's log lines (JSON) counted by level and message, numbers blanked."""
    counts: dict[str, int] = {}
    if not path.exists():
        return counts
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            key = "(not JSON) " + line[:80]
        else:
            text = re.sub(r"\d+", "N", str(entry.get("msg", "")))
            key = f"{entry.get('level', '?')} {text[:110]}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def ms(values: Sequence[float]) -> str:
    """``p50 / p99 / max`` of seconds, in ms."""
    if not values:
        return "n/a"
    return " / ".join(f"{1000 * pct(values, p):,.0f}" for p in (50, 99, 100))


def report(args: argparse.Namespace, r: dict[str, Any]) -> None:
    sent: dict[str, int] = {}
    for f in r["flood"]:
        for kind, n in f["sent"].items():
            sent[kind] = sent.get(kind, 0) + n
    total = sum(sent.values())
    seconds = max(f["seconds"] for f in r["flood"])
    print(
        f"\njunk: target {args.rate:,} msg/s for {args.duration:g} s from {args.workers} "
        f"{args.client} publisher(s), QoS 0: {total:,} written in {seconds:.1f} s = "
        f"{total / seconds:,.0f} msg/s achieved"
    )
    print("  kind               share  sent        counted by the gateway as (before a rate limit)")
    for kind, share, reason in MIX:
        print(f"  {kind:<18} {share:>4}%  {sent.get(kind, 0):>10,}  {reason}")
    b0, b1 = r["sys_before"], r["sys_after"]
    delta = {t: b1[t] - b0[t] for t in SYS_TOPICS}
    print(
        f"  local broker ($SYS, during the run): received {delta[SYS_TOPICS[0]]:,.0f}, sent "
        f"{delta[SYS_TOPICS[1]]:,.0f}, dropped {delta[SYS_TOPICS[2]]:,.0f} (its queue per client:"
        " max_queued_messages of local.conf)"
    )
    sends: dict[str, list[float]] = r["press"]["sends"]
    raised: dict[str, list[float]] = r["sub"]["raised"]
    lat = [raised[d][0] - sends[d][0] for d in sends if d in raised]
    print(
        f"SOS: {len(sends)} presses, 1 s apart, QoS 1; raised alarms upstream {len(lat)} "
        f"({len(sends) - len(lat) or 'none'} missing, {r['sub']['duplicates']} duplicates)"
    )
    print(f"  press -> upstream, ms   p50 / p99 / max   {ms(lat)}   (target p99 < 1,000)")
    waited = r["alarms_wait_s"]
    print(
        f"  every alarm upstream {waited:.1f} s after the last press"
        if waited is not None
        else f"  not every alarm upstream {args.alarm_wait:g} s after the last press"
    )
    use = r["cpu"]
    print(
        f"gateway: RSS {r['rss_before_mib']:.1f} MiB before the flood, peak (VmHWM) "
        f"{r['hwm_mib']:.1f} MiB, {r['rss_after_mib']:.1f} MiB at the end (target < 150 MB); "
        f"READY after {r['ready_s']:.2f} s"
    )
    curve = r["rss_curve"]
    if curve:
        marks = [curve[min(len(curve) - 1, int(len(curve) * q))] for q in (0.25, 0.5, 0.75, 1)]
        print("  RSS during the run: " + ", ".join(f"{m:.0f} MiB at {t:.0f} s" for t, m in marks))
    names = ["gateway", "local broker"] + [f"flood-{i}" for i in range(args.workers)]
    print(
        f"  CPU during the flood ({r['flood_s']:.1f} s), % of one core: "
        + ", ".join(f"{n} {use.get(n, math.nan):.0f}%" for n in names)
        + f"; machine {use['machine']:.0f}% of {100 * (os.cpu_count() or 1)}%, other "
        f"processes {max(0.0, use['other']):.0f}%"
    )
    print(f"  still reading junk {r['catch_up_s']:.1f} s after the flood ended")
    rej = r["rejected"]
    counted = sum(n for reasons in rej.values() for n in reasons.values())
    print(f"  rejected (cgw_input_rejected_total), {counted:,} in all:")
    for name, reasons in sorted(rej.items()):
        print(f"    {name}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(reasons.items())))
    lines = sorted(r["log"].items(), key=lambda kv: -kv[1])
    print(f"  gateway log: {sum(r['log'].values())} lines" + (", most frequent:" if lines else ""))
    for text, n in lines[:8]:
        print(f"    {n:>6} x {text}")
