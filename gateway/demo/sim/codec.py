"""Register codec of the simulated devices: the inverse of the gateway's decoding.

Contract: ``value = raw * scale + offset``, so ``raw = (value - offset) / scale``, rounded for
integer types, packed big-endian with the point's ``word_order``, then each register
byte-swapped when ``byte_order`` is ``little`` (LIBRARIES.md P11). A value that does not fit
the type raises ``ValueError``. Bool points are single coils or discrete inputs.
``decode_registers(p, encode_value(p, v))`` is ``v`` to the point's resolution.
"""

import math
from collections.abc import Iterable, Sequence

from pymodbus.client.mixin import ModbusClientMixin

from gateway.config.modbus import PointConfig

_DATATYPE = ModbusClientMixin.DATATYPE
_CODEC: dict[str, ModbusClientMixin.DATATYPE] = {
    "int16": _DATATYPE.INT16,
    "uint16": _DATATYPE.UINT16,
    "int32": _DATATYPE.INT32,
    "uint32": _DATATYPE.UINT32,
    "float32": _DATATYPE.FLOAT32,
}
INT_LIMITS: dict[str, tuple[int, int]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38


def _swap_bytes(registers: Iterable[int]) -> list[int]:
    return [((r & 0xFF) << 8) | (r >> 8) for r in registers]


def encode_value(point: PointConfig, value: float) -> list[int] | list[bool]:
    """Registers (or one bit) a device holds for the scaled ``value`` of ``point``.

    Raises:
        ValueError: the value does not fit the point's type.
    """
    if point.type == "bool":
        return [bool(value)]
    raw = (float(value) - point.offset) / point.scale
    packed: int | float
    if point.type == "float32":
        if math.isfinite(raw) and abs(raw) > _FLOAT32_MAX:
            raise ValueError(f"{point.name}: {value} does not fit float32")
        packed = raw
    else:
        if not math.isfinite(raw):
            raise ValueError(f"{point.name}: {value} has no {point.type} encoding")
        packed = round(raw)
        low, high = INT_LIMITS[point.type]
        if not low <= packed <= high:
            raise ValueError(
                f"{point.name}: {value} is raw {packed}, outside {point.type} ({low}..{high})"
            )
    registers = ModbusClientMixin.convert_to_registers(
        packed, _CODEC[point.type], word_order=point.word_order
    )
    return _swap_bytes(registers) if point.byte_order == "little" else registers


def decode_registers(point: PointConfig, registers: Sequence[int] | Sequence[bool]) -> float:
    """Scaled value of ``point`` from its registers (or bit): the inverse of :func:`encode_value`.

    Bool points decode to ``1.0`` or ``0.0``.
    """
    if point.type == "bool":
        return 1.0 if registers[0] else 0.0
    words = [int(r) for r in registers]
    if point.byte_order == "little":
        words = _swap_bytes(words)
    raw = ModbusClientMixin.convert_from_registers(
        words, _CODEC[point.type], word_order=point.word_order
    )
    assert isinstance(raw, int | float)  # scalar types only in _CODEC
    return raw * point.scale + point.offset
