"""The Modbus simulator against the real pymodbus clients, over TCP and over a socat pty (RTU).

Values are decoded here independently of the simulator, the way the LIBRARIES.md recipes do:
``convert_from_registers`` with the point's word order, each register byte-swapped first for
``byte_order: little`` (P11), then ``raw * scale + offset``.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import pytest_asyncio
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.pdu import ModbusPDU

from gateway.config.loader import BUILTIN_PROFILES
from gateway.config.modbus import PointConfig
from gateway.core.errors import ConfigError
from gateway.demo.sim import SimulatedDevice, Simulator, decode_registers
from tests.support.ports import free_port
from tests.support.socat import PtyPair

PROFILES = sorted(BUILTIN_PROFILES.glob("*.yaml"))
Client = AsyncModbusTcpClient | AsyncModbusSerialClient
DT = AsyncModbusTcpClient.DATATYPE
CODEC = {
    "int16": DT.INT16,
    "uint16": DT.UINT16,
    "int32": DT.INT32,
    "uint32": DT.UINT32,
    "float32": DT.FLOAT32,
}


def profile_devices() -> list[SimulatedDevice]:
    """Every shipped profile as one device, unit ids 1, 2, ... in file-name order."""
    return [SimulatedDevice.from_profile(i + 1, path) for i, path in enumerate(PROFILES)]


async def read_pdu(client: Client, table: str, address: int, count: int, unit: int) -> ModbusPDU:
    if table == "holding":
        return await client.read_holding_registers(address, count=count, device_id=unit)
    if table == "input":
        return await client.read_input_registers(address, count=count, device_id=unit)
    if table == "coil":
        return await client.read_coils(address, count=count, device_id=unit)
    return await client.read_discrete_inputs(address, count=count, device_id=unit)


def decode(point: PointConfig, registers: Sequence[int]) -> float:
    regs = list(registers)
    if point.byte_order == "little":
        regs = [((r & 0xFF) << 8) | (r >> 8) for r in regs]
    raw = AsyncModbusTcpClient.convert_from_registers(
        regs, CODEC[point.type], word_order=point.word_order
    )
    assert isinstance(raw, int | float)
    return raw * point.scale + point.offset


async def read_point(client: Client, point: PointConfig, unit: int) -> float:
    rr = await read_pdu(client, point.table, point.address, point.count, unit)
    assert not rr.isError(), f"unit {unit} {point.name}: {rr}"
    if point.type == "bool":
        return 1.0 if rr.bits[0] else 0.0
    return decode(point, rr.registers)


def in_range(point: PointConfig, value: float) -> bool:
    assert point.range is not None
    low, high = point.range
    return low <= value <= high


def target(point: PointConfig, fraction: float) -> float:
    """A value ``fraction`` into the point's range, exactly representable for integer types."""
    assert point.range is not None
    low, high = point.range
    value = low + fraction * (high - low)
    if point.type == "float32":
        return value
    raw = round((value - point.offset) / point.scale)
    return raw * point.scale + point.offset


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Simulator]:
    """Every profile on a free loopback port, no ticks (values change only when a test says)."""
    async with Simulator(profile_devices(), "127.0.0.1", free_port(), interval=None) as s:
        yield s


async def connect(sim: Simulator) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient(sim.host, port=sim.port, timeout=0.5, retries=0)
    assert await client.connect()
    return client


@pytest_asyncio.fixture
async def client(sim: Simulator) -> AsyncIterator[AsyncModbusTcpClient]:
    c = await connect(sim)
    try:
        yield c
    finally:
        c.close()


def test_profiles_ship() -> None:
    assert len(PROFILES) >= 3


async def test_initial_values_are_inside_range(sim: Simulator, client: Client) -> None:
    for dev in sim.devices.values():
        for p in dev.active_points:
            value = await read_point(client, p, dev.unit_id)
            assert in_range(p, value), f"{p.name} = {value}"
            assert value == pytest.approx(sim.value(dev.unit_id, p.name))


@pytest.mark.parametrize("fraction", [0.0, 0.37, 0.5, 1.0])
async def test_read_back_what_set_value_set(
    sim: Simulator, client: Client, fraction: float
) -> None:
    for dev in sim.devices.values():
        for p in dev.active_points:
            value = target(p, fraction)
            assert await sim.set_value(dev.unit_id, p.name, value) == pytest.approx(value)
        for p in dev.active_points:
            got = await read_point(client, p, dev.unit_id)
            assert got == pytest.approx(target(p, fraction), rel=1e-6, abs=1e-9), p.name


