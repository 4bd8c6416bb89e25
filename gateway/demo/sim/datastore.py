"""The pymodbus datastore of a simulated device, and where a simulator listens.

Contract: each device has four separate tables (coils FC1/5/15, discrete inputs FC2, holding
registers FC3/6/16, input registers FC4), built from its *enabled* points. Within a table every
address from the lowest mapped address to the highest answers; registers not covered by a point
read 0, so merged block reads across small gaps work. A request outside that span, or to a
table without points, is answered with exception 2 (ILLEGAL ADDRESS). Bit tables are stored 16
bits to a register, so their span is widened to whole 16-bit groups.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimAction, SimData, SimDevice

from gateway.config.modbus import PointConfig
from gateway.demo.sim.device import SimulatedDevice

# Function code the runtime datastore uses to address each table for our own updates, and every
# function code (Modbus spec §6) that reaches the table from the wire.
TABLE_FC: dict[str, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
_WIRE_FCS: dict[str, frozenset[int]] = {
    "coil": frozenset({1, 5, 15}),
    "discrete": frozenset({2}),
    "holding": frozenset({3, 6, 16, 22, 23}),
    "input": frozenset({4}),
}


@dataclass(frozen=True)
class Tcp:
    """Listen on ``host:port``: Modbus TCP, or RTU frames over TCP (``rtu``: what a serial
    server, an RS-485-to-Ethernet converter in transparent mode, carries)."""

    host: str
    port: int
    rtu: bool = False


@dataclass(frozen=True)
class Rtu:
    """Serve on the serial device ``port`` (Modbus RTU)."""

    port: str
    baudrate: int
    parity: Literal["N", "E", "O"]
    stopbits: int
    bytesize: int


def table_span(points: Iterable[PointConfig]) -> tuple[int, int] | None:
    """First and last address the points cover, or None."""
    cells = [(p.address, p.address + p.count - 1) for p in points]
    if not cells:
        return None
    return min(c[0] for c in cells), max(c[1] for c in cells)


def bit_span(span: tuple[int, int]) -> tuple[int, int]:
    """A bit span widened to whole 16-bit groups, as the datastore stores bits."""
    return span[0] - span[0] % 16, span[1] - span[1] % 16 + 15


def _refuse(function_codes: frozenset[int]) -> SimAction:
    """Datastore hook answering ILLEGAL ADDRESS to the function codes of empty tables."""

    async def action(
        function_code: int,
        _start_address: int,
        _address: int,
        _count: int,
        _registers: list[int],
        _values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        return ExcCodes.ILLEGAL_ADDRESS if function_code in function_codes else None

    return action


def sim_device(device: SimulatedDevice) -> SimDevice:
    """The pymodbus datastore of one device: four tables, each its points' span (see module doc)."""
    tables: dict[str, list[SimData]] = {}
    empty: set[int] = set()
    for table in ("coil", "discrete", "holding", "input"):
        span = table_span(p for p in device.active_points if p.table == table)
        bits = table in ("coil", "discrete")
        if span is None:
            empty |= _WIRE_FCS[table]
            # SimDevice needs an entry in every table; bit tables only take BITS entries, so
            # those placeholders are refused by the action hook instead.
            placeholder = (
                SimData(address=0, count=1, values=False, datatype=DataType.BITS)
                if bits
                else SimData(address=0, count=1, datatype=DataType.INVALID)
            )
            tables[table] = [placeholder]
        elif bits:
            tables[table] = [
                SimData(
                    address=span[0],
                    count=span[1] - span[0] + 1,
                    values=False,
                    datatype=DataType.BITS,
                )
            ]
        else:
            tables[table] = [
                SimData(
                    address=span[0],
                    count=span[1] - span[0] + 1,
                    values=0,
                    datatype=DataType.REGISTERS,
                )
            ]
    return SimDevice(
        id=device.unit_id,
        simdata=(tables["coil"], tables["discrete"], tables["holding"], tables["input"]),
        action=_refuse(frozenset(empty)) if empty else None,
    )


def free_port(host: str) -> int:
    """A TCP port free on ``host`` now (it may be taken before it is bound: retry then)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
