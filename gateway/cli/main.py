"""``cgw``: the daemon and the installer's tools.

Exit codes: 0 success, 1 runtime failure (systemd restarts), 2 invalid config or usage.
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import NoReturn

from gateway import __version__
from gateway.cli import alarms as cli_alarms
from gateway.cli import broker_acl as cli_broker_acl
from gateway.cli import commission as cli_commission
from gateway.cli import keys as cli_commands
from gateway.cli import notify as cli_notify
from gateway.cli import report as cli_report
from gateway.cli import status as cli_status
from gateway.cli import users as cli_users
from gateway.cli import welfare as cli_welfare
from gateway.cli.local_api import load
from gateway.config import Config, checks
from gateway.config.gpio import GpioDeviceConfig
from gateway.config.http_push import HttpPushDeviceConfig
from gateway.config.modbus import ModbusDeviceConfig
from gateway.core.errors import GatewayError

log = logging.getLogger("gateway")
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cgw", description="Smart-community edge gateway")
    parser.add_argument("--version", action="version", version=f"cgw {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the gateway daemon")
    run.add_argument("-c", "--config", type=Path, required=True, help="config file (YAML)")
    run.add_argument("--log-format", choices=["auto", "json", "text"], default="auto")
    check = sub.add_parser("check-config", help="validate a config file and summarise it")
    check.add_argument("config", type=Path)
    schema = sub.add_parser("schema", help="print the config JSON Schema, or a payload's")
    schema.add_argument(
        "name",
        nargs="?",
        default="config",
        help="config (default), or a payload: " + ", ".join(payload_schemas()),
    )
    demo = sub.add_parser("demo", help="simulated sensors -> gateway -> loopback broker, live")
    demo.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    demo.add_argument(
        "--port",
        type=int,
        default=None,
        help="use the broker on this loopback port (started there if none listens);"
        " default: start one on a free port",
    )
    cli_alarms.add_parser(sub)
    cli_report.add_parser(sub)
    cli_status.add_parser(sub)
    cli_notify.add_parser(sub)
    cli_commission.add_parser(sub)
    cli_commands.add_parser(sub)
    cli_broker_acl.add_parser(sub)
    cli_users.add_parser(sub)
    cli_welfare.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cgw`` console script."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # the reader went away (``cgw schema | head``): no traceback, and no second error when
        # the interpreter flushes stdout at exit (the recipe of Python's signal documentation)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "schema":
        return _schema(args.name)
    if args.command == "check-config":
        return _check(args.config)
    if args.command == "alarms":
        return cli_alarms.run(args)
    if args.command == "status":
        return cli_status.run(args)
    if args.command == cli_notify.COMMAND:
        return cli_notify.run(args)
    if args.command == cli_report.COMMAND:
        return cli_report.run(args)
    if args.command in cli_commission.COMMANDS:
        return cli_commission.run(args)
    if args.command == cli_broker_acl.COMMAND:
        return cli_broker_acl.run(args)
    if args.command == cli_users.COMMAND:
        return cli_users.run(args)
    if args.command == cli_welfare.COMMAND:
        return cli_welfare.run(args)
    if args.command in cli_commands.COMMANDS:
        return cli_commands.run(args)
    if args.command == "demo":
        from gateway.cli.demo import run_demo

        return run_demo(args.duration, args.port, main)
    return _run(args.config, args.log_format)


def payload_schemas() -> list[str]:
    """The names of the upstream payload schemas shipped in ``gateway/schemas/``."""
    folder = resources.files("gateway").joinpath("schemas")
    return sorted(
        f.name.removesuffix(".json") for f in folder.iterdir() if f.name.endswith(".json")
    )


def _schema(name: str) -> int:
    if name == "config":
        print(json.dumps(Config.model_json_schema(), indent=2, ensure_ascii=False))
        return 0
    if name.removesuffix(".json") not in payload_schemas():
        known = ", ".join(["config", *payload_schemas()])
        print(f"cgw schema: unknown schema {name!r} (known: {known})", file=sys.stderr)
        return EXIT_CONFIG
    file = resources.files("gateway").joinpath("schemas", name.removesuffix(".json") + ".json")
    print(file.read_text(encoding="utf-8"), end="")
    return 0


def _check(path: Path) -> int:
    cfg = load(path)
    if cfg is None:
        return EXIT_CONFIG
    mqtt = cfg.upstream.mqtt
    modbus = [d for d in cfg.devices if isinstance(d, ModbusDeviceConfig)]
    points = sum(len(d.active_points) for d in modbus)
    print(f"{path}: OK")
    for line in checks.warnings(cfg):
        print(f"  warning: {line}")
    print(f"  gateway   {cfg.gateway.site_id}/{cfg.gateway.gateway_id}")
    print(
        f"  store     {cfg.store.path} (quota {cfg.store.quota.human_readable()},"
        f" reserve {cfg.store.reserve.human_readable()})"
    )
    tls = (
        "TLS" + (" + client cert" if mqtt.tls and mqtt.tls.cert_file else "")
        if mqtt.tls
        else "plain"
    )
    print(
        f"  upstream  mqtt {mqtt.host}:{mqtt.effective_port} ({tls}),"
        f" topics {mqtt.topic_root}/{cfg.gateway.site_id}/{cfg.gateway.gateway_id}/..."
    )
    print(f"  buses     {len(cfg.buses)}: " + ", ".join(f"{b.id} ({b.kind})" for b in cfg.buses))
    print(f"  devices   {len(cfg.devices)}, points {points}")
    for d in cfg.devices:
        name = getattr(d, "profile", None)
        profile = f" profile {name}," if name else ""
        if isinstance(d, GpioDeviceConfig):
            print(f"    {d.id}: gpio, {len(d.inputs)} inputs, {len(d.outputs)} outputs")
        elif isinstance(d, ModbusDeviceConfig):
            print(
                f"    {d.id}: {d.kind} unit {d.unit_id} on {d.bus},{profile}"
                f" {len(d.active_points)} points every {d.interval:g} s"
            )
        elif isinstance(d, HttpPushDeviceConfig):
            carries = "door events" if d.door is not None else "readings"
            print(f"    {d.id}: http_push, {carries} posted to /push/{d.id}")
        else:  # buttons and door terminals listen on a topic; a kind added later may not
            topic = getattr(d, "topic", None)
            where = f" on local topic {topic}," if topic else ""
            print(f"    {d.id}: {d.kind}{where}{profile}")
    rules = cfg.alarms.rules
    print(
        f"  alarms    {len(rules)} rules, ladders: "
        + ", ".join(f"{ld.id} ({len(ld.tiers)} steps)" for ld in cfg.alarms.ladders)
    )
    return 0


def _run(path: Path, log_format: str) -> int:
    from gateway.ops.logs import setup

    cfg = load(path)
    if cfg is None:
        return EXIT_CONFIG
    setup(cfg.log_level, None if log_format == "auto" else log_format == "json")
    try:
        with asyncio.Runner() as runner:
            left = runner.run(_daemon(cfg, path))
            if left:
                _exit_leaving(left)
    except GatewayError as exc:
        log.critical("gateway stopped: %s", exc)
        return EXIT_FAILURE
    except ExceptionGroup as group:
        said = set()  # a failed store fails each component that writes: say it once
        for leaf in _leaves(group):
            if str(leaf) not in said:
                said.add(str(leaf))
                log.critical(
                    "gateway stopped: %s", leaf, exc_info=not isinstance(leaf, GatewayError)
                )
        return EXIT_FAILURE
    return 0


def _exit_leaving(names: list[str]) -> NoReturn:
    """Exit now, without the event loop's final cancel-and-wait of every task: the tasks of
    ``names`` ignored their cancel once already, and waiting for them again would hang the
    stop that their deadline just saved. The store is closed; logs are flushed first."""
    log.error("exiting without waiting for %s", ", ".join(names))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_FAILURE)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


async def _daemon(cfg: Config, path: Path) -> list[str]:
    """Run the gateway until SIGTERM or SIGINT; the components it had to leave running."""
    from gateway.runtime.root import Runtime
    from gateway.transport.listener import fd_budget

    fd_budget()  # the soft descriptor limit up to the hard one, before anything opens files
    stop = asyncio.Event()
    runtime = Runtime(cfg, config_path=path)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, runtime.request_reload)
    await runtime.run(stop)
    return runtime.abandoned
