"""The availability report: what the history says about each device, per day, month or span.

Contract (pure: no I/O and no clock; ``now`` comes in):
- A device's time counts from its first known state (its first poll outcome, heartbeat or pin
  check) on; before that, and from its removal from the config, it counts neither way.
- Counted time is up (online), down (offline) or the gateway's own outage (a restart: from
  the last time the gateway was known alive to its next start), which overrides the device's
  state. After a restart a device keeps its last state until its first outcome says otherwise.
- An outage is a stretch of counted time that is not up, whatever the mix of device and
  gateway outage in it. It is cut at the period's bounds: an outage across midnight counts in
  both days, each with its own part (the month counts it once). ``gateway_outages`` are those
  that are the gateway's outage alone; ``gateway_downtime_s`` is the gateway's part of the
  downtime, so a supplier is not held to account for the gateway's restarts.
- ``uptime_pct`` is up / counted; ``completeness_pct`` is readings / (counted / interval),
  capped at 100, null for a device without a poll interval; both null when nothing counted.
  A group (``by_kind``, ``by_supplier``, ``all``) sums its devices' seconds and readings.
- Periods are whole local days in ``zone``: each day, each calendar month (cut to the range),
  or the whole range; nothing counts past ``now``. Every configured device is listed; one no
  longer configured only where it has counted time or readings.
"""

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.core.contract import iso
from gateway.reports.history import DeviceInfo, History, Restart

MAX_DAYS = 400  # days one report may span (the default retention)
BY = ("day", "month")
Segment = tuple[float, float, str]  # start, end, "up" | "down" | "gateway"


def check_range(first: date, last: date) -> str | None:
    """Why ``first``..``last`` (local days, both included) cannot be reported, or None."""
    if last < first:
        return f"the range ends ({last}) before it starts ({first})"
    if (last - first).days + 1 > MAX_DAYS:
        return f"a report spans at most {MAX_DAYS} days"
    return None


def midnight(day: date, zone: ZoneInfo) -> float:
    """Wall time of the local midnight that starts ``day`` in ``zone``."""
    return datetime.combine(day, time(), zone).timestamp()


def periods(first: date, last: date, by: str | None) -> list[tuple[str, date, date]]:
    """(label, first day, last day) of each period of ``first``..``last``."""
    if by is None:
        return [(str(first) if first == last else f"{first}/{last}", first, last)]
    out = []
    day = first
    while day <= last:
        if by == "day":
            end = day
        else:
            next_month = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
            end = min(last, next_month - timedelta(days=1))
        out.append((str(day) if by == "day" else f"{day:%Y-%m}", day, end))
        day = end + timedelta(days=1)
    return out


def segments(
    changes: Sequence[tuple[float, bool | None]],
    restarts: Sequence[Restart],
    start: float,
    end: float,
) -> list[Segment]:
    """A device's counted time in [start, end): its own states, the gateway's outages on top."""
    own: list[Segment] = []
    for i, (ts, online) in enumerate(changes):
        upto = changes[i + 1][0] if i + 1 < len(changes) else end
        a, b = max(ts, start), min(upto, end)
        if b > a and online is not None:
            own.append((a, b, "up" if online else "down"))
    out: list[Segment] = []
    for a, b, kind in own:
        t = a
        for r in restarts:
            lo, hi = max(r.down, t), min(r.up, b)
            if hi <= lo:
                continue
            if lo > t:
                out.append((t, lo, kind))
            out.append((lo, hi, "gateway"))
            t = hi
        if b > t:
            out.append((t, b, kind))
    merged: list[Segment] = []
    for seg in out:
        if merged and merged[-1][2] == seg[2] and merged[-1][1] == seg[0]:
            merged[-1] = (merged[-1][0], seg[1], seg[2])
        else:
            merged.append(seg)
    return merged


@dataclass
class Tally:
    """Seconds, outages and readings of one device (or a group) in one period."""

    devices: int = 0
    up: float = 0.0
    down: float = 0.0
    gateway: float = 0.0
    outages: int = 0
    gateway_outages: int = 0
    longest: float = 0.0
    readings: int = 0
    polled: int = 0  # readings of the devices that have an interval
    expected: float | None = None  # None: no device with an interval

    @property
    def counted(self) -> float:
        return self.up + self.down + self.gateway

    def add(self, other: "Tally") -> None:
        """Sum ``other`` into this group."""
        self.devices += other.devices
        self.up += other.up
        self.down += other.down
        self.gateway += other.gateway
        self.outages += other.outages
        self.gateway_outages += other.gateway_outages
        self.longest = max(self.longest, other.longest)
        self.readings += other.readings
        if other.expected is not None:
            self.polled += other.polled
            self.expected = (self.expected or 0.0) + other.expected

    def figures(self) -> dict[str, Any]:
        """The report's figures (seconds to the millisecond, shares in percent)."""
        counted = self.counted
        complete = None
        if self.expected:  # some counted time of a polled device
            complete = round(min(100.0, 100.0 * self.polled / self.expected), 3)
        return {
            "counted_s": round(counted, 3),
            "uptime_pct": round(100.0 * self.up / counted, 3) if counted else None,
            "outages": self.outages,
            "gateway_outages": self.gateway_outages,
            "longest_outage_s": round(self.longest, 3),
            "downtime_s": round(self.down + self.gateway, 3),
            "gateway_downtime_s": round(self.gateway, 3),
            "readings": self.readings,
            "readings_expected": None if self.expected is None else round(self.expected),
            "completeness_pct": complete,
        }


