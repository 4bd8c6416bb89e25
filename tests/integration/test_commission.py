"""Scanning a bus and reading a device now, against real pymodbus servers over RTU and TCP."""

import asyncio
import itertools

from pymodbus.client import AsyncModbusTcpClient

from drivers.modbus.bus import Bus
from drivers.modbus.commission import read_once, scan
from gateway.config.loader import BUILTIN_PROFILES, modbus_profiles
from gateway.config.modbus import ModbusDeviceConfig, ModbusRtuBusConfig, ModbusTcpBusConfig
from gateway.core.clock import SystemClock
from gateway.core.commission import BlockRead
from gateway.demo.sim import Simulator
from tests.support.lying_modbus import LyingServer
from tests.support.sensors import LAYOUT, only_they_answer, sensors
from tests.support.socat import PtyPair

PROFILES = modbus_profiles([BUILTIN_PROFILES])
WITHIN = 0.1


def tcp(port: int) -> Bus:
    return Bus(ModbusTcpBusConfig(kind="modbus_tcp", id="tcp-1", host="127.0.0.1", port=port))


def device(unit: int, profile: str, device_id: str) -> ModbusDeviceConfig:
    """A device as the loader merges it from ``profile``."""
    (found,) = [p for p in PROFILES if p.name == profile]
    return ModbusDeviceConfig(
        kind="modbus",
        id=device_id,
        bus="b",
        unit_id=unit,
        profile=profile,
        points=found.points,
        max_block=found.max_block or 125,
        max_gap=found.max_gap or 0,
    )


async def test_a_scan_of_an_rtu_line_finds_exactly_the_units_there_and_what_they_are(
    pty_pair: PtyPair,
) -> None:
    async with Simulator.rtu(sensors(), str(pty_pair.a), 19200, interval=None) as sim:
        only_they_answer(sim)
        cfg = ModbusRtuBusConfig(kind="modbus_rtu", id="rs485-1", port=str(pty_pair.b),
                                 baudrate=19200, timeout=0.5, retries=1)  # fmt: skip
        bus = Bus(cfg)
        try:
            report = await scan(bus, range(1, 16), PROFILES, within=WITHIN)
        finally:
            bus.close()
    assert {f.unit: f.profile for f in report.found} == LAYOUT
    assert report.complete
    assert report.asked == tuple(range(1, 16))
    by_unit = {f.unit: f for f in report.found}
    assert by_unit[12].answer == "exception 0x02"  # the station has no holding registers
    assert by_unit[2].answer == "registers"
    assert [g.profile for g in by_unit[2].guesses] == ["th-rs485", "noise-rs485"]
    # 11 silent ids cost the scan's wait each, not the bus's 0.5 s x 2 attempts
    assert report.seconds < 11 * (WITHIN + cfg.gap) + 3.0


async def test_a_scan_of_a_tcp_bus_finds_the_same_and_stops_when_its_time_is_up() -> None:
    async with Simulator(sensors(), port=0, interval=None) as sim:
        only_they_answer(sim)
        bus = tcp(sim.port)
        try:
            report = await scan(bus, range(1, 16), PROFILES, within=WITHIN)
            cut = await scan(bus, range(1, 248), PROFILES, within=WITHIN, budget=0.5)
        finally:
            bus.close()
    assert {f.unit: f.profile for f in report.found} == LAYOUT
    assert not cut.complete
    assert 2 < len(cut.asked) < 30
    assert cut.asked == tuple(range(1, len(cut.asked) + 1))


async def test_a_gateways_answer_for_a_missing_device_is_no_device_but_a_refusal_is() -> None:
    async with LyingServer(exceptions={0: 0x0B}) as srv:  # GATEWAY TARGET FAILED TO RESPOND
        bus = tcp(srv.port)
        try:
            assert (await scan(bus, range(1, 6), PROFILES)).found == ()
            srv.exceptions = {0: 0x02}  # ILLEGAL DATA ADDRESS: someone is there
            found = (await scan(bus, range(1, 6), PROFILES)).found
        finally:
            bus.close()
    assert [(f.unit, f.answer) for f in found] == [(u, "exception 0x02") for u in range(1, 6)]


async def test_a_scan_never_writes() -> None:
    th = {0: 550, 1: 220}  # 55.0 %RH, 22.0 degC
    async with LyingServer(registers=th, silent=set(range(1, 248)) - {4, 7}) as srv:
        bus = tcp(srv.port)
        try:
            report = await scan(bus, range(1, 11), PROFILES, within=WITHIN)
        finally:
            bus.close()
        assert [(f.unit, f.profile) for f in report.found] == [(4, "th-rs485"), (7, "th-rs485")]
        assert {r.function for r in srv.requests} <= {1, 2, 3, 4}  # reads only
        assert {r.unit for r in srv.requests} == set(range(1, 11))
        # the server records writes too: the check above would see one
        client = AsyncModbusTcpClient("127.0.0.1", port=srv.port, timeout=1, retries=0)
        await client.connect()
        try:
            await client.write_register(0, 1, device_id=4)
        finally:
            client.close()
        assert srv.requests[-1].function == 6


async def test_read_once_keeps_the_raw_registers_beside_the_values_of_crossed_sensors() -> None:
    # the two sensors' unit ids are swapped: humidity 25.0 %RH sits where the noise sensor
    # was configured, 105.0 dB(A) where the humidity sensor was
    crossed = sensors({2: "th-rs485", 3: "noise-rs485"},
                      {2: {"humidity": 25.0}, 3: {"noise": 105.0}})  # fmt: skip
    async with Simulator(crossed, port=0, interval=None) as sim:
        bus = tcp(sim.port)
        try:
            noise, noise_blocks = await read_once(
                bus, device(2, "noise-rs485", "noise-1"), SystemClock()
            )
            th, th_blocks = await read_once(bus, device(3, "th-rs485", "th-1"), SystemClock())
        finally:
            bus.close()
    assert noise.values == (("noise", 250),)  # decoded, not scaled: the pipeline scales
    assert noise_blocks == (BlockRead("holding", 0, 1, ("noise",), (250,)),)
    assert dict(th.values) == {"humidity": 1050, "temperature": None}
    assert th_blocks == (
        BlockRead("holding", 0, 2, ("humidity", "temperature"), None, "exception 0x02"),
        BlockRead("holding", 0, 1, ("humidity",), (1050,)),
        BlockRead("holding", 1, 1, ("temperature",), None, "exception 0x02"),
    )


async def test_a_scan_and_polling_take_turns_on_the_bus_request_by_request() -> None:
    th = {0: 550, 1: 220}
    async with LyingServer(registers=th, silent=set(range(1, 248)) - {4}) as srv:
        cfg = ModbusTcpBusConfig(kind="modbus_tcp", id="tcp-1", host="127.0.0.1", port=srv.port,
                                 gap=0.03)  # fmt: skip
        bus = Bus(cfg)
        try:
            scanning = asyncio.create_task(scan(bus, range(1, 9), PROFILES, within=WITHIN))
            reads = 0
            while not scanning.done():  # a poll gets its turn between two scan requests
                sample, _ = await asyncio.wait_for(
                    read_once(bus, device(4, "th-rs485", "th-1"), SystemClock()), 1.0
                )
                assert dict(sample.values) == {"humidity": 550, "temperature": 220}
                reads += 1
            report = await scanning
        finally:
            bus.close()
    assert reads > 3
    assert [f.unit for f in report.found] == [4]
    # one lock and one pace for both: never two requests closer than the bus's gap
    starts = [r.at for r in srv.requests]
    assert min(b - a for a, b in itertools.pairwise(starts)) >= cfg.gap * 0.9
