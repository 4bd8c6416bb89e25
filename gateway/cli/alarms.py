"""``cgw alarms list|ack|reset``: the gateway's open alarms through its local API.

Works with the uplink down: it talks only to the daemon on this machine, at the address and
with the token of the config's ``api`` section (``gateway.cli.local_api``; ``gateway.ops.api``
has the HTTP contract).

Exit codes: 0 done; 1 the gateway could not be reached or refused the request (the message
says why); 2 a config or usage error (no ``api`` section, unreadable token file, bad args).
"""

import argparse
import sys
from typing import Any
from urllib.parse import quote

from gateway.cli.local_api import Failed, call, config_option, load, person, token
from gateway.cli.tables import local_time

EXIT_FAILURE = 1
EXIT_CONFIG = 2


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``alarms`` and its actions to ``cgw``'s subcommands."""
    common = config_option()
    alarms = sub.add_parser("alarms", help="list, acknowledge or reset open alarms (local API)")
    actions = alarms.add_subparsers(dest="alarms_command", required=True)
    actions.add_parser("list", parents=[common], help="show the open alarms")
    report = actions.add_parser(
        "report", parents=[common], help="time to acknowledge: median, 90th percentile, worst"
    )
    report.add_argument("--days", type=float, default=30.0, help="over the last N days")
    for action, text in (
        ("ack", "acknowledge an alarm: escalation and the siren stop"),
        ("reset", "reset a latched alarm whose input is back to normal (acknowledges it too)"),
    ):
        p = actions.add_parser(action, parents=[common], help=text)
        p.add_argument("id", help="alarm id, as shown by 'cgw alarms list'")
        p.add_argument("--by", required=True, type=person, help="who does it (recorded)")


def run(args: argparse.Namespace) -> int:
    """Carry out ``cgw alarms ...``; returns the exit code."""
    cfg = load(args.config)
    secret = None if cfg is None else token(args.config, cfg)
    if cfg is None or cfg.api is None or secret is None:
        return EXIT_CONFIG
    try:
        if args.alarms_command == "list":
            _print_table(call(cfg.api, secret, "GET", "/v1/alarms"))
            return 0
        if args.alarms_command == "report":
            _print_report(call(cfg.api, secret, "GET", f"/v1/report?days={args.days:g}"))
            return 0
        path = f"/v1/alarms/{quote(args.id, safe='')}/{args.alarms_command}"
        answer = call(cfg.api, secret, "POST", path, {"by": args.by})
    except Failed as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILURE
    print(_outcome(args.alarms_command, args.by, answer))
    return 0


def input_of(alarm: dict[str, Any]) -> str:
    """The input or point an alarm is about, as the API shows it ("-" for a whole device)."""
    return str(alarm.get("input") or "-")


def _print_table(alarms: list[dict[str, Any]]) -> None:
    if not alarms:
        print("no open alarms")
        return
    header = ("ID", "STATE", "SEVERITY", "DEVICE", "INPUT", "NOW", "RAISED", "ACKED BY", "MESSAGE")
    rows = [header]
    for a in alarms:
        acked = "-"
        if a["acked_by"]:
            took = a["time_to_ack_s"]
            acked = a["acked_by"] + ("" if took is None else f" after {took:.0f} s")
        rows.append(
            (
                a["id"],
                a["state"],
                a["severity"],
                a["device"],
                input_of(a),
                "active" if a["active"] else "normal",
                local_time(a["raised_at"]),
                acked,
                a["message"],
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header) - 1)]
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=False)) + "  " + r[-1])
    print(f"{len(alarms)} open alarm{'s' if len(alarms) != 1 else ''}")


def _outcome(action: str, by: str, answer: dict[str, Any]) -> str:
    alarm = answer["alarm"]
    if action == "reset":
        return f"alarm {alarm['id']} reset by {by}: {alarm['state']}"
    if not answer["changed"]:
        return f"alarm {alarm['id']} was already {alarm['state']} by {alarm['acked_by']}"
    after = alarm["time_to_ack_s"]
    took = "" if after is None else f", {after:.1f} s after it was raised"
    return f"alarm {alarm['id']} acknowledged by {by}{took}"


def _print_report(report: dict[str, Any]) -> None:
    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    def share(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    print(f"alarms raised in the last {report['days']:g} days, time to acknowledge (seconds):")
    print(
        f"  {'':10} {'alarms':>7} {'acked':>6} {'open':>5} {'median':>8} {'p90':>8} {'worst':>8}"
        f" {'target':>7} {'in time':>8} {'share':>7} {'ran out':>8}"
    )
    for key in ("all", "critical", "warning", "info"):
        f = report[key]
        print(
            f"  {key:10} {f['alarms']:>7} {f['acknowledged']:>6} {f['unacknowledged_open']:>5}"
            f" {num(f['time_to_ack_p50_s']):>8} {num(f['time_to_ack_p90_s']):>8}"
            f" {num(f['time_to_ack_max_s']):>8} {num(f['target_s']):>7}"
            f" {f['within_target']:>8} {share(f['within_target_share']):>7}"
            f" {f['escalation_exhausted']:>8}"
        )
    late = report["late"]
    if not late:
        return
    more = report["late_total"] - len(late)
    print(f"not acknowledged within the target ({report['late_total']}):")
    rows = [("ID", "SEVERITY", "DEVICE", "RAISED", "TOOK", "ACKED BY")]
    for a in late:
        took = a["time_to_ack_s"]
        rows.append(
            (
                a["id"],
                a["severity"],
                a["device"],
                local_time(a["raised_at"]),
                "never" if took is None else f"{took:.0f} s",
                a["acked_by"] or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    if more:
        print(f"  ... and {more} more")
