"""Access control in the core: the ``AccessEvent`` message and the door and terminal trackers.

Contract:
- ``AccessEvent`` is what door terminals report. A driver emits it with the raw person id in
  ``raw_person`` (never shown by ``repr``, never compared); the pipeline's pseudonymise stage
  (``gateway.pipeline.privacy.Pseudonymise``) replaces it with ``person``, a pseudonym, before
  any later stage, the store or the log sees the event. ``snapshot_ref`` is an opaque
  reference to an image that stays on the terminal, or empty. Its invariants are checked on
  construction (a bad one is a bug and raises ``ValueError``): a known ``kind`` and
  ``credential``; a deny ``reason`` on denials only; ``data_class`` is ``personal`` exactly
  when a person (raw or pseudonymous) or snapshot is named, and then ``retention`` (seconds)
  says how long it may be kept; ``skew`` is ``terminal_ts - gateway_ts`` and
  ``skew_flagged`` whether it exceeded the terminal's limit. A terminal time more than
  ``MAX_SKEW`` from the arrival time (a terminal clock reset to 2000 or set to 9999) is no
  time at all: it is dropped, the event keeps the arrival time alone (``terminal_ts`` and
  ``skew`` None) and stays flagged. ``source`` names the terminal
  config (its dedup window); ``derived`` marks events the gateway derived (``operational``).
- ``DoorTracker`` turns door traffic into what the alarm engine needs, per door: an opening
  with no grant (a granted credential or a gateway unlock) in the last ``grant_window``
  seconds is ``forced``; a door open for ``held_open_after`` seconds is ``held_open``, once.
  Whether the terminal or the tracker noticed first, one opening yields at most one
  ``forced`` and one ``held_open``: a later report of the same is suppressed (counted).
- ``TerminalWatch`` says when a terminal went quiet (``terminal_offline`` after ``timeout``
  seconds without any message, once) and when it spoke again (``terminal_online``).
- Pure: no I/O, no asyncio, no logging, no clock reads. Every method takes the monotonic
  ``now``; wall-clock stamps of derived events come from the wall time of the event that
  started the timer plus the monotonic time elapsed, so replaying the same input gives the
  same output.
"""

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, get_args

from gateway.core.device_time import plausible
from gateway.core.liveness import Liveness

Kind = Literal[
    "granted",
    "denied",
    "forced",
    "held_open",
    "door_closed",
    "door_opened",
    "tamper",
    "terminal_offline",
    "terminal_online",
]
DenyReason = Literal[
    "unknown_credential", "expired", "blacklisted", "antipassback", "outside_schedule", "other"
]
Credential = Literal["face", "qr", "card", "pin", "none"]
DataClass = Literal["personal", "operational"]
KINDS: tuple[Kind, ...] = get_args(Kind)
DENY_REASONS: tuple[DenyReason, ...] = get_args(DenyReason)
CREDENTIALS: tuple[Credential, ...] = get_args(Credential)
ALARM_KINDS: frozenset[Kind] = frozenset({"forced", "held_open", "tamper"})
DOOR_KINDS: frozenset[Kind] = frozenset(
    {"granted", "denied", "forced", "held_open", "door_closed", "door_opened"}
)  # these always name a door; the others may not


