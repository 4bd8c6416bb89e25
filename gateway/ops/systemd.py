"""systemd's notify protocol, hand-written: READY, WATCHDOG, STATUS, STOPPING.

A fresh datagram socket per message (a library that connects once loses every later
watchdog ping after ``systemctl daemon-reexec`` re-creates the socket: LIBRARIES P20). Outside
systemd (no ``NOTIFY_SOCKET``) every call is a cheap no-op. The watchdog is fed from the event
loop itself, so a wedged loop stops the pings and systemd restarts the service.
"""

import asyncio
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``); False when not running under systemd."""
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return False
    if target.startswith("@"):
        target = "\0" + target[1:]  # abstract socket namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), target)
    except OSError as exc:
        log.warning("cannot notify systemd (%s): %s", target.lstrip("\0"), exc)
        return False
    return True


def watchdog_period() -> float | None:
    """Half of ``WatchdogSec`` when systemd asks this process for pings, else None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None


async def keep_alive(status: Callable[[], str], every: float = 2.0) -> None:
    """Ping the watchdog (if asked) and refresh STATUS=, from the event loop, until cancelled.

    The status is looked at every ``every`` seconds and sent when it changed: READY=1 goes out
    before the uplink is up, and ``systemctl status`` typed right after a start should not go on
    showing "uplink down" for half a watchdog period.
    """
    period = watchdog_period()
    interval = min(every, period) if period else every
    last = ""
    while True:
        line = status()
        if line != last:
            notify(f"STATUS={line}")
            last = line
        if period:
            notify("WATCHDOG=1")
        await asyncio.sleep(interval)
