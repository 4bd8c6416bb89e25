"""``cgw welfare list|answer|away|back|pseudonym``: welfare checks through the local API.

``list``, ``answer``, ``away`` and ``back`` talk to the daemon on this machine (the config's
``api`` section; ``gateway.ops.welfare_api`` has the HTTP contract). ``away`` reads its times
as the community's local time (``alarms.timezone``) unless they carry an offset; a date alone
is its midnight. ``pseudonym`` needs no daemon: it reads one resident id from standard input
(never from the command line, where the shell history and ``ps`` would keep it) and prints the
pseudonym the gateway makes of it with the config's privacy key, for a household's ``person``.

Exit codes: 0 done; 1 the gateway could not be reached or refused the request; 2 a config or
usage error.
"""

import argparse
import sys
from datetime import datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from gateway.cli.local_api import Failed, call, config_option, load, person, token
from gateway.cli.tables import duration, local_time
from gateway.config import Config
from gateway.core.errors import ConfigError
from gateway.pipeline.privacy import Pseudonymiser

COMMAND = "welfare"
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``welfare`` and its actions to ``cgw``'s subcommands."""
    common = config_option()
    welfare = sub.add_parser(COMMAND, help="welfare checks: households, answers, absences")
    actions = welfare.add_subparsers(dest="welfare_command", required=True)
    actions.add_parser("list", parents=[common], help="the watched households and their state")
    answer = actions.add_parser(
        "answer", parents=[common], help="someone checked on a household: clear its check"
    )
    answer.add_argument("household", help="household id, as shown by 'cgw welfare list'")
    answer.add_argument("--by", required=True, type=person, help="who checked (recorded)")
    answer.add_argument("--note", required=True, help="what they found: visited, away...")
    away = actions.add_parser("away", parents=[common], help="enter a planned absence")
    away.add_argument("household", help="household id")
    away.add_argument("--from", dest="start", required=True, help="local time or date")
    away.add_argument("--until", required=True, help="local time or date")
    away.add_argument("--by", required=True, type=person, help="who entered it (recorded)")
    away.add_argument("--note", required=True, help="e.g. 'visiting family'")
    back = actions.add_parser("back", parents=[common], help="cancel a planned absence")
    back.add_argument("absence", type=int, help="absence id, as shown by 'cgw welfare list'")
    back.add_argument("--by", required=True, type=person, help="who cancelled it (recorded)")
    actions.add_parser(
        "pseudonym", parents=[common], help="print the pseudonym of a resident id read from stdin"
    )


def run(args: argparse.Namespace) -> int:
    """Carry out ``cgw welfare ...``; returns the exit code."""
    cfg = load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    if args.welfare_command == "pseudonym":
        return _pseudonym(cfg)
    secret = token(args.config, cfg)
    if cfg.api is None or secret is None:
        return EXIT_CONFIG
    try:
        if args.welfare_command == "list":
            _print(call(cfg.api, secret, "GET", "/v1/welfare")["households"])
            return 0
        if args.welfare_command == "answer":
            path = f"/v1/welfare/{quote(args.household, safe='')}/answer"
            out = call(cfg.api, secret, "POST", path, {"by": args.by, "note": args.note})
            was = "its welfare check cleared" if out["was_open"] else "no check was open"
            print(f"{args.household}: answered by {args.by}; {was}; the window restarts")
            return 0
        if args.welfare_command == "away":
            zone = ZoneInfo(cfg.alarms.timezone)
            try:
                body = {"by": args.by, "note": args.note, "from": _when(args.start, zone),
                        "until": _when(args.until, zone)}  # fmt: skip
            except ValueError as exc:
                print(exc, file=sys.stderr)
                return EXIT_CONFIG
            path = f"/v1/welfare/{quote(args.household, safe='')}/absences"
            out = call(cfg.api, secret, "POST", path, body)
            print(f"{args.household}: away from {body['from']} until {body['until']}"
                  f" (absence {out['id']})")  # fmt: skip
            return 0
        out = call(cfg.api, secret, "POST", f"/v1/welfare/absences/{args.absence}/cancel",
                   {"by": args.by})  # fmt: skip
        print(f"{out['household']}: absence {out['id']} cancelled; the window restarts")
        return 0
    except Failed as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILURE


def _when(text: str, zone: ZoneInfo) -> str:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r}: a date (2026-12-20) or a time (2026-12-20T18:00)") from None
    return (when if when.tzinfo else when.replace(tzinfo=zone)).isoformat()


def _pseudonym(cfg: Config) -> int:
    if cfg.privacy is None:
        print("the config has no 'privacy' section: there is no key to make pseudonyms with",
              file=sys.stderr)  # fmt: skip
        return EXIT_CONFIG
    try:
        names = Pseudonymiser.from_files(
            cfg.gateway.site_id, cfg.privacy.key_file, cfg.privacy.previous_key_file
        )
    except ConfigError as exc:
        print("\n".join(exc.errors), file=sys.stderr)
        return EXIT_CONFIG
    raw = sys.stdin.readline().strip()
    if not raw:
        print("give the resident id on standard input, e.g.: cgw welfare pseudonym < id.txt",
              file=sys.stderr)  # fmt: skip
        return EXIT_CONFIG
    print(names.pseudonym(raw))
    return 0


def _print(households: list[dict[str, Any]]) -> None:
    if not households:
        print("no households watched")
        return
    rows = [("HOUSEHOLD", "STATE", "QUIET", "LIMIT", "LAST SIGN", "ABSENCES")]
    for h in households:
        last = h["last_sign"]
        seen = "-" if last is None else f"{last['kind']} {last['source']} {local_time(last['at'])}"
        away = ", ".join(
            f"#{a['id']} {local_time(a['from'])} - {local_time(a['until'])}" for a in h["absences"]
        )
        rows.append((h["household"], h["state"], duration(h["quiet_s"]),
                     duration(h["limit_s"]), seen, away or "-"))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
