"""Commissioning a Modbus bus: which unit ids answer, what each may be, and one read now.

Contract:
- ``scan`` only reads. It asks each unit id with one read of holding register 0 (function
  03). Any answer means a device is there, an exception response included, except GATEWAY
  PATH UNAVAILABLE (0x0A) and GATEWAY TARGET FAILED TO RESPOND (0x0B), which a Modbus TCP
  gateway sends for a device that is not behind it (Modbus Application Protocol v1.1b3 §7).
  A unit that answers then gets the reads the profiles' probes need, each register run once,
  and its ranked profile guesses (``drivers.modbus.probe``). Nothing is ever written.
- Every request goes through ``Bus.read``, and so through the bus's lock: a scan or a read on
  the bus of a running daemon interleaves with its polling one request at a time.
- Scan requests wait ``within`` seconds for the answer and are not retried: an absent unit
  costs the bus that long (plus its ``gap``). A unit slower than that is missed; scan it alone
  with a longer wait. After ``budget`` seconds no further unit id is asked; the report says which
  were. ``ModbusUnavailable`` (the port or endpoint cannot be opened) ends a scan.
- ``read_once`` reads a configured device's points in the blocks a poll would read, with the
  bus's own timeout and retries, and touches no poller's state. A block refused as
  misaddressed (0x01-0x03) is read again point by point, so every readable point shows; each
  read request is one ``BlockRead`` with its raw registers beside the decoded values.
"""

import asyncio
from collections.abc import Sequence

from drivers.modbus import probe
from drivers.modbus.blocks import Block, plan_blocks, single
from drivers.modbus.bus import CONFIG_CODES, Bus, ModbusBadFrame, ModbusErrorResponse, ModbusTimeout
from drivers.modbus.device import store
from gateway.config.modbus import ModbusDeviceConfig, ProfileConfig
from gateway.core.clock import Clock
from gateway.core.commission import SCAN_TIMEOUT, BlockRead, Found, ScanReport
from gateway.core.items import RawSample
from gateway.core.messages import Value

ABSENT_CODES = frozenset({0x0A, 0x0B})  # a TCP gateway's answer for a device not behind it
PRESENCE: probe.Read = ("holding", 0, 1)  # what every unit is asked first


async def scan(
    bus: Bus,
    units: Sequence[int],
    profiles: Sequence[ProfileConfig],
    *,
    within: float = SCAN_TIMEOUT,
    budget: float | None = None,
) -> ScanReport:
    """Ask each of ``units`` whether it answers, and guess what each one that does is."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    probed = [p for p in profiles if p.probe]
    needed = probe.reads(probed)
    asked: list[int] = []
    found: list[Found] = []
    for unit in units:
        if budget is not None and loop.time() - started >= budget:
            break
        asked.append(unit)
        answer, registers = await _ask(bus, PRESENCE, unit, within)
        if not answer:
            continue
        answers: dict[probe.Read, Sequence[int] | None] = {PRESENCE: registers}
        for read in needed:
            if read not in answers:
                answers[read] = (await _ask(bus, read, unit, within))[1]
        guesses = probe.rank(probe.guess(p, unit, answers) for p in probed)
        found.append(Found(unit, answer, guesses))
    seconds = loop.time() - started
    return ScanReport(bus.cfg.id, tuple(asked), len(units), tuple(found), seconds, within)


async def _ask(
    bus: Bus, read: probe.Read, unit: int, within: float
) -> tuple[str, Sequence[int] | None]:
    """What ``unit`` answered (``""``: nothing, or nothing of its own) and its registers."""
    table, address, count = read
    try:
        return "registers", await bus.read(table, address, count, unit, within=within)
    except ModbusTimeout:
        return "", None
    except ModbusErrorResponse as exc:
        return ("" if exc.code in ABSENT_CODES else f"exception {exc.code:#04x}"), None
    except ModbusBadFrame:
        return "a malformed answer", None


async def read_once(
    bus: Bus, cfg: ModbusDeviceConfig, clock: Clock
) -> tuple[RawSample, tuple[BlockRead, ...]]:
    """One read of every enabled point of ``cfg`` now: the decoded values (None where not
    read) and every request's raw registers."""
    values: dict[str, Value | None] = {}
    reads: list[BlockRead] = []
    for block in plan_blocks(cfg.active_points, cfg.max_block, cfg.max_gap):
        done, code = await _read(bus, block, cfg.unit_id, values)
        reads.append(done)
        if code in CONFIG_CODES and len(block.points) > 1:
            for p in block.points:
                reads.append((await _read(bus, single(p), cfg.unit_id, values))[0])
    sample = RawSample(
        cfg.id, clock.wall(), tuple((p.name, values.get(p.name)) for p in cfg.active_points)
    )
    return sample, tuple(reads)


async def _read(
    bus: Bus, block: Block, unit: int, values: dict[str, Value | None]
) -> tuple[BlockRead, int | None]:
    """One block: what it returned, and the exception code if the device refused it."""
    names = tuple(p.name for p in block.points)
    where = (block.table, block.address, block.count, names)
    try:
        registers = list(await bus.read(block.table, block.address, block.count, unit))
    except ModbusTimeout:
        return BlockRead(*where, None, "no answer"), None
    except ModbusErrorResponse as exc:
        return BlockRead(*where, None, f"exception {exc.code:#04x}"), exc.code
    except ModbusBadFrame as exc:
        return BlockRead(*where, None, str(exc)), None
    store(block, registers, values)
    return BlockRead(*where, tuple(registers)), None
