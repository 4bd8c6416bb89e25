"""Online/offline of devices that are heard, not polled: from the time of their last message.

Contract:
- ``Liveness(devices, timeout, now, wall)`` watches a fixed set of ids; each is unknown
  (``online`` None) until heard from or until ``timeout`` seconds after ``now``.
- ``heard`` (a message, a heartbeat) makes a device online and gives it a full ``timeout``
  again; it returns True when that is a change. ``lost`` (its will, an offline status) makes
  it offline at once; True when that is a change. ``tick(now)`` returns every device overdue
  and not yet offline, with the wall time its deadline passed, and marks it offline: each
  silence is reported once.
- ``resume`` gives every device a full ``timeout`` (at start, and after a reconnect to the
  broker: a silence while we could not hear says nothing about a device).
- Ids it does not watch are ignored (False, nothing reported).
- Pure: no I/O, no asyncio, no clock reads; wall times of a timeout come from the wall time
  of the last message plus the monotonic time elapsed, so the same input gives the same output.
"""

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(slots=True)
class _Watched:
    online: bool | None = None  # None: not heard from since start
    deadline: float = 0.0  # monotonic time it is overdue
    wall_offset: float = 0.0  # wall minus monotonic when the deadline was set


class Liveness:
    """Online/offline per device, from the time of its last message."""

    def __init__(self, devices: Iterable[str], timeout: float, now: float, wall: float) -> None:
        self.timeout = timeout
        self._state = {d: _Watched() for d in devices}
        self.resume(now, wall)

    def online(self, device: str) -> bool | None:
        """True or False once known; None before the first message or timeout."""
        state = self._state.get(device)
        return None if state is None else state.online

    def resume(self, now: float, wall: float) -> None:
        """Give every device a full ``timeout`` from ``now`` (start, reconnect to the broker)."""
        for state in self._state.values():
            state.deadline = now + self.timeout
            state.wall_offset = wall - now

    def heard(self, device: str, now: float, wall: float) -> bool:
        """A message from ``device``; whether it was not online before."""
        state = self._state.get(device)
        if state is None:
            return False
        state.deadline = now + self.timeout
        state.wall_offset = wall - now
        if state.online:
            return False
        state.online = True
        return True

    def lost(self, device: str) -> bool:
        """``device`` (or its will) said it is going offline; whether that is news."""
        state = self._state.get(device)
        if state is None or state.online is False:
            return False
        state.online = False
        return True

    def tick(self, now: float) -> list[tuple[str, float]]:
        """``(device, wall time of its deadline)`` for each device overdue and not yet offline."""
        out = []
        for device, state in self._state.items():
            if state.online is not False and now >= state.deadline:
                state.online = False
                out.append((device, state.deadline + state.wall_offset))
        return out
