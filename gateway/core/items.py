"""What drivers emit and pipeline stages pass on: the items of ``gateway.pipeline``.

They live in the core so that a driver can name them without importing the pipeline: a
driver only emits (``Item``); the composition root decides which stages see it.
"""

from collections.abc import Callable
from dataclasses import dataclass

from gateway.core.access import AccessEvent
from gateway.core.messages import ContactEvent, DeviceStatus, Sample, Value
from gateway.core.records import TerminalRecord


@dataclass(frozen=True, slots=True)
class RawSample:
    """All points of one device from one poll, as decoded: not yet scaled nor judged.

    ``values`` holds every enabled point in order; None where the point was not read.
    """

    device: str
    ts: float  # wall-clock seconds at the end of the poll
    values: tuple[tuple[str, Value | None], ...]


Item = RawSample | Sample | DeviceStatus | ContactEvent | AccessEvent | TerminalRecord
Stage = Callable[[Item], "Item | list[Item] | None"]