async def test_drift_stays_inside_range_and_moves() -> None:
    devices = profile_devices()
    async with Simulator(devices, "127.0.0.1", free_port(), interval=0.01, seed=7) as sim:
        client = await connect(sim)
        try:
            seen: dict[tuple[int, str], set[float]] = {}
            for _ in range(15):
                for dev in devices:
                    for p in dev.active_points:
                        value = await read_point(client, p, dev.unit_id)
                        assert in_range(p, value), f"{dev.unit_id} {p.name} = {value}"
                        seen.setdefault((dev.unit_id, p.name), set()).add(value)
                await asyncio.sleep(0.02)
        finally:
            client.close()
        assert sim.ticks > 10
    assert all(len(values) > 1 for values in seen.values()), "every point drifts"


async def test_long_drift_stays_inside_range(sim: Simulator, client: Client) -> None:
    for step in range(1, 601):
        await sim.tick()
        for dev in sim.devices.values():
            for p in dev.active_points:
                assert in_range(p, sim.value(dev.unit_id, p.name)), f"tick {step}: {p.name}"
        if step % 200 == 0:
            for dev in sim.devices.values():
                for p in dev.active_points:
                    value = await read_point(client, p, dev.unit_id)
                    assert value == pytest.approx(sim.value(dev.unit_id, p.name))


async def test_drift_pinned_at_the_edges_stays_inside() -> None:
    # the walk returns towards its start value; starting on an edge makes it reflect constantly
    edges = [
        ("u16-low", "uint16", 0.1, 0.0, (0.0, 10.0), 0.0),
        ("u16-high", "uint16", 0.1, 0.0, (0.0, 10.0), 10.0),
        ("i16-neg", "int16", 0.1, 0.0, (-40.0, 80.0), -40.0),
        ("odd-scale", "uint16", 0.3, 1.0, (2.0, 5.0), 5.0),  # edges between two raw steps
        ("f32-high", "float32", 1.0, 0.0, (0.0, 0.3), 0.3),  # 0.3 is not a float32
        ("f32-low", "float32", 0.1, -2.0, (-1.0, 1.1), -1.0),
    ]
    points = [
        PointConfig(name=name, address=i * 2, type=type_, scale=scale, offset=offset, range=bounds)
        for i, (name, type_, scale, offset, bounds, _) in enumerate(edges)
    ]
    initial = {name: start for name, *_, start in edges}
    dev = SimulatedDevice(4, points, initial=initial)
    async with Simulator([dev], port=0, interval=None, seed=3) as sim:
        client = await connect(sim)
        try:
            for _ in range(300):
                await sim.tick()
                for p in points:
                    assert in_range(p, await read_point(client, p, 4)), p.name
        finally:
            client.close()


def test_initial_value_must_be_inside_range() -> None:
    point = PointConfig(name="t", address=0, type="int16", scale=0.1, range=(-40, 80))
    with pytest.raises(ValueError, match="outside"):
        SimulatedDevice(1, [point], initial={"t": 99})


async def test_held_value_survives_ticks_until_released(sim: Simulator, client: Client) -> None:
    pm = next(d for d in sim.devices.values() if any(p.name == "pm25" for p in d.points))
    point = next(p for p in pm.points if p.name == "pm25")
    await sim.set_value(pm.unit_id, "pm25", 987)
    for _ in range(20):
        await sim.tick()
    assert await read_point(client, point, pm.unit_id) == 987
    sim.release(pm.unit_id, "pm25")
    for _ in range(20):
        await sim.tick()
    assert sim.value(pm.unit_id, "pm25") != 987


async def test_block_read_spans_gaps_with_zeros(sim: Simulator, client: Client) -> None:
    for dev in sim.devices.values():
        for table in ("holding", "input"):
            points = [p for p in dev.active_points if p.table == table]
            if not points:
                continue
            first = min(p.address for p in points)
            last = max(p.address + p.count - 1 for p in points)
            rr = await read_pdu(client, table, first, last - first + 1, dev.unit_id)
            assert not rr.isError(), rr
            mapped: set[int] = set()
            for p in points:
                start = p.address - first
                regs = rr.registers[start : start + p.count]
                assert decode(p, regs) == pytest.approx(sim.value(dev.unit_id, p.name))
                mapped.update(range(p.address, p.address + p.count))
            gaps = [rr.registers[a - first] for a in range(first, last + 1) if a not in mapped]
            assert gaps == [0] * len(gaps)


