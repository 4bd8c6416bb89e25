"""``decode``/``encode`` agree with the measured pymodbus vectors and invert each other."""

from __future__ import annotations

import itertools
import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.codec import decode, encode
from gateway.config.modbus import REGISTER_COUNT, PointConfig

ORDERS = ("big", "little")
NUMERIC = ("int16", "uint16", "int32", "uint32", "float32")
COMBOS = list(itertools.product(NUMERIC, ORDERS, ORDERS))
_INT_RANGE = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}


def _pt(type_: str, word_order: str = "big", byte_order: str = "big") -> PointConfig:
    return PointConfig.model_validate(
        {
            "name": "v",
            "address": 0,
            "type": type_,
            "word_order": word_order,
            "byte_order": byte_order,
        }
    )


def _swap(reg: int) -> int:
    return ((reg & 0xFF) << 8) | (reg >> 8)


def _f32_bits(x: float) -> bytes:
    return struct.pack(">f", x)


# -- known vectors (LIBRARIES.md §2.2, measured against pymodbus 3.16) ---------------------------


@pytest.mark.parametrize(
    ("type_", "value", "registers"),
    [
        pytest.param("float32", 230.5, [17254, 32768], id="float32-230.5"),
        pytest.param("uint32", 123456, [1, 57920], id="uint32-123456"),
        pytest.param("float32", -12.5, [49480, 0], id="float32-minus-12.5"),
        pytest.param("int16", -101, [0xFF9B], id="int16-minus-101"),
        pytest.param("uint16", 658, [0x0292], id="uint16-658"),
        pytest.param("int32", -2, [0xFFFF, 0xFFFE], id="int32-minus-2"),
    ],
)
def test_known_vectors_big_word_order(type_: str, value: float, registers: list[int]) -> None:
    point = _pt(type_)
    assert encode(point, value) == registers
    decoded = decode(point, registers)
    assert decoded == value
    assert isinstance(decoded, float if type_ == "float32" else int)


def test_uint32_read_in_little_word_order_swaps_the_words() -> None:
    assert decode(_pt("uint32", word_order="little"), [1, 57920]) == 3795845121
    assert encode(_pt("uint32", word_order="little"), 123456) == [57920, 1]


@pytest.mark.parametrize(
    ("word_order", "byte_order", "registers"),
    [
        pytest.param("big", "big", [0x4366, 0x8000], id="ABCD"),
        pytest.param("little", "big", [0x8000, 0x4366], id="CDAB"),
        pytest.param("big", "little", [0x6643, 0x0080], id="BADC"),
        pytest.param("little", "little", [0x0080, 0x6643], id="DCBA"),
    ],
)
def test_float32_230_5_in_every_register_layout(
    word_order: str, byte_order: str, registers: list[int]
) -> None:
    point = _pt("float32", word_order, byte_order)
    assert encode(point, 230.5) == registers
    assert decode(point, registers) == 230.5


def test_byte_order_swaps_inside_16_bit_registers() -> None:
    assert encode(_pt("uint16", byte_order="little"), 0x1234) == [0x3412]
    assert decode(_pt("int16", byte_order="little"), [0x9BFF]) == -101
    # word order means nothing for a single register
    assert encode(_pt("uint16", word_order="little"), 0x1234) == [0x1234]


@pytest.mark.parametrize("value", [23.1, 0.1, -40.7, 1013.25, 65.8, 3.4028235e38, 1e-45])
def test_float32_decodes_to_the_shortest_decimal_of_the_same_float32(value: float) -> None:
    point = _pt("float32")
    registers = encode(point, value)  # 23.1 is stored as 23.100000381469727
    assert decode(point, registers) == value


@pytest.mark.parametrize(
    "registers",
    [
        pytest.param([0x588D, 0xAD67], id="needs-9-digits"),  # 1246207175294976.0
        pytest.param([0x006D, 0x0000], id="subnormal"),
        pytest.param([0x7F7F, 0xFFFF], id="largest"),
        pytest.param([0x8000, 0x0000], id="minus-zero"),
    ],
)
def test_float32_decoding_never_moves_to_a_neighbouring_float32(registers: list[int]) -> None:
    point = _pt("float32")
    value = decode(point, registers)
    assert encode(point, value) == registers
    raw = struct.unpack(">f", struct.pack(">HH", *registers))[0]
    assert _f32_bits(value) == _f32_bits(raw)


def test_float32_nan_and_infinity_decode_as_such() -> None:
    point = _pt("float32")
    assert math.isnan(decode(point, [0x7FC0, 0x0000]))
    assert decode(point, [0x7F80, 0x0000]) == math.inf
    assert decode(point, [0xFF80, 0x0000]) == -math.inf


# -- round trips --------------------------------------------------------------------------------


def _values(type_: str) -> st.SearchStrategy[float]:
    if type_ == "float32":
        return st.floats(width=32, allow_nan=False)
    low, high = _INT_RANGE[type_]
    return st.integers(low, high)


@pytest.mark.parametrize(("type_", "word_order", "byte_order"), COMBOS)
@given(data=st.data())
def test_value_round_trips_through_registers(
    type_: str, word_order: str, byte_order: str, data: st.DataObject
) -> None:
    point = _pt(type_, word_order, byte_order)
    value = data.draw(_values(type_), label="value")
    regs = encode(point, value)
    assert len(regs) == REGISTER_COUNT[type_]
    assert all(0 <= r <= 0xFFFF for r in regs)
    back = decode(point, regs)
    if type_ == "float32":
        assert isinstance(back, float)
        assert _f32_bits(back) == _f32_bits(value)  # bit for bit: keeps -0.0 and infinities
    else:
        assert isinstance(back, int)
        assert back == value


@pytest.mark.parametrize(("type_", "word_order", "byte_order"), COMBOS)
@given(data=st.data())
def test_registers_round_trip_through_value(
    type_: str, word_order: str, byte_order: str, data: st.DataObject
) -> None:
    point = _pt(type_, word_order, byte_order)
    regs = data.draw(
        st.lists(st.integers(0, 0xFFFF), min_size=point.count, max_size=point.count),
        label="registers",
    )
    value = decode(point, regs)
    if isinstance(value, float) and math.isnan(value):
        return  # NaN payloads need not survive; to_reading turns NaN into a missing value
    assert encode(point, value) == regs


@pytest.mark.parametrize("type_", ["int32", "uint32", "float32"])
@given(data=st.data())
def test_orders_are_plain_permutations_of_the_big_endian_registers(
    type_: str, data: st.DataObject
) -> None:
    value = data.draw(_values(type_), label="value")
    hi, lo = encode(_pt(type_), value)
    assert encode(_pt(type_, "little", "big"), value) == [lo, hi]
    assert encode(_pt(type_, "big", "little"), value) == [_swap(hi), _swap(lo)]
    assert encode(_pt(type_, "little", "little"), value) == [_swap(lo), _swap(hi)]