@dataclass(frozen=True, slots=True)
class AccessEvent:
    """One thing that happened at a door or a terminal."""

    device: str  # the terminal's id
    door: str  # the door's id; "" for terminal-level events (offline, online, tamper)
    kind: Kind
    gateway_ts: float  # wall clock at the gateway when it received (or derived) the event
    reason: DenyReason | Literal[""] = ""
    credential: Credential = "none"
    person: str = ""  # pseudonym under the current key, or ""
    person_previous: str = ""  # pseudonym under the previous key during a key rotation, or ""
    snapshot_ref: str = ""  # opaque reference to an image kept on the terminal, or ""
    terminal_ts: float | None = None  # the terminal's own clock, when it sent one
    skew: float | None = None  # terminal_ts - gateway_ts
    skew_flagged: bool = False  # |skew| above the terminal's limit
    event_id: str = ""  # the terminal's event id (dedup key), or derived from it
    data_class: DataClass = "operational"
    retention: int | None = None  # seconds a personal event may be kept; None if operational
    raw_person: str = field(default="", repr=False, compare=False)  # until pseudonymised
    source: str = field(default="", compare=False)  # the terminal config that mapped it
    derived: bool = field(default=False, compare=False)  # made by the gateway, not reported

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in KINDS:
            problems.append(f"kind {self.kind!r}")
        if self.credential not in CREDENTIALS:
            problems.append(f"credential {self.credential!r}")
        if (self.reason != "") != (self.kind == "denied") or (
            self.reason and self.reason not in DENY_REASONS
        ):
            problems.append(f"reason {self.reason!r} for {self.kind}")
        if self.kind in DOOR_KINDS and not self.door:
            problems.append(f"{self.kind} without a door")
        personal = bool(self.person or self.raw_person or self.snapshot_ref)
        if self.person and self.raw_person:
            problems.append("a raw person id next to a pseudonym")
        if self.person_previous and not self.person:
            problems.append("a previous pseudonym without a current one")
        if self.data_class != ("personal" if personal else "operational"):
            problems.append(f"data_class {self.data_class!r}")
        if personal != (self.retention is not None) or (
            self.retention is not None and self.retention <= 0
        ):
            problems.append(f"retention {self.retention!r} for {self.data_class} data")
        if (self.skew is None) != (self.terminal_ts is None):
            problems.append("skew without terminal_ts, or the other way round")
        if problems:
            raise ValueError("invalid AccessEvent: " + "; ".join(problems))

    @classmethod
    def build(
        cls,
        device: str,
        door: str,
        kind: Kind,
        gateway_ts: float,
        *,
        skew_limit: float,
        retention: int,
        terminal_ts: float | None = None,
        reason: DenyReason | Literal[""] = "",
        credential: Credential = "none",
        person: str = "",
        person_previous: str = "",
        snapshot_ref: str = "",
        event_id: str = "",
        raw_person: str = "",
        source: str = "",
    ) -> "AccessEvent":
        """An event with skew, data class and retention worked out.

        ``retention`` (seconds) applies if the event turns out personal (a person or snapshot).
        An implausible ``terminal_ts`` (see ``plausible``) is dropped and the event flagged.
        """
        believed = plausible(terminal_ts, gateway_ts)
        skew = None if believed is None else believed - gateway_ts
        personal = bool(person or raw_person or snapshot_ref)
        return cls(
            device=device,
            door=door,
            kind=kind,
            gateway_ts=gateway_ts,
            reason=reason,
            credential=credential,
            person=person,
            person_previous=person_previous,
            snapshot_ref=snapshot_ref,
            terminal_ts=believed,
            skew=skew,
            skew_flagged=believed != terminal_ts or (skew is not None and abs(skew) > skew_limit),
            event_id=event_id,
            data_class="personal" if personal else "operational",
            retention=retention if personal else None,
            raw_person=raw_person,
            source=source,
        )

    @property
    def alarming(self) -> bool:
        """Whether this kind should raise an alarm (forced, held open, tamper)."""
        return self.kind in ALARM_KINDS


def operational(source: AccessEvent, kind: Kind, gateway_ts: float, suffix: str) -> AccessEvent:
    """An event derived from ``source``: same device and door, no person, no snapshot."""
    same_time = gateway_ts == source.gateway_ts
    return dataclasses.replace(
        source,
        kind=kind,
        gateway_ts=gateway_ts,
        reason="",
        credential="none",
        person="",
        person_previous="",
        snapshot_ref="",
        terminal_ts=source.terminal_ts if same_time else None,
        skew=source.skew if same_time else None,
        skew_flagged=source.skew_flagged if same_time else False,
        event_id=f"{source.event_id}/{suffix}" if source.event_id else "",
        data_class="operational",
        retention=None,
        raw_person="",
        derived=True,
    )


@dataclass(frozen=True, slots=True)
class DoorPolicy:
    """How long a door may stay open, and how long a grant lets it open."""

    door: str
    held_open_after: float
    grant_window: float


@dataclass(slots=True)
class _Door:
    policy: DoorPolicy
    grant_until: float = -math.inf  # monotonic time until which an opening is authorised
    opening: AccessEvent | None = None  # the event that opened the door, while it is open
    opened_at: float = 0.0  # monotonic time of that event
    forced: bool = False  # this opening was reported (or found) forced
    held: bool = False  # this opening was reported (or found) held open


