"""Merge a device's points into block reads (pure).

Modbus reads whole runs of registers: 125 registers per FC3/FC4 request, 2000 bits per
FC1/FC2 (Modbus Application Protocol v1.1b3 §6.1-6.4). One request per run instead of one per
point is the largest single saving on a slow RS-485 line. Many sensors answer ILLEGAL DATA
ADDRESS when a read touches an unmapped register, so runs only span holes up to ``max_gap``.
"""

from dataclasses import dataclass

from gateway.config.modbus import BIT_TABLES, PointConfig

MAX_BITS = 2000


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: ``count`` registers (or bits) from ``address`` in ``table``."""

    table: str
    address: int
    count: int
    points: tuple[PointConfig, ...]


def plan_blocks(points: list[PointConfig], max_block: int, max_gap: int) -> list[Block]:
    """Group points into the fewest reads that respect ``max_block`` and ``max_gap``.

    Points are sorted by table and address; a point joins the current block when it starts at
    most ``max_gap`` registers after the block's end and the block stays within ``max_block``
    (``MAX_BITS`` for coil and discrete tables). Points never overlap (the config checks).
    """
    blocks: list[Block] = []
    for table in ("coil", "discrete", "holding", "input"):
        limit = MAX_BITS if table in BIT_TABLES else max_block
        current: list[PointConfig] = []
        start = end = 0  # end is exclusive
        for p in sorted((p for p in points if p.table == table), key=lambda p: p.address):
            p_end = p.address + p.count
            if current and p.address - end <= max_gap and p_end - start <= limit:
                current.append(p)
                end = max(end, p_end)
                continue
            if current:
                blocks.append(Block(table, start, end - start, tuple(current)))
            current, start, end = [p], p.address, p_end
        if current:
            blocks.append(Block(table, start, end - start, tuple(current)))
    return blocks


def single(point: PointConfig) -> Block:
    """The read of ``point`` alone (to find which point of a refused block is unreadable)."""
    return Block(point.table, point.address, point.count, (point,))
