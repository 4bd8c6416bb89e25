"""Time sources. Wall time is data on records; monotonic time drives timers and backoff.

Everything that decides *when* takes a ``Clock`` so tests can drive time by hand.
"""

import time
from typing import Protocol


class Clock(Protocol):
    """Where the gateway reads the time."""

    def wall(self) -> float:
        """Seconds since the epoch (may jump): a data field, never a control input."""
        ...

    def mono(self) -> float:
        """Monotonic seconds: timers, backoff, ages."""
        ...


class SystemClock:
    """The real clock."""

    def wall(self) -> float:
        return time.time()

    def mono(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock moved by hand, for tests of timing logic."""

    def __init__(self, wall: float = 1_800_000_000.0, mono: float = 1000.0) -> None:
        self._wall = wall
        self._mono = mono

    def wall(self) -> float:
        return self._wall

    def mono(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds``."""
        self._wall += seconds
        self._mono += seconds
