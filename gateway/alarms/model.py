"""Alarm value types: conditions from rules, alarms with their lifecycle, and actions."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from gateway.core.messages import Value


class State(StrEnum):
    """Where an alarm is in its lifecycle."""

    RAISED = "raised"  # the condition is abnormal; no notification confirmed yet
    NOTIFIED = "notified"  # at least one channel confirmed delivery
    ACKNOWLEDGED = "acknowledged"  # a person took it on: escalation and siren stop
    CLEARED = "cleared"  # over: back to normal (and reset, for latched alarms)


OPEN = frozenset({State.RAISED, State.NOTIFIED, State.ACKNOWLEDGED})
UNACKED = frozenset({State.RAISED, State.NOTIFIED})


@dataclass(frozen=True, slots=True)
class Condition:
    """A rule's verdict on one cause: abnormal (``active``) or back to normal."""

    cause: str  # one alarm per cause: "<rule>/<device>[/<point or input>]"
    rule: str
    kind: str  # threshold | contact | offline | sensor_fault | welfare_check
    device: str
    active: bool
    severity: str
    latched: bool
    ladder: str
    message: str
    ts: float  # wall clock of the observation
    value: Value | None = None
    facts: Mapping[str, str] = field(default_factory=dict)  # for the staff's wording


@dataclass(slots=True)
class Alarm:
    """One alarm, from raised to cleared. Mutable: only ``Lifecycle`` changes it."""

    id: str
    cause: str
    rule: str
    kind: str
    device: str
    severity: str
    latched: bool
    ladder: str
    message: str
    state: State
    active: bool  # the condition is abnormal right now
    raised_at: float  # wall
    raised_mono: float
    value: Value | None = None
    notified_at: float | None = None
    acked_at: float | None = None
    acked_by: str = ""
    cleared_at: float | None = None
    repeats: int = 0  # further onsets of the same cause while this alarm was open
    tier: int = -1  # highest escalation rung notified so far
    next_renotify: float | None = None  # monotonic
    history: list[tuple[float, str, str]] = field(default_factory=list)  # (wall, state, note)
    facts: dict[str, str] = field(default_factory=dict)  # what staff read beyond the message

    @property
    def input(self) -> str:
        """The input or point the alarm is about (from its cause), "" for a whole device."""
        parts = self.cause.split("/")
        return parts[2] if len(parts) >= 3 else ""

    @property
    def time_to_ack(self) -> float | None:
        """Seconds from raised to acknowledged: the figure the 8-minute promise is checked by."""
        return None if self.acked_at is None else max(0.0, self.acked_at - self.raised_at)


@dataclass(frozen=True, slots=True)
class Transition:
    """An alarm changed state (or was updated): publish it, persist it."""

    alarm: Alarm
    previous: State | None  # None for a new alarm; equal to the state for an update
    note: str


@dataclass(frozen=True, slots=True)
class Notify:
    """Tell the people on ``channels`` about ``alarm`` (rung ``tier`` of its ladder)."""

    alarm: Alarm
    tier: int
    channels: tuple[str, ...]
    repeat: bool  # a re-notification of a rung already told
    news: str = ""  # "acknowledged" or "cleared": telling those notified before; "" for a call
