"""``cgw report availability``: proof of service per device, from the gateway's own history.

Contract:
- Through the local API while the daemon runs (``GET /v1/reports/availability``): the daemon
  first writes what its recorder holds, so the report reads up to the last second, and the
  store file keeps one user.
- When nothing listens there (the daemon is stopped), or the config has no ``api`` section,
  the store file is read directly and read-only (``gateway.reports.service.from_file``): a
  stopped gateway is when the figures are most wanted, and a report never writes to the file.
  A line on stderr says which source was read.
- Output: a table per period (default), ``--csv`` (a row per period and device, kind,
  supplier and all: ``gateway.reports.export``, the field console's download too) or
  ``--json`` (the API's document). Times are the community's (``alarms.timezone``).
- Exit codes: 0 done; 1 the gateway refused, or the store file cannot be read; 2 a config or
  usage error.
"""

import argparse
import json
import sys
import time
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from gateway.cli.local_api import Failed, NotRunning, call, config_option, load, token
from gateway.cli.tables import duration
from gateway.core.errors import StoreError
from gateway.reports.availability import BY, check_range
from gateway.reports.export import as_csv
from gateway.reports.service import from_file

COMMAND = "report"
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a date, YYYY-MM-DD") from None


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``report`` and its reports to ``cgw``'s subcommands."""
    common = config_option()
    report = sub.add_parser("report", help="proof of service: availability per device")
    reports = report.add_subparsers(dest="report_command", required=True)
    p = reports.add_parser(
        "availability",
        parents=[common],
        help="uptime, outages, downtime and completeness per device, kind and supplier",
    )
    p.add_argument("--from", dest="first", type=_day, required=True, metavar="YYYY-MM-DD")
    p.add_argument("--to", dest="last", type=_day, required=True, metavar="YYYY-MM-DD")
    p.add_argument("--by", choices=BY, help="a period per local day or month (default: one)")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--csv", action="store_true", help="CSV: a row per period and device")
    form.add_argument("--json", action="store_true", help="the JSON document of the local API")


def run(args: argparse.Namespace) -> int:
    """Carry out ``cgw report availability``; returns the exit code."""
    why = check_range(args.first, args.last)
    if why is not None:
        print(f"cgw report: {why}", file=sys.stderr)
        return EXIT_CONFIG
    cfg = load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    doc: dict[str, Any] | None = None
    try:
        if cfg.api is not None:
            secret = token(args.config, cfg)
            if secret is None:
                return EXIT_CONFIG
            query = {"from": args.first, "to": args.last} | ({"by": args.by} if args.by else {})
            try:
                doc = call(cfg.api, secret, "GET", f"/v1/reports/availability?{urlencode(query)}")
                print("read from the running gateway", file=sys.stderr)
            except NotRunning:
                pass
        if doc is None:
            print(f"the gateway is not running: read from {cfg.store.path}", file=sys.stderr)
            zone = cfg.alarms.timezone
            doc = from_file(cfg.store.path, zone, args.first, args.last, args.by, time.time())
    except (Failed, StoreError) as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    elif args.csv:
        print(as_csv(doc), end="")
    else:
        print(as_text(doc))
    return 0


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}%"


def _figures(f: dict[str, Any]) -> list[str]:
    if not f["counted_s"]:  # nothing known of it in the period
        return ["-", "-", "-", "-", "-", _pct(f["completeness_pct"])]
    return [
        _pct(f["uptime_pct"]),
        str(f["outages"]),
        duration(f["longest_outage_s"]),
        duration(f["downtime_s"]),
        duration(f["gateway_downtime_s"]),
        _pct(f["completeness_pct"]),
    ]


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]


def as_text(doc: dict[str, Any]) -> str:
    """Each period's devices, then its kinds, suppliers and all; then the gateway's restarts."""
    zone = ZoneInfo(doc["timezone"])

    def local(stamp: str) -> str:
        return datetime.fromisoformat(stamp).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")

    by = f", by {doc['by']}" if doc["by"] else ""
    lines = [f"availability {doc['from']} to {doc['to']} ({doc['timezone']}){by}"]
    head = ["UPTIME", "OUTAGES", "LONGEST", "DOWNTIME", "GATEWAY", "COMPLETE"]
    for p in doc["periods"]:
        lines += ["", f"{p['period']}: {local(p['from'])} to {local(p['to'])}"]
        devices = [["DEVICE", "KIND", "SUPPLIER", *head]]
        for d in p["devices"]:
            devices.append([d["device"], d["kind"] or "-", d["supplier"] or "-", *_figures(d)])
        groups = [["GROUP", "DEVICES", *head]]
        for key in ("kind", "supplier"):
            for g in p[f"by_{key}"]:
                groups.append([f"{key} {g[key] or '-'}", str(g["devices"]), *_figures(g)])
        groups.append(["all", str(p["all"]["devices"]), *_figures(p["all"])])
        lines += [*_columns(devices), "", *_columns(groups)]
    if doc["restarts"]:
        lines += ["", "the gateway's own outages (counted as every device's):"]
        for r in doc["restarts"]:
            how = "stopped" if r["clean"] else "not stopped cleanly"
            lines.append(
                f"  {local(r['from'])} to {local(r['to'])}: {duration(r['seconds'])}, {how}"
            )
    return "\n".join(lines)
