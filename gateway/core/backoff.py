"""Capped, jittered exponential backoff that resets after a success."""

import random


class Backoff:
    """``next()`` gives the next pause: base * 2**n, capped, with up to ``jitter`` added.

    Full jitter on a fraction of the delay spreads thousands of gateways reconnecting after a
    platform outage, so they do not come back in one wave.
    """

    def __init__(self, base: float, cap: float, jitter: float = 0.25) -> None:
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self.attempt = 0

    def next(self) -> float:
        """The pause before the next attempt."""
        delay = min(self.cap, self.base * 2.0**self.attempt)
        self.attempt += 1
        return delay * (1.0 - random.uniform(0.0, self.jitter))

    def reset(self) -> None:
        """Start again from ``base`` (after a successful attempt)."""
        self.attempt = 0
