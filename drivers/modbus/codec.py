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
FLOAT32_MIN_NORMAL = 1.1754943508222875e-38
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
    """A short decimal that is still the same float32 (23.1, not 23.100000381469727).

    For a normal float32 the spacing of 7-digit decimals is wider than the float's own, so
    if any decimal of 7 digits or fewer is the same float32, the 7-digit rounding is (``g``
    drops its trailing zeros: 23.1 stays 23.1). One try thus settles almost every value; 8
    and 9 digits follow for the rest (9 identify every float32, so ``encode`` still inverts
    ``decode``). Subnormals, whose spacing is coarser, try every length. This runs for every
    float32 point of every poll, so the common case must be a single format.
    """
    bits = struct.pack(">f", value)
    lengths = range(1, 10) if abs(value) < FLOAT32_MIN_NORMAL else (7, 8, 9)
    for digits in lengths:
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
