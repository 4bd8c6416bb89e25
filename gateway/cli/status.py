"""``cgw status``: a running gateway in a few lines, from its monitor's ``/health``.

Shows the overall state, which required components fail and why, devices online/offline,
the backlog per sink, open alarms, the uplink, each local 4G modem,
whether the clock is synced, input devices not running and contacts no rule names.
``--json`` prints the health document.

Exit codes: 0 the gateway is healthy; 1 it is degraded, starting or cannot be reached (the
output says which); 2 a config or usage error (no ``monitor`` section).
"""

import argparse
import http.client
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from gateway.cli.local_api import DEFAULT_CONFIG
from gateway.cli.tables import duration
from gateway.config import load_config
from gateway.core.errors import ConfigError

TIMEOUT = 5.0
EXIT_UNHEALTHY = 1
EXIT_CONFIG = 2


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register ``cgw status``."""
    status = sub.add_parser("status", help="summarise the running gateway (monitor endpoint)")
    status.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, help="config file")
    status.add_argument("--json", action="store_true", help="print the health document")


def run(args: argparse.Namespace) -> int:
    """Carry out ``cgw status``; returns the exit code."""
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"{args.config}: {len(exc.errors)} error(s) in the configuration:", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return EXIT_CONFIG
    if cfg.monitor is None:
        print(
            f"{args.config} has no 'monitor' section, so the gateway serves no health"
            " endpoint. Enable it with:\n  monitor: {}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    url = cfg.monitor.url + "/health"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT) as response:
            doc = json.load(response)
    except urllib.error.HTTPError as exc:  # 503: degraded or starting, with the document
        with exc:
            try:
                doc = json.loads(exc.read())
            except ValueError:
                print(f"the gateway answered HTTP {exc.code} at {url}", file=sys.stderr)
                return EXIT_UNHEALTHY
    except urllib.error.URLError as exc:
        print(
            f"cannot reach the gateway at {url}: {exc.reason} (is it running?"
            " systemctl status cgw)",
            file=sys.stderr,
        )
        return EXIT_UNHEALTHY
    except (OSError, http.client.HTTPException, ValueError) as exc:
        print(f"no valid answer from the gateway at {url}: {exc}", file=sys.stderr)
        return EXIT_UNHEALTHY
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print(summary(doc))
    return 0 if doc.get("status") == "ok" else EXIT_UNHEALTHY


def _modem_line(port: str, m: dict[str, Any]) -> str:
    """One modem: whether it can send, network, signal, SIM, last send."""
    state = "ok" if m.get("state") == "ok" else f"CANNOT SEND: {m.get('state')}"
    net = f"registered ({m.get('operator') or '?'})" if m.get("registered") else "not registered"
    csq = m.get("csq")
    signal = f"signal {csq}/31" if csq is not None else "signal unknown"
    last = m.get("last_send")
    sent = "never" if last is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(last))
    return (
        f"modem {port}: {state}; {net}, {signal}, SIM {m.get('sim', '?')}, last send {sent}"
        f" ({', '.join(m.get('channels', []))})"
    )


def summary(doc: dict[str, Any]) -> str:
    """The health document as a few lines for a terminal."""
    gw = doc.get("gateway", {})
    lines = [
        f"gateway {gw.get('site_id')}/{gw.get('gateway_id')} {gw.get('version')}:"
        f" {doc.get('status', '?').upper()}, up {duration(gw.get('uptime_s', 0))}"
    ]
    for name, comp in doc.get("components", {}).items():
        mark = "ok  " if comp.get("ok") else "FAIL"
        lines.append(f"  {mark} {name:<22} {comp.get('detail', '')}")
    devices = doc.get("devices", {})
    if devices:
        down = sorted(d for d, state in devices.items() if state != "online")
        line = f"devices: {len(devices) - len(down)}/{len(devices)} online"
        lines.append(line + (f"; not online: {', '.join(down)}" if down else ""))
    inputs = doc.get("inputs", {})
    if inputs:
        down = sorted(i for i, v in inputs.items() if v.get("state") != "running")
        line = f"inputs: {len(inputs) - len(down)}/{len(inputs)} running"
        lines.append(line + "".join(f"; {i} {inputs[i].get('state')}" for i in down))
    unmatched = doc.get("unmatched", {})
    if unmatched:
        lines.append(
            "contacts no rule names (no alarm): "
            + ", ".join(f"{d} {n}" for d, n in sorted(unmatched.items()))
        )
    for device, points in sorted(doc.get("disabled", {}).items()):
        lines.append(f"  {device}: points disabled (refused by the device): {', '.join(points)}")
    backlog = doc.get("backlog", {})
    if backlog:
        lines.append("backlog: " + ", ".join(f"{s} {n} rows" for s, n in backlog.items()))
    dead = doc.get("dead_lettered", {})
    if dead:
        lines.append(
            "dead-lettered (refused upstream): "
            + ", ".join(f"{s} {lane} {n}" for s, lanes in dead.items() for lane, n in lanes.items())
        )
    alarms = doc.get("alarms", {})
    text = f"alarms: {alarms.get('open', 0)} open, {alarms.get('unacknowledged', 0)} unacknowledged"
    if alarms.get("worst"):
        text += f" (worst: {alarms['worst']})"
    lines.append(text)
    lines.append(f"uplink: {doc.get('uplink', '?')}")
    for port, m in doc.get("modems", {}).items():
        lines.append(_modem_line(port, m))
    synced = doc.get("clock_synced")
    if synced is not None:
        lines.append(
            "clock: synced" if synced else "clock: NOT synced (platform commands are refused)"
        )
    return "\n".join(lines)
