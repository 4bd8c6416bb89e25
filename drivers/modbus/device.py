"""One Modbus device: ``poll()`` reads all its points in merged blocks, returns a RawSample.

The values are decoded, not scaled: the pipeline's scale stage does that, from the same
point configs. A point not read this time is in the sample as None.

Contract:
- No answer (timeout, lost connection) raises ``TransientError``; the poller counts it toward
  "offline" and backs off. The bus is never held longer than one request at a time.
- ILLEGAL FUNCTION / ADDRESS / VALUE on a block: its points are read one by one to find the
  culprit, which is disabled with one log line (``disabled`` says why); the others stay as
  single reads from then on. A disabled point is tried again every ``disabled_retry`` seconds
  (monotonic), one single read at the start of a poll; when the device answers it, the point
  is enabled again (one INFO line). A device left with no readable point raises
  ``TransientError`` (it counts toward "offline" and keeps being retried), never stops.
- BUSY / ACKNOWLEDGE: the device is alive; the block's values are missing this time
  (``comm_error``, never 0) and the next poll tries again.
- SERVER DEVICE FAILURE, GATEWAY PATH UNAVAILABLE, GATEWAY TARGET FAILED TO RESPOND (and any
  other code): the poll failed like a timeout; it counts toward "offline".
- A malformed answer (``ModbusBadFrame``: a register or bit count that disagrees with the
  request) is never a value: the block's points are missing this time and ``counters``
  ``bad_frames`` goes up by one.
- ``counters`` are running totals (``bad_frames``, ``exception_<code>``) the poller turns into
  device counters.
"""

import logging

from drivers.modbus.blocks import Block, plan_blocks, single
from drivers.modbus.bus import BUSY_CODES, CONFIG_CODES, Bus, ModbusBadFrame, ModbusErrorResponse
from drivers.modbus.codec import decode
from gateway.config.modbus import ModbusDeviceConfig, PointConfig
from gateway.core.clock import Clock
from gateway.core.errors import TransientError
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
        self._retry_at: dict[str, float] = {}  # disabled point -> monotonic time of its retry
        self.blocks = plan_blocks(self.points, cfg.max_block, cfg.max_gap)
        self.counters: dict[str, int] = {}  # running totals, for status and metrics

    async def __aenter__(self) -> "ModbusDevice":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None  # the bus owns the connection and outlives its devices

    async def poll(self) -> RawSample:
        """Read every enabled point once (and the disabled ones that are due a retry)."""
        values: dict[str, Value | None] = {}
        blocks = list(self.blocks)  # a point enabled again by the retry is read by it alone
        if self.disabled:  # a coroutine per poll for nothing costs more than the check
            await self._retry_disabled(values)
        for block in blocks:
            try:
                store(block, await self._read(block), values)
            except ModbusBadFrame as exc:
                self._counted("bad_frames")
                log.debug("device %s: %s", self.id, exc, extra={"device": self.id})
            except ModbusErrorResponse as exc:
                self._counted(f"exception_{exc.code:#04x}")
                if exc.code in CONFIG_CODES:
                    await self._split(block, exc.code, values)
                elif exc.code not in BUSY_CODES:
                    raise TransientError(
                        f"unit {self.cfg.unit_id} answers exception {exc.code:#04x}"
                    ) from exc
        if not self.blocks:
            raise TransientError(
                f"no readable point: all {len(self.disabled)} disabled, "
                f"retried every {self.cfg.disabled_retry:g} s"
            )
        raw = tuple(
            (p.name, values.get(p.name)) for p in self.points if p.name not in self.disabled
        )
        return RawSample(self.id, self.clock.wall(), raw)

    def _counted(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    async def _read(self, block: Block) -> list[int]:
        regs = await self.bus.read(block.table, block.address, block.count, self.cfg.unit_id)
        return list(regs)

    async def _split(self, block: Block, code: int, values: dict[str, Value | None]) -> None:
        """Find which points of a refused block are unreadable; keep the rest as single reads."""
        survivors: list[Block] = []
        if len(block.points) == 1:
            self._disable(block.points[0], code)
        else:
            for p in block.points:
                alone = single(p)
                try:
                    store(alone, await self._read(alone), values)
                except ModbusBadFrame:
                    self._counted("bad_frames")
                except ModbusErrorResponse as exc:
                    if exc.code in CONFIG_CODES:
                        self._disable(p, exc.code)
                        continue
                survivors.append(alone)
        at = self.blocks.index(block)
        self.blocks[at : at + 1] = survivors

    async def _retry_disabled(self, values: dict[str, Value | None]) -> None:
        now = self.clock.mono()
        for p in self.points:
            if p.name not in self.disabled or self._retry_at[p.name] > now:
                continue
            alone = single(p)
            try:
                regs = await self._read(alone)
            except (ModbusErrorResponse, ModbusBadFrame):
                self._retry_at[p.name] = now + self.cfg.disabled_retry
                continue
            store(alone, regs, values)
            del self.disabled[p.name], self._retry_at[p.name]
            self.blocks.append(alone)
            log.info(
                "device %s: point %r (%s %d) answers again; enabled",
                self.id,
                p.name,
                p.table,
                p.address,
                extra={"device": self.id, "point": p.name},
            )

    def _disable(self, point: PointConfig, code: int) -> None:
        self.disabled[point.name] = f"exception {code:#04x} at {point.table} {point.address}"
        self._retry_at[point.name] = self.clock.mono() + self.cfg.disabled_retry
        log.error(
            "device %s: point %r (%s %d) disabled: the device answers exception %#04x; "
            "check the register map (tried again every %g s)",
            self.id,
            point.name,
            point.table,
            point.address,
            code,
            self.cfg.disabled_retry,
            extra={"device": self.id, "point": point.name},
        )


def store(block: Block, regs: list[int], values: dict[str, Value | None]) -> None:
    """Decode each point of ``block`` from the registers (or bits) the read returned."""
    for p in block.points:
        offset = p.address - block.address
        own = regs[offset : offset + p.count]
        values[p.name] = bool(own[0]) if p.type == "bool" else decode(p, own)
