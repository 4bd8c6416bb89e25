"""``cgw scan``, ``cgw read`` and ``cgw devices``: what is on a bus, and what each device reads.

Each verb asks the running gateway through its local API (``gateway.ops.device_api``), so a
scan or read takes turns with the daemon's polling on the bus. When nothing listens at the
API's address (the gateway is not running), or the config has no ``api`` section, ``scan`` and
``read`` open the bus themselves from the config (standalone) and say so in one line on
stderr; ``devices`` shows live state only, so it says the gateway is not running. ``--json``
prints the API's document instead of the table.

Exit codes: 0 done; 1 the gateway or the bus could not be reached, or refused; 2 a config or
usage error (unknown bus or device, bad unit ids, unreadable token).
"""

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from gateway.cli import tables
from gateway.cli.local_api import (
    Failed,
    NotRunning,
    call,
    config_option,
    load,
    no_api,
    person,
    token,
)
from gateway.config import Config
from gateway.core.commission import (
    ALL_UNITS,
    MAX_SCAN_TIMEOUT,
    SCAN_TIMEOUT,
    NotFound,
    NotReadable,
    parse_units,
)
from gateway.core.errors import TransientError
from gateway.ops.device_api import SCAN_LIMIT
from gateway.ops.device_view import read_view, scan_view

COMMANDS = ("scan", "read", "devices")
EXIT_FAILURE = 1
EXIT_CONFIG = 2
READ_TIMEOUT = 30.0  # seconds a read may take through the API (a dead device's blocks time out)


def _units(text: str) -> str:
    try:
        parse_units(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _wait(text: str) -> float:
    seconds = float(text)
    if not 0.01 <= seconds <= MAX_SCAN_TIMEOUT:
        raise argparse.ArgumentTypeError(f"0.01 to {MAX_SCAN_TIMEOUT:g} seconds")
    return seconds


def _who() -> str:
    try:
        return f"{getpass.getuser()} (cgw)"[:64]
    except (KeyError, OSError):  # no login name and no passwd entry (a bare container)
        return "cgw"


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register ``scan``, ``read`` and ``devices``."""
    common = config_option()
    common.add_argument("--json", action="store_true", help="print the JSON document")
    scan = sub.add_parser(
        "scan", parents=[common], help="which unit ids answer on a bus, and what each may be"
    )
    scan.add_argument("bus", help="bus id from the config")
    scan.add_argument("--units", type=_units, default=ALL_UNITS, help="e.g. 1-247 or 1-5,9")
    scan.add_argument("--timeout", type=_wait, default=SCAN_TIMEOUT,
                      help=f"seconds a unit has to answer (default {SCAN_TIMEOUT:g})")  # fmt: skip
    read = sub.add_parser("read", parents=[common], help="read a device now, values checked")
    read.add_argument("device", help="device id from the config")
    read.add_argument("--raw", action="store_true", help="show the registers of each request")
    for verb in (scan, read):
        verb.add_argument("--by", type=person, default=_who(),
                          help="who asks, for the gateway's log (default: login name)")  # fmt: skip
    sub.add_parser("devices", parents=[common], help="what every device reads now")


def run(args: argparse.Namespace) -> int:
    """Carry out ``cgw scan|read|devices``; returns the exit code."""
    cfg = load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    secret = None
    if cfg.api is not None:
        secret = token(args.config, cfg)
        if secret is None:
            return EXIT_CONFIG
    if args.command == "devices":
        if cfg.api is None or secret is None:
            no_api(args.config)
            return EXIT_CONFIG
        try:
            doc = call(cfg.api, secret, "GET", "/v1/devices")
        except NotRunning as exc:
            print(f"the gateway is not running: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        except Failed as exc:
            return _failed(exc)
        return _show(args, doc, tables.devices)
    table, path, body, limit = _request(args)
    if cfg.api is not None and secret is not None:
        try:
            return _show(args, call(cfg.api, secret, "POST", path, body, limit), table)
        except NotRunning:
            why = f"the gateway's local API does not answer at {cfg.api.host}:{cfg.api.port}"
        except Failed as exc:
            return _failed(exc)
    else:
        why = "the config has no 'api' section (stop the gateway first if it runs)"
    target = f"bus {args.bus}" if args.command == "scan" else f"the bus of {args.device}"
    print(f"standalone: {why}; opening {target} myself", file=sys.stderr)
    return _standalone(args, cfg, table)


def _failed(exc: Failed) -> int:
    print(exc, file=sys.stderr)
    return EXIT_CONFIG if exc.status in (400, 404) else EXIT_FAILURE


def _request(
    args: argparse.Namespace,
) -> tuple[Callable[[dict[str, Any]], str], str, dict[str, Any], float]:
    """The table, API path, body and time limit of a ``scan`` or ``read``."""
    if args.command == "scan":
        body = {"units": args.units, "timeout": args.timeout, "by": args.by}
        return tables.scan, f"/v1/buses/{quote(args.bus, safe='')}/scan", body, SCAN_LIMIT + 10
    body = {"raw": args.raw, "by": args.by}
    return tables.read, f"/v1/devices/{quote(args.device, safe='')}/read", body, READ_TIMEOUT


def _standalone(
    args: argparse.Namespace, cfg: Config, table: Callable[[dict[str, Any]], str]
) -> int:
    from gateway.runtime.commission import ModbusCommissioner  # opens buses: pymodbus

    desk = ModbusCommissioner(lambda: cfg, args.config.resolve().parent)
    try:
        if args.command == "scan":
            units = parse_units(args.units)
            report = asyncio.run(desk.scan(args.bus, units, args.timeout, float("inf")))
            doc = scan_view(report)
        else:
            doc = read_view(asyncio.run(desk.read(args.device)), args.raw)
    except (NotFound, NotReadable) as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except TransientError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILURE
    return _show(args, doc, table)


def _show(
    args: argparse.Namespace, doc: dict[str, Any], table: Callable[[dict[str, Any]], str]
) -> int:
    print(json.dumps(doc, indent=2, ensure_ascii=False) if args.json else table(doc))
    return 0
