"""Whether each staff channel still reaches people: a dead channel is an alarm, not a log line.

Contract:
- ``ChannelWatch.record(deliveries, wall)`` takes the outcome of one notification (one
  ``Delivery`` per attempt, several channels) and counts per channel: a message is delivered if
  any attempt on that channel was, failed if none was. ``CHANNEL_DOWN_AFTER`` (3, in
  ``gateway.core.snapshots``) failed messages in a row mark a channel down; the first delivered
  one after that marks it up again.
- It returns the ``Condition`` of each change: ``channel_down/<channel>`` (kind ``offline``,
  severity ``warning``, the first ladder), which the engine raises and clears like any other
  alarm, so the other channels of the ladder tell staff that one of them is dead.
- ``snapshot()`` gives every channel's figures for health (a down channel makes it ``degraded``)
  and metrics. The built-in ``log`` channel is not watched. Pure: no I/O, no clock.
"""

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from gateway.alarms.delivery import Delivery
from gateway.alarms.model import Condition
from gateway.core.snapshots import ChannelState

CHANNEL_DOWN = "channel_down"  # the rule id of these alarms


class ChannelWatch:
    """Per-channel delivery figures and the down/up verdicts."""

    def __init__(self, ladder: str) -> None:
        self.ladder = ladder  # where channel_down alarms escalate
        self._states: dict[str, ChannelState] = {}

    def record(self, deliveries: Sequence[Delivery], wall: float) -> list[Condition]:
        """Count one notification's outcome; the conditions of channels that went down or up."""
        out: list[Condition] = []
        for channel in dict.fromkeys(d.channel for d in deliveries if d.channel != "log"):
            tries = [d for d in deliveries if d.channel == channel]
            ok = any(d.ok for d in tries)
            old = self._states.get(channel, ChannelState())
            if ok:
                new = ChannelState(old.delivered + 1, old.failed, 0, wall, old.last_error)
            else:
                error = next((d.error for d in reversed(tries) if d.error), "not delivered")
                new = ChannelState(
                    old.delivered, old.failed + 1, old.in_a_row + 1, old.last_ok, error
                )
            self._states[channel] = new
            if old.down != new.down:
                out.append(self._condition(channel, new, wall))
        return out

    def _condition(self, channel: str, state: ChannelState, wall: float) -> Condition:
        message = (
            f"staff channel {channel} is down: {state.in_a_row} messages in a row not delivered"
            f" ({state.last_error})"
            if state.down
            else f"staff channel {channel} delivers again"
        )
        return Condition(
            f"{CHANNEL_DOWN}/{channel}",
            CHANNEL_DOWN,
            "offline",
            channel,
            state.down,
            "warning",
            False,
            self.ladder,
            message,
            wall,
        )

    def snapshot(self) -> Mapping[str, ChannelState]:
        """Every channel used so far, by id."""
        return MappingProxyType(dict(self._states))
