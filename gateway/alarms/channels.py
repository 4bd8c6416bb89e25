"""Whether each staff channel still reaches people: a dead channel is an alarm, not a log line.

Contract:
- ``ChannelWatch.record(deliveries, wall)`` takes the outcome of one notification (one
  ``Delivery`` per attempt, several channels) and counts per channel: a message is delivered if
  any attempt on that channel was, failed if none was. ``CHANNEL_DOWN_AFTER`` (3, in
  ``gateway.core.snapshots``) failed messages in a row mark a channel down; the first delivered
  one after that marks it up again.
- ``modem(channel, state, wall)`` takes a modem channel's latest modem check: a modem that is
  lost, has no usable SIM or is not registered marks the channel down too, and one that can
  send again clears that (the delivery count still applies).
- Both return the ``Condition`` of each change: ``channel_down/<channel>`` (kind ``offline``,
  severity ``warning``, the first ladder), which the engine raises and clears like any other
  alarm, so the other channels of the ladder tell staff that one of them is dead.
- ``plan(channels, fallback)`` splits one notification's channels into those to send to now
  and the ``fallback`` ones to send to only if none of those delivers: a fallback channel
  (a modem that costs per message) is used only while the internet channels fail. With every
  non-fallback channel of the notification down, all go at once; a notification of fallback
  channels alone goes out only while some non-fallback channel is down.
- ``snapshot()`` gives every channel's figures for health (a down channel makes it ``degraded``)
  and metrics. The built-in ``log`` channel is not watched. Pure: no I/O, no clock.
"""

from collections.abc import Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType

from gateway.alarms.delivery import Delivery
from gateway.alarms.model import Condition
from gateway.core.snapshots import ChannelState, ModemState

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
                new = replace(old, delivered=old.delivered + 1, in_a_row=0, last_ok=wall)
            else:
                error = next((d.error for d in reversed(tries) if d.error), "not delivered")
                new = replace(
                    old, failed=old.failed + 1, in_a_row=old.in_a_row + 1, last_error=error
                )
            out += self._set(channel, old, new, wall)
        return out

    def modem(self, channel: str, state: ModemState, wall: float) -> list[Condition]:
        """A modem channel's modem was checked; the condition if that changed ``down``."""
        old = self._states.get(channel, ChannelState())
        return self._set(channel, old, replace(old, modem=state), wall)

    def _set(
        self, channel: str, old: ChannelState, new: ChannelState, wall: float
    ) -> list[Condition]:
        self._states[channel] = new
        return [self._condition(channel, new, wall)] if old.down != new.down else []

    def _condition(self, channel: str, state: ChannelState, wall: float) -> Condition:
        modem = state.modem
        if not state.down:
            message = f"staff channel {channel} delivers again"
        elif modem is not None and not modem.ok:
            message = f"staff channel {channel} is down: modem {modem.port}: {modem.problem}"
        else:
            message = (
                f"staff channel {channel} is down: {state.in_a_row} messages in a row not"
                f" delivered ({state.last_error})"
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

    def plan(
        self, channels: Sequence[str], fallback: frozenset[str]
    ) -> tuple[list[str], list[str]]:
        """(send now, send only if none of those delivers) for one notification."""
        primary = [c for c in channels if c not in fallback]
        spare = [c for c in channels if c in fallback]
        if not spare:
            return primary, []
        if not primary:
            internet_down = any(st.down for c, st in self._states.items() if c not in fallback)
            return (spare if internet_down else []), []
        if all(self._states.get(c, ChannelState()).down for c in primary):
            return primary + spare, []
        return primary, spare

    def snapshot(self) -> Mapping[str, ChannelState]:
        """Every channel used so far, by id."""
        return MappingProxyType(dict(self._states))
