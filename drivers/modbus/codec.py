"""Decode a point from the registers of a block read.

Decoding is pymodbus's ``convert_from_registers``; the one thing it lacks is a byte order
inside each register, so "BADC"/"DCBA" devices get each register swapped first (LIBRARIES P11).
"""

import math
from collections.abc import Sequence

from pymodbus.client.mixin import ModbusClientMixin

from gateway.config.modbus import PointConfig

_DT = ModbusClientMixin.DATATYPE
_TYPES = {
    "int16": _DT.INT16,
    "uint16": _DT.UINT16,
    "int32": _DT.INT32,
    "uint32": _DT.UINT32,
    "float32": _DT.FLOAT32,
}


def decode(point: PointConfig, registers: Sequence[int]) -> int | float:
    """The raw (unscaled) value of ``point`` from its own ``registers``."""
    regs = list(registers)
    if point.byte_order == "little":
        regs = [((r & 0xFF) << 8) | (r >> 8) for r in regs]
    value = ModbusClientMixin.convert_from_registers(regs, _TYPES[point.type], point.word_order)
    if not isinstance(value, int | float):
        raise TypeError(f"{point.name}: {point.type} decoded to {type(value).__name__}")
    if point.type == "float32" and math.isfinite(value):
        # a float32 holds ~7 significant digits; the rest of the double is conversion noise
        return float(f"{value:.7g}")
    return value


def encode(point: PointConfig, raw: int | float) -> list[int]:
    """The registers holding ``raw`` for ``point`` (the inverse of ``decode``)."""
    regs: list[int] = list(
        ModbusClientMixin.convert_to_registers(raw, _TYPES[point.type], point.word_order)
    )
    if point.byte_order == "little":
        regs = [((r & 0xFF) << 8) | (r >> 8) for r in regs]
    return regs