def tally(segs: Sequence[Segment], ends: Sequence[float], a: float, b: float) -> Tally:
    """The seconds and outages of ``segs`` (``ends``: their ends, ascending) within [a, b)."""
    out = Tally(devices=1)
    runs: list[tuple[float, float, set[str]]] = []  # outages: start, end, what they were
    for i in range(bisect.bisect_right(ends, a), len(segs)):
        s, e, kind = segs[i]
        if s >= b:
            break
        s, e = max(s, a), min(e, b)
        if kind == "up":
            out.up += e - s
            continue
        if kind == "down":
            out.down += e - s
        else:
            out.gateway += e - s
        if runs and runs[-1][1] == s:  # the outage goes on: the device's, then the gateway's
            runs[-1] = (runs[-1][0], e, runs[-1][2] | {kind})
        else:
            runs.append((s, e, {kind}))
    out.outages = len(runs)
    out.gateway_outages = sum(kinds == {"gateway"} for _, _, kinds in runs)
    out.longest = max((e - s for s, e, _ in runs), default=0.0)
    return out


def _group(rows: Iterable[tuple[str | None, Tally]], key: str) -> list[dict[str, Any]]:
    groups: dict[str | None, Tally] = {}
    for name, t in rows:
        groups.setdefault(name, Tally()).add(t)
    ordered = sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    return [{key: name, "devices": t.devices, **t.figures()} for name, t in ordered]


def availability_report(
    history: History,
    zone_name: str,
    first: date,
    last: date,
    by: str | None,
    now: float,
) -> dict[str, Any]:
    """The report of local days ``first``..``last`` in ``zone_name``, per ``by`` period."""
    zone = ZoneInfo(zone_name)
    start = midnight(first, zone)
    stop = max(start, min(midnight(last + timedelta(days=1), zone), now))
    timelines = {
        d: segments(history.changes.get(d, ()), history.restarts, start, stop)
        for d in history.devices
    }
    out = []
    for label, p_first, p_last in periods(first, last, by):
        a, b = midnight(p_first, zone), midnight(p_last + timedelta(days=1), zone)
        days = [str(p_first + timedelta(days=n)) for n in range((p_last - p_first).days + 1)]
        rows = []
        for device, info in sorted(history.devices.items()):
            segs = timelines[device]
            t = tally(segs, [s[1] for s in segs], a, min(b, stop))
            counts = history.readings.get(device, {})
            t.readings = sum(counts.get(day, 0) for day in days)
            if info.interval:
                t.polled, t.expected = t.readings, t.counted / info.interval
            if info.configured or t.counted or t.readings:
                rows.append((info, t))
        out.append(_period(label, a, b, rows))
    return {
        "from": str(first),
        "to": str(last),
        "by": by,
        "timezone": zone_name,
        "restarts": restarts_view(history.restarts, start, stop),
        "periods": out,
    }


def _period(
    label: str, a: float, b: float, rows: Sequence[tuple[DeviceInfo, Tally]]
) -> dict[str, Any]:
    total = Tally()
    for _, t in rows:
        total.add(t)
    return {
        "period": label,
        "from": iso(a),
        "to": iso(b),
        "devices": [
            {"device": i.id, "kind": i.kind, "supplier": i.supplier, **t.figures()} for i, t in rows
        ],
        "by_kind": _group(((i.kind, t) for i, t in rows), "kind"),
        "by_supplier": _group(((i.supplier, t) for i, t in rows), "supplier"),
        "all": {"devices": total.devices, **total.figures()},
    }


def restarts_view(restarts: Iterable[Restart], start: float, stop: float) -> list[dict[str, Any]]:
    """The gateway's own outages that touch [start, stop), as they were (not cut)."""
    return [
        {"from": iso(r.down), "to": iso(r.up), "seconds": round(r.up - r.down, 3), "clean": r.clean}
        for r in restarts
        if r.up > start and r.down < stop
    ]
