"""``cgw alarms list|ack|reset``: the gateway's open alarms through its local API.

Works with the uplink down: it talks only to the daemon on this machine, at the address and
with the token of the config's ``api`` section (``gateway.ops.api`` has the HTTP contract).

Exit codes: 0 done; 1 the gateway could not be reached or refused the request (the message
says why); 2 a config or usage error (no ``api`` section, unreadable token file, bad args).
"""

import argparse
import http.client
import json
import sys
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gateway.config import load_config
from gateway.config.api import ApiConfig, local_url
from gateway.core.errors import ConfigError

DEFAULT_CONFIG = Path("/etc/cgw/gateway.yaml")
TIMEOUT = 5.0  # seconds per request
EXIT_FAILURE = 1
EXIT_CONFIG = 2


class _Failed(Exception):
    """The request did not succeed; the message says why, for the operator."""


def _name(text: str) -> str:
    if not 1 <= len(text.strip()) <= 64 or not text.isprintable():
        raise argparse.ArgumentTypeError("a name of 1 to 64 printable characters")
    return text.strip()


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``alarms`` and its actions to ``cgw``'s subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c", "--config", type=Path, default=DEFAULT_CONFIG, help=f"default {DEFAULT_CONFIG}"
    )
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
        p.add_argument("--by", required=True, type=_name, help="who does it (recorded)")


def run(args: argparse.Namespace) -> int:
    """Carry out ``cgw alarms ...``; returns the exit code."""
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"{args.config}: {len(exc.errors)} error(s) in the configuration:", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return EXIT_CONFIG
    if cfg.api is None:
        print(
            f"{args.config} has no 'api' section, so the gateway runs no local alarm API."
            " Enable it with:\n  api:\n    token_file: <file holding the token, mode 0600>",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        token = cfg.api.read_token()
    except ConfigError as exc:
        print("\n".join(exc.errors), file=sys.stderr)
        return EXIT_CONFIG
    try:
        if args.alarms_command == "list":
            _print_table(_call(cfg.api, token, "GET", "/v1/alarms"))
            return 0
        if args.alarms_command == "report":
            _print_report(_call(cfg.api, token, "GET", f"/v1/report?days={args.days:g}"))
            return 0
        path = f"/v1/alarms/{quote(args.id, safe='')}/{args.alarms_command}"
        answer = _call(cfg.api, token, "POST", path, {"by": args.by})
    except _Failed as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILURE
    print(_outcome(args.alarms_command, args.by, answer))
    return 0


def base_url(api: ApiConfig) -> str:
    """Where the API of ``api`` answers on this machine."""
    return local_url(api.host, api.port)


def _call(
    api: ApiConfig, token: str, method: str, path: str, body: dict[str, str] | None = None
) -> Any:
    url = base_url(api) + path
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    # no proxies, whatever http_proxy says: the token must not leave this machine
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=TIMEOUT) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        with exc:
            reason = _error_text(exc.read()) or exc.reason
        raise _Failed(f"the gateway refused: {reason} (HTTP {exc.code})") from None
    except urllib.error.URLError as exc:
        raise _Failed(
            f"cannot reach the gateway's local API at {url}: {exc.reason} (is the gateway running?)"
        ) from None
    except (OSError, http.client.HTTPException, ValueError) as exc:  # timeout, reset, bad JSON
        raise _Failed(f"no valid answer from the gateway's local API at {url}: {exc}") from None


def _error_text(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return ""
    return str(data.get("error", "")) if isinstance(data, dict) else ""


def _local(stamp: str | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S")


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
                _local(a["raised_at"]),
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
    print(f"alarms raised in the last {report['days']:g} days, time to acknowledge (seconds):")
    print(f"  {'':10} {'alarms':>7} {'acked':>6} {'open':>5} {'median':>8} {'p90':>8} {'worst':>8}")
    for key in ("all", "critical", "warning", "info"):
        f = report[key]

        def num(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"

        print(
            f"  {key:10} {f['alarms']:>7} {f['acknowledged']:>6} {f['unacknowledged_open']:>5}"
            f" {num(f['time_to_ack_p50_s']):>8} {num(f['time_to_ack_p90_s']):>8}"
            f" {num(f['time_to_ack_max_s']):>8}"
        )