async def test_env_station_has_a_reserved_gap(sim: Simulator, client: Client) -> None:
    unit = 1 + [p.stem for p in PROFILES].index("env-station-rs485")
    rr = await client.read_input_registers(0, count=18, device_id=unit)
    assert not rr.isError(), rr
    assert rr.registers[14:16] == [0, 0]


async def test_outside_the_span_is_illegal_address(sim: Simulator, client: Client) -> None:
    unit = 1 + [p.stem for p in PROFILES].index("th-rs485")  # holding 0..1 only
    for table, address, count in [
        ("holding", 100, 1),  # far away
        ("holding", 1, 2),  # starts inside, runs past the end
        ("input", 0, 1),  # a table without points
        ("coil", 0, 1),
        ("discrete", 0, 1),
    ]:
        rr = await read_pdu(client, table, address, count, unit)
        assert rr.isError(), (table, address, count)
        assert rr.exception_code == ExcCodes.ILLEGAL_ADDRESS


async def test_unknown_unit_gets_device_failure(sim: Simulator, client: Client) -> None:
    # LIBRARIES.md P9: pymodbus 3.16 answers unknown units instead of staying silent
    rr = await client.read_holding_registers(0, count=1, device_id=200)
    assert rr.isError()
    assert rr.exception_code == ExcCodes.DEVICE_FAILURE


def _encodings() -> list[PointConfig]:
    points: list[PointConfig] = []
    address = 10
    for type_ in ("int16", "uint16", "int32", "uint32", "float32"):
        for words in ("big", "little"):
            for byte_order in ("big", "little"):
                points.append(
                    PointConfig.model_validate(
                        {
                            "name": f"{type_}-{words}-{byte_order}",
                            "table": "holding" if type_ != "float32" else "input",
                            "address": address,
                            "type": type_,
                            "word_order": words,
                            "byte_order": byte_order,
                            "scale": 0.5,
                            "offset": -3,
                        }
                    )
                )
                address += 2  # 16-bit points leave a one-register gap
    points.append(PointConfig(name="door", table="discrete", address=3, type="bool"))
    points.append(PointConfig(name="relay", table="coil", address=17, type="bool"))
    return points


async def test_every_type_and_order_round_trips() -> None:
    values = {"int16": -1234.5, "uint16": 32000.0, "int32": -100000.5, "uint32": 2e9}
    values["float32"] = 230.5
    points = _encodings()
    async with Simulator([SimulatedDevice(9, points)], port=0, interval=None) as sim:
        client = await connect(sim)
        try:
            for p in points:
                value = 1.0 if p.type == "bool" else values[p.type]
                await sim.set_value(9, p.name, value)
                assert await read_point(client, p, 9) == pytest.approx(value, rel=1e-7)
                if p.type == "bool":
                    await sim.set_value(9, p.name, 0)
                    assert await read_point(client, p, 9) == 0.0
        finally:
            client.close()


async def test_raw_registers_match_the_measured_encodings() -> None:
    # LIBRARIES.md §2.2 / P11: 230.5 as FLOAT32 is [17254, 32768] high word first
    points = [p for p in _encodings() if p.type == "float32"]
    expected = {
        ("big", "big"): [17254, 32768],  # ABCD
        ("little", "big"): [32768, 17254],  # CDAB
        ("big", "little"): [0x6643, 0x0080],  # BADC
        ("little", "little"): [0x0080, 0x6643],  # DCBA
    }
    async with Simulator([SimulatedDevice(3, points)], port=0, interval=None) as sim:
        client = await connect(sim)
        try:
            for p in points:
                await sim.set_value(3, p.name, 230.5 * p.scale + p.offset)
                rr = await client.read_input_registers(p.address, count=2, device_id=3)
                assert rr.registers == expected[(p.word_order, p.byte_order)], p.name
        finally:
            client.close()


