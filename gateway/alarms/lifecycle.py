"""The alarm lifecycle: raised -> notified -> acknowledged -> cleared (pure state machine).

Contract:
- One open alarm per cause. A cause that turns abnormal again while its alarm is open is
  counted on that alarm (``repeats``), never a second alarm (storm control, part 1).
- At most ``storm.per_device`` new alarms per device per ``storm.window`` seconds; further
  onsets are counted in ``suppressed`` (storm control, part 2). Latched alarms (emergency,
  fire) are never suppressed: an emergency button always gets through.
- A non-latched alarm clears when its condition returns to normal, acknowledged or not (the
  time-to-acknowledge then stays unknown). A latched alarm stays open after the contact
  returns, until it is acknowledged *and* reset; reset is refused while the condition is
  still abnormal.
- While an alarm is unacknowledged, its ladder's rungs fire at their ``after`` (seconds since
  raised) and every ``renotify`` seconds a reminder goes to every rung reached so far (``told``):
  escalating never silences the first rung. Acknowledging stops both.
- Every change comes back as a ``Transition`` (to publish and persist) and every message to
  send as a ``Notify``. Time arrives as arguments: ``wall`` stamps records, ``mono`` drives
  timers. ``dump``/``load`` carry open alarms across a restart; elapsed time is taken from
  the wall clock then, clamped at zero, since monotonic time restarts with the process.
"""

import copy
import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from gateway.alarms.model import OPEN, UNACKED, Alarm, Condition, Notify, State, Transition
from gateway.config.alarms import AlarmsConfig, LadderConfig

log = logging.getLogger(__name__)


class LifecycleError(Exception):
    """An operator request that cannot be done (unknown alarm, reset while active...)."""


