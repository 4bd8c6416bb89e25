"""The explicit map from a device's config ``kind`` to the code that builds it.

No entry points, no subclass discovery: adding a protocol means adding a line here.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.modbus.bus import Bus
from drivers.modbus.device import ModbusDevice
from gateway.clock import Clock
from gateway.config.models import Config
from gateway.poller import PollingDriver, Schedule


@dataclass
class DriverSet:
    """What the runtime runs: polled devices with their schedules, and buses to close."""

    polled: list[tuple[PollingDriver, Schedule]] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Release every connection and port."""
        for close in self.closers:
            close()


def build_modbus(cfg: Config, clock: Clock, out: DriverSet) -> None:
    """One ``Bus`` per configured bus, one ``ModbusDevice`` per modbus device."""
    buses = {b.id: Bus(b) for b in cfg.buses}
    out.closers += [b.close for b in buses.values()]
    for dev in cfg.devices:
        if dev.kind == "modbus":
            schedule = Schedule(dev.interval, dev.offline_after, dev.backoff_max)
            out.polled.append((ModbusDevice(dev, buses[dev.bus], clock), schedule))


BUILDERS: dict[str, Callable[[Config, Clock, DriverSet], None]] = {
    "modbus": build_modbus,
}


def build(cfg: Config, clock: Clock) -> DriverSet:
    """Every driver the config asks for."""
    out = DriverSet()
    for kind in sorted({d.kind for d in cfg.devices}):
        BUILDERS[kind](cfg, clock, out)
    return out
