"""``cgw users add|passwd|remove|list``: the staff console's accounts in the users file.

``cgw users add wang --role guard --display 王伟`` adds an account, ``passwd wang`` gives it a
new password, ``remove wang`` removes it, ``list`` shows name, role and display (never a hash).
``gateway.console.users`` has the rules for names, roles and passwords.

Which file: ``--file PATH``; else ``console.users_file`` of the config ``-c FILE`` (default
/etc/cgw/gateway.yaml; a relative path is taken from the config's folder, as the daemon
does), read from the raw YAML so a config that does not validate still names it; else, and
when there is no config at the default place, ``/var/lib/cgw/users.yaml``.

A password is asked twice on the terminal, or read as one line from standard input with
``--password-stdin`` (scripts, tests); never an argument, which ``ps`` and the shell history
would show.

Exit codes: 0 done; 1 nothing changed, and the one line on stderr says why (no such user, the
user exists, the password is too short, the file is unreadable or malformed). Usage errors
exit 2, as for every ``cgw`` command.
"""

import argparse
import getpass
import sys
from pathlib import Path

from gateway.cli.local_api import DEFAULT_CONFIG
from gateway.config.loader import read_yaml
from gateway.config.paths import resolve_paths
from gateway.console.users import DEFAULT_USERS_FILE, ROLES, Users
from gateway.core.errors import ConfigError, GatewayError

COMMAND = "users"
EXIT_FAILURE = 1


class _Failed(Exception):
    """Nothing was changed; the message says why, for the operator."""


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``users`` and its actions to ``cgw``'s subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_mutually_exclusive_group()
    where.add_argument("--file", type=Path, help="the users file (default: from the config)")
    where.add_argument(
        "-c",
        "--config",
        type=Path,
        default=None,
        help=f"config naming console.users_file (default {DEFAULT_CONFIG})",
    )
    secret = argparse.ArgumentParser(add_help=False)
    secret.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password as one line from standard input instead of asking twice",
    )
    users = sub.add_parser(COMMAND, help="staff console accounts: add, passwd, remove, list")
    actions = users.add_subparsers(dest="users_command", required=True)
    add = actions.add_parser("add", parents=[common, secret], help="add an account")
    add.add_argument("name", help="sign-in name: letters, digits, '.', '_', '-' (1 to 32)")
    add.add_argument("--role", required=True, choices=ROLES, help="what the account may open")
    add.add_argument("--display", help="the person's name, shown in audits (any script)")
    passwd = actions.add_parser("passwd", parents=[common, secret], help="set a new password")
    passwd.add_argument("name")
    remove = actions.add_parser("remove", parents=[common], help="remove an account")
    remove.add_argument("name")
    actions.add_parser("list", parents=[common], help="name, role and display of every account")


def run(args: argparse.Namespace) -> int:
    """Carry out ``cgw users ...``; returns the exit code."""
    path: Path | None = None
    try:
        path = users_file(args.file, args.config)
        users = Users.load(path)
        if args.users_command == "list":
            _print_table(users, path)
            return 0
        name = args.name
        there = users.get(name)  # asked before the password is typed
        if args.users_command == "add":
            if there is not None:
                raise _Failed(f"user {there.name} exists in {path}")
            user = users.add(name, args.role, _password(args), _display(args.display))
            done = f"added {user.name} ({user.role}) to {path}"
        elif there is None:
            raise _Failed(f"no user {name!r} in {path}")
        elif args.users_command == "passwd":
            user = users.set_password(name, _password(args))
            done = f"new password for {user.name} in {path}"
        else:
            user = users.remove(name)
            done = f"removed {user.name} from {path}"
        users.save(path)
    except ConfigError as exc:
        print("\n".join(exc.errors), file=sys.stderr)
        return EXIT_FAILURE
    except (GatewayError, _Failed) as exc:
        print(f"cgw users {args.users_command}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        where = exc.filename or path
        print(f"cgw users {args.users_command}: {where}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    print(done)
    return 0


def users_file(file: Path | None, config: Path | None) -> Path:
    """The users file ``--file`` or the config names; raises ``ConfigError``."""
    if file is not None:
        return file
    if config is None:
        if not DEFAULT_CONFIG.exists():
            return DEFAULT_USERS_FILE
        config = DEFAULT_CONFIG
    raw = read_yaml(config)
    if not isinstance(raw, dict):
        return DEFAULT_USERS_FILE  # check-config says what is wrong with it
    resolve_paths(raw, config.resolve().parent)
    console = raw.get("console")
    value = console.get("users_file") if isinstance(console, dict) else None
    if value is None:
        return DEFAULT_USERS_FILE
    if not isinstance(value, str) or not value:
        raise ConfigError([f"{config}: console.users_file: a file path is expected"])
    return Path(value)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not sys.stdin.isatty():
        raise _Failed("no terminal to ask for the password on; pipe it in with --password-stdin")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Same password again: ") != first:
        raise _Failed("the two passwords differ; nothing changed")
    return first


def _display(text: str | None) -> str | None:
    return None if text is None else text.strip()


def _print_table(users: Users, path: Path) -> None:
    rows = [("NAME", "ROLE", "DISPLAY")] + [(u.name, u.role, u.display or "-") for u in users]
    if len(rows) == 1:
        print(f"no accounts in {path}")
        return
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    for r in rows:
        print(f"{r[0].ljust(widths[0])}  {r[1].ljust(widths[1])}  {r[2]}")