class Lifecycle:
    """Open alarms and the rules of their life."""

    def __init__(self, cfg: AlarmsConfig, new_id: Callable[[], str] | None = None) -> None:
        self.cfg = cfg
        self.ladders: dict[str, LadderConfig] = {ld.id: ld for ld in cfg.ladders}
        counter = itertools.count(1)
        self._new_id = new_id or (lambda: f"a{next(counter)}")
        self.alarms: dict[str, Alarm] = {}  # open alarms by id
        self._by_cause: dict[str, str] = {}
        self._onsets: dict[str, deque[float]] = {}  # device -> monotonic onsets in window
        self.suppressed = 0

    # -- conditions -----------------------------------------------------------------------

    def on_condition(self, cond: Condition, mono: float) -> tuple[list[Transition], list[Notify]]:
        """Apply a rule's verdict."""
        alarm = self.alarms.get(self._by_cause.get(cond.cause, ""))
        if cond.active:
            if alarm is not None:
                alarm.repeats += int(not alarm.active)
                alarm.active = True
                alarm.value = cond.value
                return [
                    self._note(alarm, alarm.state, cond.ts, f"active again: {cond.message}")
                ], []
            if not cond.latched and self._storm(cond.device, mono):
                self.suppressed += 1
                return [], []
            return self._raise(cond, mono)
        if alarm is None:
            return [], []
        alarm.active = False
        alarm.value = cond.value
        if alarm.latched:
            return [
                self._note(alarm, alarm.state, cond.ts, f"returned to normal: {cond.message}")
            ], []
        return [self._close(alarm, cond.ts, f"cleared: {cond.message}")], []

    def _storm(self, device: str, mono: float) -> bool:
        onsets = self._onsets.setdefault(device, deque())
        while onsets and mono - onsets[0] >= self.cfg.storm.window:
            onsets.popleft()
        if len(onsets) >= self.cfg.storm.per_device:
            return True
        onsets.append(mono)
        return False

    def _raise(self, cond: Condition, mono: float) -> tuple[list[Transition], list[Notify]]:
        alarm = Alarm(
            id=self._new_id(),
            cause=cond.cause,
            rule=cond.rule,
            kind=cond.kind,
            device=cond.device,
            severity=cond.severity,
            latched=cond.latched,
            ladder=cond.ladder,
            message=cond.message,
            state=State.RAISED,
            active=True,
            raised_at=cond.ts,
            raised_mono=mono,
            value=cond.value,
            facts=dict(cond.facts),
        )
        self.alarms[alarm.id] = alarm
        self._by_cause[alarm.cause] = alarm.id
        alarm.history.append((cond.ts, State.RAISED.value, cond.message))
        notes = self._escalate(alarm, mono)
        return [Transition(snapshot(alarm), None, cond.message)], notes

    # -- people ---------------------------------------------------------------------------

    def notified(self, alarm_id: str, wall: float) -> list[Transition]:
        """A channel confirmed delivery of a notification about the alarm."""
        alarm = self.alarms.get(alarm_id)
        if alarm is None or alarm.state is not State.RAISED:
            return []
        alarm.notified_at = wall
        return [self._move(alarm, State.NOTIFIED, wall, "staff notified")]

    def acknowledge(self, alarm_id: str, by: str, wall: float) -> list[Transition]:
        """A person took the alarm on: escalation and re-notification stop."""
        alarm = self._open(alarm_id)
        if alarm.state not in UNACKED:
            return []
        alarm.acked_at = wall
        alarm.acked_by = by
        alarm.next_renotify = None
        return [self._move(alarm, State.ACKNOWLEDGED, wall, f"acknowledged by {by}")]

    def reset(self, alarm_id: str, by: str, wall: float) -> list[Transition]:
        """Close a latched alarm whose condition is back to normal (acknowledging it too)."""
        alarm = self._open(alarm_id)
        if alarm.active:
            raise LifecycleError(f"alarm {alarm_id} cannot be reset: its input is still active")
        out = self.acknowledge(alarm_id, by, wall)
        out.append(self._close(alarm, wall, f"reset by {by}"))
        return out

    def _open(self, alarm_id: str) -> Alarm:
        alarm = self.alarms.get(alarm_id)
        if alarm is None:
            raise LifecycleError(f"no open alarm {alarm_id!r}")
        return alarm

    # -- time -----------------------------------------------------------------------------

    def tick(self, mono: float) -> list[Notify]:
        """Rungs that came due and repeats, for every unacknowledged alarm."""
        out: list[Notify] = []
        for alarm in self.alarms.values():
            if alarm.state in UNACKED:
                out += self._escalate(alarm, mono)
        return out

    def _escalate(self, alarm: Alarm, mono: float) -> list[Notify]:
        ladder = self.ladders[alarm.ladder]
        elapsed = mono - alarm.raised_mono
        due = [i for i, t in enumerate(ladder.tiers) if t.after <= elapsed and i > alarm.tier]
        out = [Notify(alarm, i, tuple(ladder.tiers[i].channels), False) for i in due]
        if due:
            alarm.tier = due[-1]
            alarm.next_renotify = mono + ladder.renotify if ladder.renotify else None
        elif alarm.next_renotify is not None and mono >= alarm.next_renotify and alarm.tier >= 0:
            out.append(Notify(alarm, alarm.tier, self.told(alarm), True))  # every rung told
            alarm.next_renotify = mono + ladder.renotify
        return out

    def news(self, transitions: Sequence[Transition]) -> list[Notify]:
        """Messages telling everyone notified about an alarm that it was acknowledged or cleared.

        The built-in ``log`` channel is left out; an alarm nobody was told about gets none.
        """
        out: list[Notify] = []
        for t in transitions:
            state = t.alarm.state
            if state is t.previous or state not in (State.ACKNOWLEDGED, State.CLEARED):
                continue
            told = tuple(c for c in self.told(t.alarm) if c != "log")
            if told:
                out.append(Notify(t.alarm, t.alarm.tier, told, False, news=state.value))
        return out

    def told(self, alarm: Alarm) -> tuple[str, ...]:
        """The channels of every rung notified so far, in ladder order, each once."""
        ladder = self.ladders.get(alarm.ladder)
        if ladder is None or alarm.tier < 0:
            return ()
        rungs = ladder.tiers[: alarm.tier + 1]
        return tuple(dict.fromkeys(c for rung in rungs for c in rung.channels))

    def next_deadline(self) -> float | None:
        """The earliest monotonic time ``tick`` has something to do, if any."""
        times: list[float] = []
        for alarm in self.alarms.values():
            if alarm.state not in UNACKED:
                continue
            ladder = self.ladders[alarm.ladder]
            if alarm.tier + 1 < len(ladder.tiers):
                times.append(alarm.raised_mono + ladder.tiers[alarm.tier + 1].after)
            if alarm.next_renotify is not None:
                times.append(alarm.next_renotify)
        return min(times, default=None)

    # -- bookkeeping ----------------------------------------------------------------------

    def _move(self, alarm: Alarm, state: State, wall: float, note: str) -> Transition:
        previous = alarm.state
        alarm.state = state
        alarm.history.append((wall, state.value, note))
        return Transition(snapshot(alarm), previous, note)

    def _note(self, alarm: Alarm, state: State, wall: float, note: str) -> Transition:
        alarm.history.append((wall, state.value, note))
        return Transition(snapshot(alarm), state, note)

    def _close(self, alarm: Alarm, wall: float, note: str) -> Transition:
        alarm.cleared_at = wall
        alarm.next_renotify = None
        del self.alarms[alarm.id]
        del self._by_cause[alarm.cause]
        return self._move(alarm, State.CLEARED, wall, note)

    def dump(self) -> list[dict[str, Any]]:
        """Open alarms as plain data, for the store."""
        return [to_dict(a) for a in self.alarms.values()]

    def load(self, rows: Iterable[dict[str, Any]], wall: float, mono: float) -> None:
        """Restore open alarms after a restart; their timers continue where they were."""
        for row in rows:
            alarm = from_dict(row, wall)
            alarm.raised_mono = mono - max(0.0, wall - alarm.raised_at)
            if alarm.state in UNACKED:
                ladder = self.ladders.get(alarm.ladder)
                if ladder is None:
                    alarm.ladder = (
                        "default" if "default" in self.ladders else self.cfg.ladders[0].id
                    )
                    ladder = self.ladders[alarm.ladder]
                alarm.tier = min(alarm.tier, len(ladder.tiers) - 1)
                alarm.next_renotify = mono if ladder.renotify and alarm.tier >= 0 else None
            if alarm.state in OPEN:
                self.alarms[alarm.id] = alarm
                self._by_cause[alarm.cause] = alarm.id


