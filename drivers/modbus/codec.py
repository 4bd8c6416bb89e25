"""Decode a point from the registers of a block read.

Decoding is pymodbus's ``convert_from_registers``; the one thing it lacks is a byte order
inside each register, so "BADC"/"DCBA" devices get each register swapped first (LIBRARIES P11).
"""

import math
import struct
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
        return _shortest_float32(value)
    return value


def _shortest_float32(value: float) -> float:
    """The shortest decimal that is still the same float32 (23.1, not 23.100000381469727).

    A fixed 7 digits would not do: it moves some values to a neighbouring float32 (e.g.
    1246207175294976.0 and subnormals), so ``encode`` would no longer invert ``decode``.
    """
    bits = struct.pack(">f", value)
    for digits in range(1, 10):  # 9 significant digits identify every float32
        short = float(f"{value:.{digits}g}")
        try:
            if struct.pack(">f", short) == bits:
                return short
        except OverflowError:  # rounded up past the largest float32
            continue
    return value


def encode(point: PointConfig, raw: int | float) -> list[int]:
    """The registers holding ``raw`` for ``point`` (the inverse of ``decode``)."""
    regs: list[int] = list(
        ModbusClientMixin.convert_to_registers(raw, _TYPES[point.type], point.word_order)
    )
    if point.byte_order == "little":
        regs = [((r & 0xFF) << 8) | (r >> 8) for r in regs]
    return regs
