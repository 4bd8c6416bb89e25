"""What the siren and strobe sound for: the worst unacknowledged, unsilenced alarm.

Contract: ``update(alarms)`` computes the highest severity among the open alarms that are
unacknowledged and not silenced, and calls ``outputs`` only when that changes (None once none
is left). ``silence(alarms)`` silences every alarm unacknowledged now; a new alarm sounds
again, and silenced ids are forgotten once their alarm is closed. Pure state, no I/O but the
``outputs`` callback; not kept across a restart.
"""

from collections.abc import Callable, Iterable

from gateway.alarms.model import UNACKED, Alarm

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


class Siren:
    """The severity sounding now and the alarms silenced."""

    def __init__(self, outputs: Callable[[str | None], None] | None) -> None:
        self.outputs = outputs
        self.sounding: str | None = None
        self._silenced: set[str] = set()  # alarm ids whose siren was silenced, unacknowledged

    def silence(self, alarms: Iterable[Alarm]) -> int:
        """Silence the alarms sounding now; how many there were."""
        listed = list(alarms)
        ids = {a.id for a in listed if a.state in UNACKED}
        self._silenced |= ids
        self.update(listed)
        return len(ids)

    def update(self, alarms: Iterable[Alarm]) -> None:
        """Sound for the open ``alarms`` (all of them, closed ones left out)."""
        listed = list(alarms)
        self._silenced &= {a.id for a in listed}  # forget alarms that are closed
        unacked = [a for a in listed if a.state in UNACKED and a.id not in self._silenced]
        top = max((a.severity for a in unacked), key=SEVERITY_RANK.__getitem__, default=None)
        if top != self.sounding:
            self.sounding = top
            if self.outputs is not None:
                self.outputs(top)