async def test_value_function_drives_a_counter(sim: Simulator) -> None:
    point = PointConfig(name="seq", address=0, type="uint32")
    dev = SimulatedDevice(5, [point], functions={"seq": lambda tick: 1000 + tick})
    async with Simulator([dev], port=0, interval=None) as counter:
        client = await connect(counter)
        try:
            assert await read_point(client, point, 5) == 1000
            for _ in range(3):
                await counter.tick()
            assert await read_point(client, point, 5) == 1003
            assert counter.value(5, "seq") == 1003
        finally:
            client.close()


async def test_set_raw_writes_registers_and_holds(sim: Simulator, client: Client) -> None:
    unit = 1 + [p.stem for p in PROFILES].index("th-rs485")
    await sim.set_raw(unit, "holding", 0, [0x0292, 0xFF9B])  # the header's example reply
    await sim.tick()
    assert sim.held(unit, "temperature")
    assert sim.value(unit, "humidity") == pytest.approx(65.8)
    rr = await client.read_holding_registers(0, count=2, device_id=unit)
    assert rr.registers == [0x0292, 0xFF9B]
    with pytest.raises(ValueError, match="outside the span"):
        await sim.set_raw(unit, "holding", 1, [0, 0])


async def test_unencodable_values_and_unknown_points_raise(sim: Simulator) -> None:
    unit = 1 + [p.stem for p in PROFILES].index("pm-laser-rs485")
    with pytest.raises(ValueError, match="outside uint16"):
        await sim.set_value(unit, "pm25", -5)
    with pytest.raises(KeyError):
        await sim.set_value(unit, "nope", 1)
    nan = await sim.set_value(
        1 + [p.stem for p in PROFILES].index("env-station-rs485"), "pm25", math.nan
    )
    assert math.isnan(nan)  # a float32 sensor may report NaN; the simulator can play it


async def test_failing_value_function_surfaces_at_stop() -> None:
    def broken(tick: int) -> float:
        if tick:
            raise ZeroDivisionError("sensor model bug")
        return 0.0

    dev = SimulatedDevice(1, [PointConfig(name="x", address=0)], functions={"x": broken})
    with pytest.raises(ZeroDivisionError):
        async with Simulator([dev], port=0, interval=0.01):
            await asyncio.sleep(0.1)


async def test_rtu_over_a_pty_pair(pty_pair: PtyPair) -> None:
    devices = profile_devices()
    async with Simulator.rtu(devices, str(pty_pair.a), baudrate=9600, interval=None) as sim:
        client = AsyncModbusSerialClient(
            str(pty_pair.b), framer=FramerType.RTU, baudrate=9600, timeout=0.5, retries=0
        )
        assert await client.connect()
        try:
            for dev in devices:
                for p in dev.active_points:
                    value = target(p, 0.25)
                    await sim.set_value(dev.unit_id, p.name, value)
                    got = await read_point(client, p, dev.unit_id)
                    assert got == pytest.approx(value, rel=1e-6, abs=1e-9), p.name
        finally:
            client.close()


def test_decode_registers_is_the_inverse_used_here() -> None:
    for p in _encodings():
        if p.type != "bool":
            assert decode_registers(p, [0x1234, 0x5678][: p.count]) == decode(
                p, [0x1234, 0x5678][: p.count]
            )


def test_bad_devices_are_refused() -> None:
    with pytest.raises(ValueError, match="1-247"):
        SimulatedDevice(0, [])
    a = PointConfig(name="a", address=0, type="uint32")
    b = PointConfig(name="b", address=1)
    with pytest.raises(ValueError, match="overlaps"):
        SimulatedDevice(1, [a, b])
    with pytest.raises(ValueError, match="used by two devices"):
        Simulator([SimulatedDevice(1, [a]), SimulatedDevice(1, [b])])


def test_from_profile_checks_the_profile(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("name: y\npoints: []\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        SimulatedDevice.from_profile(1, bad)


async def test_busy_port_and_stopped_simulator_are_clear_errors() -> None:
    dev = SimulatedDevice(1, [PointConfig(name="x", address=0)])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        sim = Simulator([dev], port=busy.getsockname()[1], interval=None)
        with pytest.raises(RuntimeError, match="cannot listen on 127"):
            await sim.start()
    assert not sim.running
    with pytest.raises(RuntimeError, match="not running"):
        await sim.set_value(1, "x", 1)
    await sim.stop()  # idempotent
