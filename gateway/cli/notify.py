"""``cgw notify test <channel> [--to NUMBER]``: send a test message on one channel now.

Installers commission a channel with it: the WeCom group, the mailbox or the phone should show
the message within seconds. It builds that one channel from the config file (its URL file or
its modem, PIN included) and sends a test message in the staff's language; every try is
printed, with the reason of a failure. ``--to`` sends a modem channel's test as an SMS to that
number instead of to the channel's recipients (an apprise channel's recipients are in its URL
file). A modem's port belongs to the running gateway: stop it first (``systemctl stop cgw``).

Exit codes: 0 delivered; 1 not delivered; 2 a config or usage error.
"""

import argparse
import asyncio
import sys
import time
from pathlib import Path

from gateway.alarms.wording import test_message
from gateway.config import load_config
from gateway.config.notify import ChannelConfig, ModemChannelConfig, RecipientConfig
from gateway.core.errors import ConfigError
from gateway.notify import Attempt, Notifier

COMMAND = "notify"
DEFAULT_CONFIG = Path("/etc/cgw/gateway.yaml")
EXIT_FAILED = 1
EXIT_CONFIG = 2


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register ``cgw notify test``."""
    notify = sub.add_parser(COMMAND, help="staff notification channels")
    actions = notify.add_subparsers(dest="action", required=True)
    test = actions.add_parser("test", help="send a test message on one channel now")
    test.add_argument("channel", help="channel id, as in the config's 'channels'")
    test.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, help="config file")
    test.add_argument(
        "--to", metavar="NUMBER", help="modem channel: send the test SMS to this number only"
    )


def run(args: argparse.Namespace) -> int:
    """Carry out ``cgw notify test``; returns the exit code."""
    try:
        cfg = load_config(args.config)
        channel = next((c for c in cfg.channels if c.id == args.channel), None)
        if channel is None:
            known = ", ".join(c.id for c in cfg.channels) or "none"
            raise ConfigError([f"no channel {args.channel!r} in {args.config} (known: {known})"])
        if args.to is not None:
            if not isinstance(channel, ModemChannelConfig):
                raise ConfigError(
                    [f"--to needs a modem channel; {channel.id} sends to the URLs of its url_file"]
                )
            recipient = RecipientConfig(name="test", phone=args.to, sms=True, call=False)
            channel = channel.model_copy(update={"recipients": [recipient], "retries": 0})
    except (ConfigError, ValueError) as exc:
        errors = exc.errors if isinstance(exc, ConfigError) else [str(exc)]
        for line in errors:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    title, body = test_message(
        cfg.gateway.site_id, channel.id, cfg.alarms.language, cfg.alarms.timezone, time.time()
    )
    attempts = asyncio.run(_send(channel, title, body))
    for a in attempts:
        verdict = "delivered" if a.ok else f"failed: {a.error}"
        print(f"{a.channel}: try {a.number}, {a.duration:.1f} s: {verdict}")
    return 0 if attempts and attempts[-1].ok else EXIT_FAILED


async def _send(
    channel: ChannelConfig | ModemChannelConfig, title: str, body: str
) -> list[Attempt]:
    async with Notifier.from_config([channel]) as notifier:
        results = await notifier.send([channel.id], title, body, severity="info")
    return results[channel.id]
