"""One Modbus device: ``poll()`` reads all its points in merged blocks, returns a RawSample.

The values are decoded, not scaled: the pipeline's scale stage does that, from the same
point configs. A point not read this time is in the sample as None.

Contract:
- No answer (timeout, lost connection) raises ``TransientError``; the poller counts it toward
  "offline" and backs off. The bus is never held longer than one request at a time.
- ILLEGAL FUNCTION / ADDRESS / VALUE on a block: its points are read one by one to find the
  culprit, which is disabled with one log line; the others stay as single reads from then on.
  A device left with no readable point raises ``PermanentError`` (its poller stops).
- BUSY / ACKNOWLEDGE: the device is alive; the block's values are missing this time
  (``comm_error``, never 0) and the next poll tries again.
- SERVER DEVICE FAILURE, GATEWAY PATH UNAVAILABLE, GATEWAY TARGET FAILED TO RESPOND (and any
  other code): the poll failed like a timeout; it counts toward "offline".
"""

import logging

from drivers.modbus.blocks import Block, plan_blocks
from drivers.modbus.bus import BUSY_CODES, CONFIG_CODES, Bus, ModbusErrorResponse
from drivers.modbus.codec import decode
from gateway.config.modbus import ModbusDeviceConfig, PointConfig
from gateway.core.clock import Clock
from gateway.core.errors import PermanentError, TransientError
from gateway.core.items import RawSample
from gateway.core.messages import Value

log = logging.getLogger(__name__)


class ModbusDevice:
    """A polled Modbus device on a shared ``Bus``."""

    def __init__(self, cfg: ModbusDeviceConfig, bus: Bus, clock: Clock) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.bus = bus
        self.clock = clock
        self.points = cfg.active_points
        self.disabled: dict[str, str] = {}  # point -> why it is read no more
        self.blocks = plan_blocks(self.points, cfg.max_block, cfg.max_gap)
        self.errors: dict[int, int] = {}  # exception code -> count, for status and metrics

    async def __aenter__(self) -> "ModbusDevice":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None  # the bus owns the connection and outlives its devices

    async def poll(self) -> RawSample:
        """Read every enabled point once."""
        values: dict[str, Value | None] = {}
        for block in list(self.blocks):
            try:
                self._store(block, await self._read(block), values)
            except ModbusErrorResponse as exc:
                self.errors[exc.code] = self.errors.get(exc.code, 0) + 1
                if exc.code in CONFIG_CODES:
                    await self._split(block, exc.code, values)
                elif exc.code not in BUSY_CODES:
                    raise TransientError(
                        f"unit {self.cfg.unit_id} answers exception {exc.code:#04x}"
                    ) from exc
        if not self.blocks:
            raise PermanentError(f"device {self.id}: no readable point left")
        raw = tuple(
            (p.name, values.get(p.name)) for p in self.points if p.name not in self.disabled
        )
        return RawSample(self.id, self.clock.wall(), raw)

    async def _read(self, block: Block) -> list[int]:
        regs = await self.bus.read(block.table, block.address, block.count, self.cfg.unit_id)
        return list(regs)

    def _store(self, block: Block, regs: list[int], values: dict[str, Value | None]) -> None:
        for p in block.points:
            offset = p.address - block.address
            own = regs[offset : offset + p.count]
            values[p.name] = bool(own[0]) if p.type == "bool" else decode(p, own)

    async def _split(self, block: Block, code: int, values: dict[str, Value | None]) -> None:
        """Find which points of a refused block are unreadable; keep the rest as single reads."""
        survivors: list[Block] = []
        if len(block.points) == 1:
            self._disable(block.points[0], code)
        else:
            for p in block.points:
                single = Block(block.table, p.address, p.count, (p,))
                try:
                    self._store(single, await self._read(single), values)
                except ModbusErrorResponse as exc:
                    if exc.code in CONFIG_CODES:
                        self._disable(p, exc.code)
                        continue
                survivors.append(single)
        at = self.blocks.index(block)
        self.blocks[at : at + 1] = survivors

    def _disable(self, point: PointConfig, code: int) -> None:
        self.disabled[point.name] = f"exception {code:#04x} at {point.table} {point.address}"
        log.error(
            "device %s: point %r (%s %d) disabled: the device answers exception %#04x; "
            "check the register map",
            self.id,
            point.name,
            point.table,
            point.address,
            code,
            extra={"device": self.id, "point": point.name},
        )
