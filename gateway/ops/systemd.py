"""systemd's notify protocol, hand-written: READY, WATCHDOG, STATUS, STOPPING.

A fresh datagram socket per message (a library that connects once loses every later
watchdog ping after ``systemctl daemon-reexec`` re-creates the socket: LIBRARIES P20). Outside
systemd (no ``NOTIFY_SOCKET``) every call is a cheap no-op. The watchdog is fed from the event
loop itself, so a wedged loop stops the pings and systemd restarts the service.

Never blocking: ``notify`` runs on the event loop, so its socket is non-blocking. A message
the receiver cannot take now (its queue is full: ``EAGAIN``; or the socket is gone) is dropped
and counted in ``counts.dropped``, never waited for; a blocking ``sendto`` to a notify socket
nobody reads once froze the whole gateway. The failure is logged once when it starts and once when a
message gets through again. ``keep_alive`` attempts ``WATCHDOG=1`` on every tick whatever
happened to earlier messages, and sends a ``STATUS=`` line again until one gets through.
"""

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Counts:
    """What became of the notify messages of this process."""

    dropped: int = 0  # could not be sent (the receiver's queue full, the socket gone)
    failing: bool = False  # the latest message was dropped


counts = Counts()  # one notify socket per process


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``) without blocking; False when not sent.

    False outside systemd, and when the message was dropped (counted in ``counts.dropped``).
    """
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return False
    if target.startswith("@"):
        target = "\0" + target[1:]  # abstract socket namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(state.encode(), target)
    except OSError as exc:  # BlockingIOError when its queue is full
        counts.dropped += 1
        if not counts.failing:
            counts.failing = True
            log.warning(
                "cannot notify systemd (%s): %s; dropping messages until it reads again",
                target.lstrip("\0"),
                exc,
            )
        return False
    if counts.failing:
        counts.failing = False
        log.info("notifying systemd again (%d messages dropped so far)", counts.dropped)
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
        if line != last and notify(f"STATUS={line}"):
            last = line  # a dropped line is sent again on the next tick
        if period:
            notify("WATCHDOG=1")
        await asyncio.sleep(interval)
