"""What commissioning finds on a bus and reads from a device: frozen values every layer shares.

A scan asks each unit id of a bus whether it answers and guesses, from the probe registers of
the profiles, what each answering unit is; a read polls one configured device now and keeps
the raw registers of each block beside the values. The Modbus driver fills these types
(``drivers.modbus.commission``), the composition root scales the readings, and the local API
and ``cgw`` render them (``gateway.ops.device_view``).

Contract:
- A ``Guess`` is a profile whose probe no answered register contradicts and at least one
  matched; ``Found.guesses`` is ranked best first, and empty (``UNKNOWN``) when none fits.
- A ``ScanReport`` names every unit it asked; fewer than ``wanted`` when its time ran out.
- ``BlockRead.registers`` is None when the block was not read, and ``error`` says why.
- ``NotFound`` (no such bus or device) and ``NotReadable`` (a device that cannot be read on
  demand) are the port's refusals; a bus that cannot be opened is a ``TransientError``.
- ``parse_units`` reads the unit ids an installer types (``1-247``, ``3``, ``1-5,9``).
"""

from dataclasses import dataclass

from gateway.core.errors import GatewayError
from gateway.core.messages import Reading

UNKNOWN = "unknown"  # the profile of a unit no probe fits
ALL_UNITS = "1-247"  # every unit id a Modbus device may have
SCAN_TIMEOUT = 0.1  # seconds a unit has to answer a scan; the bus's own timeout is longer
MAX_SCAN_TIMEOUT = 2.0


def parse_units(text: str) -> tuple[int, ...]:
    """``"1-5,9"`` -> ``(1, 2, 3, 4, 5, 9)``: ids 1-247, ascending, each once.

    Raises:
        ValueError: the message says what is wrong, for the installer.
    """
    units: set[int] = set()
    for part in text.replace(" ", "").split(","):
        first, dash, last = part.partition("-")
        try:
            low, high = int(first), int(last if dash else first)
        except ValueError:
            raise ValueError(f"{part!r} is not a unit id or a range like 1-247") from None
        if not 1 <= low <= high <= 247:
            raise ValueError(f"{part!r}: unit ids run from 1 to 247, low to high")
        units.update(range(low, high + 1))
    return tuple(sorted(units))


class NotFound(GatewayError):
    """No bus or device of that id is configured."""


class NotReadable(GatewayError):
    """The device exists but cannot be read on demand (not a Modbus device)."""


@dataclass(frozen=True, slots=True)
class Guess:
    """How well one profile's probe fits what a unit answered."""

    profile: str
    score: int  # the evidence: see ``drivers.modbus.probe``
    matched: int  # checks that matched
    checks: int  # checks in the probe
    unanswered: int  # checks whose register the unit refused or did not answer


@dataclass(frozen=True, slots=True)
class Found:
    """A unit id that answered a scan, and what it may be."""

    unit: int
    answer: str  # what it answered first: "registers", or "exception 0x02" and the like
    guesses: tuple[Guess, ...]  # best first

    @property
    def profile(self) -> str:
        """The best guess, or ``UNKNOWN``."""
        return self.guesses[0].profile if self.guesses else UNKNOWN


@dataclass(frozen=True, slots=True)
class ScanReport:
    """One scan of one bus."""

    bus: str
    asked: tuple[int, ...]  # unit ids asked, in order
    wanted: int  # unit ids the scan was to ask
    found: tuple[Found, ...]
    seconds: float
    timeout: float  # seconds each unit had to answer

    @property
    def complete(self) -> bool:
        """Every unit id wanted was asked (the time limit did not cut the scan short)."""
        return len(self.asked) == self.wanted


@dataclass(frozen=True, slots=True)
class BlockRead:
    """One read request of a device read on demand, and the registers it returned."""

    table: str
    address: int
    count: int
    points: tuple[str, ...]  # the points decoded from it
    registers: tuple[int, ...] | None  # as received (bits as 0/1); None when not read
    error: str = ""  # why it was not read: "no answer", "exception 0x02", a bad frame


@dataclass(frozen=True, slots=True)
class DeviceRead:
    """One poll of a configured device, done on demand: values and raw registers."""

    device: str
    bus: str
    unit: int
    ts: float  # wall-clock seconds at the end of the read
    readings: tuple[Reading, ...]
    blocks: tuple[BlockRead, ...]
