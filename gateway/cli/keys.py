"""``cgw keygen`` and ``cgw sign``: the platform's command keys, and signed commands by hand.

``cgw keygen --out DIR [--name platform]`` writes ``<name>.key`` (the private key, PEM, mode
0600: it stays with the platform) and ``<name>.pub`` (the public key, PEM: it goes to every
gateway), and prints the key id on stdout.

``cgw sign --key FILE --site S --gateway G --name unlock --arg door=gate-1 --arg seconds=5``
prints two lines on stdout: the topic to publish on, then the signed command (a JWS in compact
serialisation). Argument values are typed by the command's schema (``seconds`` is an integer).
For commissioning and tests; the platform signs in its own code with any JOSE library
(docs/commands.md, "Signing on the platform").

Exit codes: 0 done; 2 a usage error or bad input (unreadable key, unknown command, arguments
the schema refuses, an existing key file); the message on stderr says which.
"""

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from gateway.commands.model import ARGS, DEFAULT_MAX_LIFETIME, NAMES, CommandName, command_topic
from gateway.core.errors import ConfigError

COMMANDS = ("keygen", "sign")  # the subcommands this module adds to ``cgw``
EXIT_USAGE = 2
MAX_TTL = 86_400  # seconds; the gateway itself accepts at most its max_lifetime (default 60)


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``keygen`` and ``sign`` to ``cgw``'s subcommands."""
    gen = sub.add_parser("keygen", help="make a command-signing key pair (for the platform)")
    gen.add_argument("--out", type=Path, required=True, help="folder for the two key files")
    gen.add_argument(
        "--name",
        dest="key_name",
        default="platform",
        help="file name stem: <name>.key and <name>.pub (default platform)",
    )
    sig = sub.add_parser("sign", help="sign a command and print it with its topic")
    sig.add_argument("--key", type=Path, required=True, help="private key file (PEM, mode 0600)")
    sig.add_argument("--site", required=True, help="target site id")
    sig.add_argument("--gateway", required=True, help="target gateway id")
    sig.add_argument("--name", dest="cmd_name", required=True, choices=NAMES, help="command")
    sig.add_argument(
        "--arg",
        dest="cmd_args",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a command argument; repeat for each (e.g. --arg door=gate-1 --arg seconds=5)",
    )
    sig.add_argument(
        "--ttl",
        type=int,
        default=DEFAULT_MAX_LIFETIME,
        help=f"seconds the command stays valid (default {DEFAULT_MAX_LIFETIME})",
    )
    sig.add_argument("--id", dest="cmd_id", default=None, help="command id (default a new UUID)")
    sig.add_argument("--root", default="cgw", help="topic root (default cgw)")


def run(args: argparse.Namespace) -> int:
    """Carry out ``cgw keygen`` or ``cgw sign``; returns the exit code."""
    # the signing code loads cryptography and PyJWT: only for these two verbs, never for `run`
    if args.command == "keygen":
        return _keygen(args.out, args.key_name)
    return _sign(args)


def _keygen(out: Path, name: str) -> int:
    from gateway.commands.signing import keygen

    try:
        files = keygen(out, name)
    except (ValueError, OSError) as exc:
        print(f"cgw keygen: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(files.kid)
    print(
        f"wrote {files.private} (private key: keep it on the platform, never on a gateway)\n"
        f"wrote {files.public} (public key: install it on every gateway)\n"
        f"key id {files.kid}",
        file=sys.stderr,
    )
    return 0


def _sign(args: argparse.Namespace) -> int:
    from gateway.commands.signing import load_private_key, make_command, sign

    try:
        _check_root(args.root)
        if not 1 <= args.ttl <= MAX_TTL:
            raise ValueError(f"--ttl {args.ttl}: between 1 and {MAX_TTL} seconds")
        key = load_private_key(args.key)
        command = make_command(
            args.cmd_name,
            _arguments(args.cmd_name, args.cmd_args),
            site_id=args.site,
            gateway_id=args.gateway,
            now=time.time(),
            ttl=args.ttl,
            command_id=args.cmd_id,
        )
        signed = sign(key, command)
    except ConfigError as exc:
        print("\n".join(f"cgw sign: {e}" for e in exc.errors), file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"cgw sign: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(command_topic(args.root, args.site, args.gateway, args.cmd_name))
    print(signed)
    return 0


def _arguments(name: CommandName, pairs: list[str]) -> dict[str, Any]:
    """``["door=gate-1", "seconds=5"]`` -> ``{"door": "gate-1", "seconds": 5}``, typed by schema."""
    fields = ARGS[name].model_fields
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--arg {pair!r}: expected KEY=VALUE")
        if key in out:
            raise ValueError(f"--arg {key} given twice")
        field = fields.get(key)
        if field is not None and field.annotation is int:
            try:
                out[key] = int(value)
            except ValueError:
                raise ValueError(f"--arg {key}={value!r}: expected an integer") from None
        else:
            out[key] = value  # a string; an unknown key is refused by the schema with a reason
    return out


def _check_root(root: str) -> None:
    if not root or any(c in root for c in "#+ \0") or root.strip("/") != root or "//" in root:
        raise ValueError(f"--root {root!r}: no wildcards, spaces, or leading/trailing/double '/'")
