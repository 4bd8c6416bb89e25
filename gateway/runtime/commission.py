"""The ``Commissioner`` port over Modbus buses: a running daemon's, or ones ``cgw`` opens.

Contract:
- ``ModbusCommissioner`` implements ``gateway.ops.device_api.Commissioner``: ``scan`` a
  configured bus, ``read`` a configured Modbus device now (``drivers.modbus.commission``).
- In the daemon (``running`` given) a scan or read goes through the bus its driver group runs,
  whose lock its polling holds request by request, so the two never collide. A configured
  bus no device names has no group: it is opened for the call and closed after. A bus whose
  group is not running (restarting after a failure or a reload) is a ``TransientError``:
  opening the port a second time would collide with the group that is about to.
- Standalone (``running`` None: ``cgw scan``/``cgw read`` with no daemon), each call opens its
  bus and closes it after.
- The config is read at each call (``config()``), so a reload applies at once; so are the
  profiles, from the config's profile folders, then the shipped ones.
- A read's values are scaled and judged as the pipeline does (``to_reading``: quality ``bad``
  outside the point's range), but a read on demand never enters the pipeline: it is no
  telemetry, and it changes no device state.
"""

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from drivers.base import DriverGroup
from drivers.modbus.bus import Bus
from drivers.modbus.commission import read_once, scan
from drivers.modbus.device import ModbusDevice
from gateway.config.loader import BUILTIN_PROFILES, modbus_profiles, profile_dirs
from gateway.config.modbus import ModbusDeviceConfig
from gateway.config.models import Config
from gateway.core.clock import Clock, SystemClock
from gateway.core.commission import DeviceRead, NotFound, NotReadable, ScanReport
from gateway.core.errors import TransientError
from gateway.pipeline.scale import to_reading

RunningBus = Callable[[str], Bus | None]  # the bus a running driver group holds, by bus id


def running_bus(groups: Iterable[DriverGroup], bus_id: str) -> Bus | None:
    """The ``Bus`` the running group of ``bus_id`` polls through, if it runs."""
    for group in groups:
        for device, _ in group.polled:
            if isinstance(device, ModbusDevice) and device.bus.cfg.id == bus_id:
                return device.bus
    return None


class ModbusCommissioner:
    """Scans and reads on demand, over the buses of ``config()``."""

    def __init__(
        self,
        config: Callable[[], Config],
        base_dir: Path | None,
        running: RunningBus | None = None,
        clock: Clock | None = None,
    ) -> None:
        """``base_dir``: the config file's folder (profile folders are relative to it);
        ``running``: the running buses, None when no daemon runs (standalone)."""
        self.config = config
        self.base_dir = base_dir
        self.running = running
        self.clock = clock or SystemClock()

    async def scan(
        self, bus: str, units: Sequence[int], within: float, budget: float
    ) -> ScanReport:
        """Which of ``units`` answer on ``bus``, and what each may be."""
        cfg = self.config()
        dirs = (
            profile_dirs(cfg.profile_dirs, self.base_dir)
            if self.base_dir is not None
            else [*cfg.profile_dirs, BUILTIN_PROFILES]
        )
        async with self._bus(cfg, bus) as line:
            return await scan(line, units, modbus_profiles(dirs), within=within, budget=budget)

    async def read(self, device: str) -> DeviceRead:
        """One read of ``device`` now: scaled, judged values and the raw registers."""
        cfg = self.config()
        dev = next((d for d in cfg.devices if d.id == device), None)
        if dev is None:
            raise NotFound(f"no device {device!r} is configured")
        if not isinstance(dev, ModbusDeviceConfig):
            raise NotReadable(f"device {device!r} is a {dev.kind} device; only Modbus devices"
                              " are read on demand")  # fmt: skip
        async with self._bus(cfg, dev.bus) as line:
            raw, blocks = await read_once(line, dev, self.clock)
        points = {p.name: p for p in dev.active_points}
        readings = tuple(to_reading(points[name], value) for name, value in raw.values)
        return DeviceRead(dev.id, dev.bus, dev.unit_id, raw.ts, readings, blocks)

    @asynccontextmanager
    async def _bus(self, cfg: Config, bus_id: str) -> AsyncIterator[Bus]:
        bus_cfg = next((b for b in cfg.buses if b.id == bus_id), None)
        if bus_cfg is None:
            raise NotFound(f"no bus {bus_id!r} is configured")
        if self.running is not None:
            line = self.running(bus_id)
            if line is not None:
                yield line
                return
            if any(isinstance(d, ModbusDeviceConfig) and d.bus == bus_id for d in cfg.devices):
                raise TransientError(f"bus {bus_id} is restarting; try again in a few seconds")
        own = Bus(bus_cfg)
        try:
            yield own
        finally:
            own.close()
