"""Orders: what the gateway tells its own devices and its alarm engine to do.

Contract:
- An ``Order`` is a frozen, slotted dataclass; ``Order`` is the union of every kind. Each names
  ``by``, who asked (``platform:<user>``, ``gpio:<device>/<input>``, ``linkage``, ``alarms``),
  which goes into the log and the audit trail and never changes what the order does.
- Orders are not the *signed platform command* (``gateway.commands.model.Command``): a verified
  platform command becomes an order once it is accepted; so do the siren, the fire linkage and
  the acknowledge/reset buttons. ``gateway.commands.dispatch.Dispatcher`` carries them out.
- ``alarm_id`` ``None`` means every open alarm (what an acknowledge button does).
"""

from dataclasses import dataclass

Severity = str | None  # the worst unacknowledged alarm's severity, or None when all is quiet


@dataclass(frozen=True, slots=True)
class SoundSiren:
    """Sound the sirens and strobes with the pattern of ``severity``; None turns them off."""

    severity: Severity
    by: str = "alarms"

    name = "siren"


@dataclass(frozen=True, slots=True)
class UnlockDoor:
    """Release ``door`` for ``seconds``; ``reason`` goes to the terminal and the log."""

    door: str
    seconds: int
    reason: str
    by: str

    name = "unlock"


@dataclass(frozen=True, slots=True)
class Acknowledge:
    """Acknowledge one alarm, or every open one (``alarm_id`` None)."""

    alarm_id: str | None
    by: str

    name = "ack"


@dataclass(frozen=True, slots=True)
class Reset:
    """Reset one alarm, or every open one (``alarm_id`` None)."""

    alarm_id: str | None
    by: str

    name = "reset"


@dataclass(frozen=True, slots=True)
class Silence:
    """Silence the sirens for the alarms open now (they stay open)."""

    by: str

    name = "silence"


Order = SoundSiren | UnlockDoor | Acknowledge | Reset | Silence
