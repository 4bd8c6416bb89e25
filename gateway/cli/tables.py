"""The local API's device, read and scan documents as text for a terminal (pure).

Contract: each function takes the JSON document the API serves (``gateway.ops.device_view``)
and returns lines to print; times are shown in the local time zone. An implausible value (the
reading lies outside its point's physical range) is marked ``IMPLAUSIBLE``, and a hint says
what it usually means. ``duration`` says a number of seconds the way every verb prints it.
"""

from datetime import datetime
from typing import Any

HINT = (
    "IMPLAUSIBLE: outside the point's physical range; a wrong unit id or profile?"
    " Compare with 'cgw scan <bus> --units <unit>'"
)


def local_time(stamp: str | None) -> str:
    """An ISO 8601 UTC time as local ``YYYY-MM-DD HH:MM:SS``; ``-`` if unknown."""
    if stamp is None:
        return "-"
    return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float) -> str:
    """``45 s``, ``12 min 5 s``, ``2 h 30 min``, ``3 d 4 h``: the two largest units."""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min" + (f" {s % 60} s" if s % 60 else "")
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _columns(rows: list[list[str]], indent: str = "") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return [
        (
            indent + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) + "  " + r[-1]
        ).rstrip()
        for r in rows
    ]


def _value(p: dict[str, Any]) -> str:
    return "-" if p["value"] is None else str(p["value"])


def _points(points: list[dict[str, Any]], indent: str) -> list[str]:
    rows = [
        [p["name"], _value(p), p["unit"], p["quality"], "IMPLAUSIBLE" if p["implausible"] else ""]
        for p in points
    ]
    return _columns(rows, indent) if rows else []


def _state(d: dict[str, Any]) -> str:
    if d["online"] is None:
        return "not heard from yet"
    since = local_time(d["since"])
    if d["online"]:
        return f"online since {since}"
    return f"OFFLINE since {since}: {d['reason']}"


def devices(doc: dict[str, Any]) -> str:
    """``cgw devices``: each device, where it is and its state, then its points."""
    lines: list[str] = []
    marked = False
    for d in doc["devices"]:
        where = [d["kind"]]
        where += [f"bus {d['bus']}"] if d["bus"] else []
        where += [f"profile {d['profile']}"] if d["profile"] else []
        lines.append(f"{d['id']}  {', '.join(where)}: {_state(d)}")
        lines += _points(d["points"], "    ")
        lines += [f"    {name}: disabled ({why})" for name, why in d["disabled"].items()]
        marked = marked or any(p["implausible"] for p in d["points"])
    if not lines:
        return "no devices configured"
    return "\n".join(lines + ([HINT] if marked else []))


def read(doc: dict[str, Any]) -> str:
    """``cgw read``: the values of one read now, and with ``--raw`` each request's registers."""
    lines = [
        f"{doc['device']}: unit {doc['unit']} on bus {doc['bus']}, read {local_time(doc['ts'])}"
    ]
    lines += _points(doc["points"], "  ")
    blocks = doc.get("blocks")
    if blocks is not None:
        lines.append("requests, raw registers as received:")
        rows = []
        for b in blocks:
            span = str(b["address"]) + (
                f"-{b['address'] + b['count'] - 1}" if b["count"] > 1 else ""
            )
            got = (
                b["error"]
                if b["registers"] is None
                else " ".join(f"{r} ({h})" for r, h in zip(b["registers"], b["hex"], strict=True))
            )
            rows.append([f"{b['table']} {span}", got, ", ".join(b["points"])])
        lines += _columns(rows, "  ")
    if any(p["implausible"] for p in doc["points"]):
        lines.append(HINT)
    return "\n".join(lines)


def scan(doc: dict[str, Any]) -> str:
    """``cgw scan``: the unit ids that answered, each one's best guess and what else fits."""
    lines = [
        f"bus {doc['bus']}: {len(doc['found'])} of {doc['asked']} unit ids answer"
        f" ({doc['seconds']:.1f} s, {doc['timeout']:g} s a unit)"
    ]
    if doc["found"]:
        rows = [["UNIT", "ANSWER", "PROFILE", "CHECKS", "ALSO FITS"]]
        for f in doc["found"]:
            best = f["candidates"][0] if f["candidates"] else None
            checks = "-" if best is None else f"{best['matched']}/{best['checks']}"
            others = ", ".join(c["profile"] for c in f["candidates"][1:]) or "-"
            rows.append([str(f["unit"]), f["answer"], f["profile"], checks, others])
        lines += _columns(rows)
    else:
        lines.append("no unit id answers: check the wiring (A/B), baud rate and parity of the bus")
    if not doc["complete"]:
        lines.append(
            f"stopped at unit {doc['last_unit']} ({doc['asked']} of {doc['wanted']} asked):"
            " scan the rest with --units"
        )
    return "\n".join(lines)
