"""Whether the system clock is synchronised (the ``clock_synced`` flag on every message).

A Raspberry Pi has no real-time clock: until NTP has synchronised, wall time may be hours or
years off, so consumers must know. Two sources, either is enough: systemd-timesyncd's marker
file, and the kernel's own view (``adjtimex`` reports TIME_ERROR while unsynchronised, which
covers chrony and ntpd as well).
"""

import ctypes
import ctypes.util
from collections.abc import Callable
from pathlib import Path

from gateway.core.clock import Clock

TIMESYNCD_MARKER = Path("/run/systemd/timesync/synchronized")
TIME_ERROR = 5  # adjtimex(2): clock not synchronised


def kernel_synced() -> bool:
    """The kernel's NTP state; False where it cannot be read."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        # struct timex is ~208 bytes; zeroed means modes=0: read only, change nothing.
        buf = ctypes.create_string_buffer(512)
        state = int(libc.adjtimex(buf))
    except (OSError, AttributeError):
        return False
    return 0 <= state != TIME_ERROR


class SyncState:
    """Cached answer, refreshed at most every ``ttl`` seconds of monotonic time."""

    def __init__(
        self,
        clock: Clock,
        ttl: float = 30.0,
        marker: Path = TIMESYNCD_MARKER,
        kernel: Callable[[], bool] = kernel_synced,
    ) -> None:
        self.clock = clock
        self.ttl = ttl
        self.marker = marker
        self.kernel = kernel
        self._value = False
        self._checked = float("-inf")

    def __call__(self) -> bool:
        now = self.clock.mono()
        if now - self._checked >= self.ttl:
            self._checked = now
            self._value = self.marker.exists() or self.kernel()
        return self._value