class DoorTracker:
    """Per-door state: grants, openings, forced and held-open detection."""

    def __init__(self, policies: Iterable[DoorPolicy]) -> None:
        self._doors = {p.door: _Door(p) for p in policies}
        self.suppressed = 0  # repeated forced / held_open reports of one opening

    def is_open(self, door: str) -> bool:
        """Whether ``door`` is open as far as the tracker knows."""
        state = self._doors.get(door)
        return state is not None and state.opening is not None

    def authorise(self, door: str, now: float, seconds: float) -> float:
        """Let ``door`` open without alarm until ``now + seconds``; returns the previous limit.

        Give that limit to ``restore`` if the unlock did not happen after all.
        """
        state = self._doors[door]
        previous = state.grant_until
        state.grant_until = max(previous, now + seconds)
        return previous

    def restore(self, door: str, grant_until: float) -> None:
        """Put back a limit ``authorise`` returned."""
        self._doors[door].grant_until = grant_until

    def feed(self, event: AccessEvent, now: float) -> list[AccessEvent]:
        """The events to emit for ``event``: itself (unless a repeat) and any it implies."""
        state = self._doors.get(event.door)
        if state is None:
            return [event]
        kind = event.kind
        if kind == "granted":
            self.authorise(event.door, now, state.policy.grant_window)
        elif kind == "door_opened":
            if state.opening is not None:
                return [event]  # already open: a repeated report decides nothing new
            self._open(state, event, now)
            if now > state.grant_until:
                state.forced = True
                return [event, operational(event, "forced", event.gateway_ts, "forced")]
        elif kind in ("forced", "held_open"):
            if state.opening is None:
                self._open(state, event, now)
            flag = "forced" if kind == "forced" else "held"
            if getattr(state, flag):
                self.suppressed += 1
                return []
            setattr(state, flag, True)
        elif kind == "door_closed":
            state.opening = None
            state.forced = state.held = False
        return [event]

    @staticmethod
    def _open(state: _Door, event: AccessEvent, now: float) -> None:
        state.opening = event
        state.opened_at = now
        state.forced = state.held = False

    def tick(self, now: float) -> list[AccessEvent]:
        """``held_open`` for every door open past its limit and not yet reported."""
        out = []
        for state in self._doors.values():
            limit = state.policy.held_open_after
            if state.opening is None or state.held or now < state.opened_at + limit:
                continue
            state.held = True
            out.append(
                operational(state.opening, "held_open", state.opening.gateway_ts + limit, "held")
            )
        return out

    def next_due(self) -> float | None:
        """The monotonic time of the next possible ``held_open``, if any door is open."""
        due = [
            s.opened_at + s.policy.held_open_after
            for s in self._doors.values()
            if s.opening is not None and not s.held
        ]
        return min(due, default=None)


class TerminalWatch:
    """Online/offline per terminal, from the time of its last message (``Liveness``)."""

    def __init__(self, terminals: Iterable[str], timeout: float, now: float, wall: float) -> None:
        """Watch ``terminals``; each is unknown until heard from or ``timeout`` after ``now``."""
        self.timeout = timeout
        self._live = Liveness(terminals, timeout, now, wall)

    def online(self, terminal: str) -> bool | None:
        """True or False once known; None before the first message or timeout."""
        return self._live.online(terminal)

    def resume(self, now: float, wall: float) -> None:
        """Give every terminal a full ``timeout`` from ``now`` (start, reconnect to the broker)."""
        self._live.resume(now, wall)

    def heard(self, terminal: str, now: float, wall: float) -> list[AccessEvent]:
        """A message from ``terminal``: ``terminal_online`` if it was not online."""
        if not self._live.heard(terminal, now, wall):
            return []
        return [AccessEvent(terminal, "", "terminal_online", wall)]

    def lost(self, terminal: str, wall: float) -> list[AccessEvent]:
        """The terminal (or its will) said it is going offline."""
        if not self._live.lost(terminal):
            return []
        return [AccessEvent(terminal, "", "terminal_offline", wall)]

    def tick(self, now: float) -> list[AccessEvent]:
        """``terminal_offline`` for each terminal overdue and not yet reported."""
        return [AccessEvent(t, "", "terminal_offline", wall) for t, wall in self._live.tick(now)]
