"""What the local API, ``cgw`` and the console show of a device, a read and a scan (pure).

Contract:
- Each function turns frozen values (``gateway.core.devices.DeviceState``,
  ``gateway.core.commission``) into JSON-ready dicts; no I/O, no clock, nothing kept.
- Times are ISO 8601 UTC with milliseconds, like the upstream messages; an unknown time is
  null. A point is ``implausible`` when its quality is ``bad``: the value lies outside the
  point's physical ``range`` (or is not a number), which is how a sensor on the wrong unit id
  or with the wrong profile shows.
- ``bus`` is the bus of a Modbus device and null for other kinds; ``profile`` the profile its
  config names, or null.
"""

from collections.abc import Mapping
from typing import Any

from gateway.core.commission import DeviceRead, ScanReport
from gateway.core.contract import iso
from gateway.core.devices import DeviceState, PointState
from gateway.core.messages import Quality, Reading


def device_view(state: DeviceState) -> dict[str, Any]:
    """One device as the gateway knows it now: availability, last values, counters."""
    return {
        "id": state.id,
        "kind": state.kind,
        "bus": state.bus,
        "profile": state.profile,
        "online": state.online,
        "since": None if state.since is None else iso(state.since),
        "reason": state.reason,
        "points": [_point(name, p) for name, p in state.points.items()],
        "disabled": dict(state.disabled),
        "counters": _counters(state.counters),
        "last_error": state.last_error,
    }


def _point(name: str, p: PointState) -> dict[str, Any]:
    return {
        "name": name,
        "value": p.value,
        "unit": p.unit,
        "quality": p.quality.value,
        "ts": iso(p.ts),
        "implausible": p.quality is Quality.BAD,
    }


def _counters(counters: Mapping[str, float]) -> dict[str, float]:
    """Whole numbers as integers (polls, implausible), the rest (latencies) rounded."""
    return {k: int(v) if float(v).is_integer() else round(v, 6) for k, v in counters.items()}


def reading_view(r: Reading) -> dict[str, Any]:
    """One value of a read on demand."""
    return {
        "name": r.name,
        "value": r.value,
        "unit": r.unit,
        "quality": r.quality.value,
        "implausible": r.quality is Quality.BAD,
    }


def read_view(read: DeviceRead, raw: bool) -> dict[str, Any]:
    """A read on demand; with ``raw``, the registers of each block beside its points."""
    out: dict[str, Any] = {
        "device": read.device,
        "bus": read.bus,
        "unit": read.unit,
        "ts": iso(read.ts),
        "points": [reading_view(r) for r in read.readings],
    }
    if raw:
        out["blocks"] = [
            {
                "table": b.table,
                "address": b.address,
                "count": b.count,
                "points": list(b.points),
                "registers": None if b.registers is None else list(b.registers),
                "hex": None if b.registers is None else [f"0x{r:04X}" for r in b.registers],
                "error": b.error or None,
            }
            for b in read.blocks
        ]
    return out


def scan_view(report: ScanReport) -> dict[str, Any]:
    """A scan: which unit ids answered, and the ranked profile guesses of each."""
    return {
        "bus": report.bus,
        "asked": len(report.asked),
        "wanted": report.wanted,
        "complete": report.complete,
        "last_unit": report.asked[-1] if report.asked else None,
        "seconds": round(report.seconds, 3),
        "timeout": report.timeout,
        "found": [
            {
                "unit": f.unit,
                "answer": f.answer,
                "profile": f.profile,
                "candidates": [
                    {
                        "profile": g.profile,
                        "score": g.score,
                        "matched": g.matched,
                        "checks": g.checks,
                        "unanswered": g.unanswered,
                    }
                    for g in f.guesses
                ],
            }
            for f in report.found
        ],
    }
