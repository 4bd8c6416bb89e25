"""``plan_blocks`` merges points into the fewest reads that respect the device's limits."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.blocks import MAX_BITS, Block, plan_blocks
from gateway.config.modbus import BIT_TABLES, PointConfig


def _pt(name: str, address: int, type_: str = "uint16", table: str = "holding") -> PointConfig:
    return PointConfig.model_validate(
        {"name": name, "address": address, "type": type_, "table": table}
    )


def _run(table: str, start: int, n: int, type_: str = "uint16") -> list[PointConfig]:
    """``n`` contiguous single-register (or single-bit) points from ``start``."""
    return [_pt(f"{table}{start + i}", start + i, type_, table) for i in range(n)]


def _spans(blocks: list[Block]) -> list[tuple[str, int, int]]:
    return [(b.table, b.address, b.count) for b in blocks]


def test_no_points_no_blocks() -> None:
    assert plan_blocks([], 125, 0) == []


def test_contiguous_registers_merge_into_one_read_in_address_order() -> None:
    a, b, c = _pt("a", 0), _pt("b", 1, "int16"), _pt("c", 2, "float32")
    d = _pt("d", 4, "uint32")
    blocks = plan_blocks([d, b, a, c], 125, 0)
    assert _spans(blocks) == [("holding", 0, 6)]
    assert blocks[0].points == (a, b, c, d)


def test_split_at_max_block_exactly() -> None:
    assert _spans(plan_blocks(_run("holding", 0, 125), 125, 0)) == [("holding", 0, 125)]
    blocks = plan_blocks(_run("holding", 0, 126), 125, 0)
    assert _spans(blocks) == [("holding", 0, 125), ("holding", 125, 1)]
    assert [p.address for p in blocks[1].points] == [125]
    small = plan_blocks(_run("input", 100, 20), 10, 0)
    assert _spans(small) == [("input", 100, 10), ("input", 110, 10)]


def test_holes_are_spanned_only_up_to_max_gap() -> None:
    points = [_pt("a", 0), _pt("b", 3)]  # a hole of 2 registers (1 and 2)
    assert _spans(plan_blocks(points, 125, 0)) == [("holding", 0, 1), ("holding", 3, 1)]
    assert _spans(plan_blocks(points, 125, 1)) == [("holding", 0, 1), ("holding", 3, 1)]
    assert _spans(plan_blocks(points, 125, 2)) == [("holding", 0, 4)]
    assert _spans(plan_blocks(points, 125, 100)) == [("holding", 0, 4)]


def test_a_hole_measures_from_the_end_of_a_32_bit_point() -> None:
    points = [_pt("f", 0, "float32"), _pt("u", 3)]  # f covers 0..1: the hole is register 2
    assert _spans(plan_blocks(points, 125, 0)) == [("holding", 0, 2), ("holding", 3, 1)]
    assert _spans(plan_blocks(points, 125, 1)) == [("holding", 0, 4)]


def test_spanning_a_hole_still_respects_max_block() -> None:
    points = [_pt("a", 0), _pt("b", 9)]
    assert _spans(plan_blocks(points, 10, 8)) == [("holding", 0, 10)]
    assert _spans(plan_blocks(points, 9, 8)) == [("holding", 0, 1), ("holding", 9, 1)]


def test_tables_are_kept_apart_and_ordered() -> None:
    points = [
        _pt("h", 0),
        _pt("i", 1, table="input"),
        _pt("c", 0, "bool", "coil"),
        _pt("d", 1, "bool", "discrete"),
        _pt("h2", 1),
    ]
    blocks = plan_blocks(points, 125, 100)
    assert _spans(blocks) == [
        ("coil", 0, 1),
        ("discrete", 1, 1),
        ("holding", 0, 2),
        ("input", 1, 1),
    ]
    assert [p.name for p in blocks[2].points] == ["h", "h2"]


def test_32_bit_points_are_never_split_at_a_block_edge() -> None:
    # 3 single registers then a float32 at 3..4: the float32 does not fit a 4-register read
    points = [*_run("holding", 0, 3), _pt("f", 3, "float32")]
    blocks = plan_blocks(points, 4, 0)
    assert _spans(blocks) == [("holding", 0, 3), ("holding", 3, 2)]
    assert [p.name for p in blocks[1].points] == ["f"]
    # two registers then a float32 fill a 4-register read exactly
    exact = [*_run("holding", 0, 2), _pt("f", 2, "float32")]
    assert _spans(plan_blocks(exact, 4, 0)) == [("holding", 0, 4)]
    # a run of int32 at the 125 limit: 62 fit (124 registers), the 63rd starts a new read
    longs = [_pt(f"l{i}", 2 * i, "int32") for i in range(63)]
    assert _spans(plan_blocks(longs, 125, 0)) == [("holding", 0, 124), ("holding", 124, 2)]


def test_coils_merge_up_to_2000_bits_whatever_max_block() -> None:
    assert MAX_BITS == 2000
    coils = _run("coil", 0, 2000, "bool")
    assert _spans(plan_blocks(coils, 125, 0)) == [("coil", 0, 2000)]
    more = _run("discrete", 10, 2001, "bool")
    blocks = plan_blocks(more, 1, 0)
    assert _spans(blocks) == [("discrete", 10, 2000), ("discrete", 2010, 1)]
    assert len(blocks[0].points) == 2000


# -- property -----------------------------------------------------------------------------------

_TYPES = {"holding": ["uint16", "int16", "int32", "uint32", "float32"], "coil": ["bool"]}
_TYPES["input"] = _TYPES["holding"]
_TYPES["discrete"] = _TYPES["coil"]


@st.composite
def _point_sets(draw: st.DrawFn) -> list[PointConfig]:
    """Non-overlapping points over all four tables, with random holes, in random order."""
    specs = draw(
        st.lists(
            st.tuples(
                st.sampled_from(sorted(_TYPES)),
                st.integers(0, 4),  # picks the type
                st.one_of(st.integers(0, 3), st.integers(0, 150)),  # hole before the point
            ),
            max_size=60,
        )
    )
    next_free = {table: draw(st.integers(0, 1000)) for table in _TYPES}
    points = []
    for i, (table, pick, hole) in enumerate(specs):
        types = _TYPES[table]
        point = _pt(f"p{i}", next_free[table] + hole, types[pick % len(types)], table)
        next_free[table] = point.address + point.count
        points.append(point)
    return draw(st.permutations(points))


@settings(max_examples=300, deadline=None)
@given(
    points=_point_sets(),
    max_block=st.integers(2, 125),  # the config ensures every point fits (32-bit: 2)
    max_gap=st.one_of(st.just(0), st.integers(0, 100)),
)
def test_plan_covers_every_point_once_within_limits(
    points: list[PointConfig], max_block: int, max_gap: int
) -> None:
    blocks = plan_blocks(points, max_block, max_gap)
    for p in points:
        end = p.address + p.count
        holders = [
            b
            for b in blocks
            if b.table == p.table and b.address <= p.address < end <= b.address + b.count
        ]
        assert len(holders) == 1, (p, blocks)
        assert p in holders[0].points
    assert sorted(q.name for b in blocks for q in b.points) == sorted(p.name for p in points)
    for b in blocks:
        limit = MAX_BITS if b.table in BIT_TABLES else max_block
        assert 1 <= b.count <= limit
        members = sorted(b.points, key=lambda q: q.address)
        assert all(q.table == b.table for q in members)
        # a block starts at its first point and ends with its last: no padding either side
        assert members[0].address == b.address
        assert members[-1].address + members[-1].count == b.address + b.count
        for prev, nxt in pairwise(members):
            assert nxt.address - (prev.address + prev.count) <= max_gap
    # greedy and fewest: the first point of a block could not have joined the block before it
    for before, after in pairwise(blocks):
        if before.table != after.table:
            continue
        first = min(after.points, key=lambda q: q.address)
        limit = MAX_BITS if after.table in BIT_TABLES else max_block
        gap = first.address - (before.address + before.count)
        assert gap > max_gap or first.address + first.count - before.address > limit