def snapshot(alarm: Alarm) -> Alarm:
    """A copy that later changes to ``alarm`` do not touch."""
    dup = copy.copy(alarm)
    dup.history = list(alarm.history)
    dup.facts = dict(alarm.facts)
    return dup


_FIELDS = [
    "id",
    "cause",
    "rule",
    "kind",
    "device",
    "severity",
    "latched",
    "ladder",
    "message",
    "active",
    "raised_at",
    "value",
    "notified_at",
    "acked_at",
    "acked_by",
    "cleared_at",
    "repeats",
    "tier",
]


def to_dict(alarm: Alarm) -> dict[str, Any]:
    """Plain data of an alarm (monotonic fields left out: they mean nothing after a restart)."""
    out = {k: getattr(alarm, k) for k in _FIELDS}
    out["state"] = alarm.state.value
    out["history"] = [list(h) for h in alarm.history]
    if alarm.facts:
        out["facts"] = dict(alarm.facts)
    return out


def from_dict(row: dict[str, Any], wall: float = 0.0) -> Alarm:
    """The inverse of ``to_dict``.

    A row an older release wrote may lack fields (the oldest kept only id, state and
    severity). It is restored, never dropped, as an alarm that waits for staff: latched, on
    a cause of its own, raised at ``wall`` when the row does not say when, its message saying
    it was restored. An unacknowledged emergency from before an upgrade must not be forgotten.
    """
    missing = [k for k in _FIELDS if k not in row]
    if missing:
        aid = str(row.get("id", "restored"))  # the alarms table's key: always there
        log.error("alarm %s from an older store lacks %s: restored to wait for staff", aid, missing)
        row = {**_restored(aid, row, wall), **row}
    fields = {k: row[k] for k in _FIELDS}
    alarm = Alarm(state=State(row.get("state", "raised")), raised_mono=0.0, **fields)
    alarm.history = [(float(w), str(s), str(n)) for w, s, n in row.get("history", [])]
    alarm.facts = {str(k): str(v) for k, v in row.get("facts", {}).items()}
    return alarm


def _restored(aid: str, row: dict[str, Any], wall: float) -> dict[str, Any]:
    """The fields an older row may lack, for an alarm that waits for staff to answer it."""
    return {
        "id": aid,
        "cause": f"restored/{aid}",
        "rule": "restored",
        "kind": "contact",
        "device": str(row.get("device", "")),
        "severity": "critical",
        "latched": True,
        "ladder": "default",
        "message": f"alarm {aid} restored from an older store: check and acknowledge it",
        "active": False,
        "raised_at": wall,
        "value": None,
        "notified_at": None,
        "acked_at": None,
        "acked_by": "",
        "cleared_at": None,
        "repeats": 0,
        "tier": -1,
    }
