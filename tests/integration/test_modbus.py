"""The Modbus driver and the poller against a real pymodbus server, over TCP and RTU (socat)."""

import asyncio
import itertools
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from drivers.modbus.bus import Bus, ModbusTimeout
from drivers.modbus.device import ModbusDevice
from gateway.config.loader import BUILTIN_PROFILES, load_profile
from gateway.config.modbus import (
    ModbusDeviceConfig,
    ModbusRtuBusConfig,
    ModbusTcpBusConfig,
    PointConfig,
)
from gateway.core.clock import ManualClock, SystemClock
from gateway.core.devices import DeviceStates
from gateway.core.errors import TransientError
from gateway.core.items import Item
from gateway.core.messages import DeviceStatus, Quality, Sample
from gateway.demo.sim import SimulatedDevice, Simulator
from gateway.pipeline.stages import Scale
from gateway.runtime.poller import Poller, Schedule
from tests.support.lying_modbus import LyingServer
from tests.support.ports import free_port
from tests.support.socat import PtyPair


class Recording:
    """A pipeline stand-in that keeps what the poller emits and wakes waiters."""

    def __init__(self) -> None:
        self.samples: list[Item] = []
        self.statuses: list[DeviceStatus] = []
        self._changed = asyncio.Event()

    def __call__(self, item: Item) -> None:
        if isinstance(item, DeviceStatus):
            self.statuses.append(item)
        else:
            self.samples.append(item)
        self._changed.set()

    async def until(self, cond: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not cond():
                self._changed.clear()
                await self._changed.wait()


async def read(dev: ModbusDevice) -> Sample:
    """One poll, scaled by the pipeline's scale stage as the gateway does."""
    scale = Scale({dev.id: {p.name: p for p in dev.cfg.active_points}})
    sample = scale(await dev.poll())
    assert isinstance(sample, Sample)
    return sample


def tcp_bus(port: int, timeout: float = 0.2) -> Bus:
    return Bus(
        ModbusTcpBusConfig(
            kind="modbus_tcp", id="tcp", host="127.0.0.1", port=port, timeout=timeout, retries=0
        )
    )


def device(unit: int, points: list[PointConfig], **kw: object) -> ModbusDeviceConfig:
    return ModbusDeviceConfig.model_validate(
        {
            "kind": "modbus",
            "id": f"dev-{unit}",
            "bus": "b",
            "unit_id": unit,
            "points": [p.model_dump() for p in points],
            **kw,
        }
    )


def profile_points(name: str) -> list[PointConfig]:
    data = load_profile(BUILTIN_PROFILES / f"{name}.yaml")
    return [PointConfig.model_validate(p) for p in data["points"]]


async def test_every_shipped_profile_reads_back_what_the_sensor_holds() -> None:
    names = ["th-rs485", "pm-laser-rs485", "noise-rs485", "env-station-rs485"]
    sims = [SimulatedDevice(i + 1, profile_points(n)) for i, n in enumerate(names)]
    async with Simulator(sims, port=0, interval=None) as sim:
        bus = tcp_bus(sim.port)
        try:
            for sd in sims:
                dev = ModbusDevice(device(sd.unit_id, sd.points), bus, SystemClock())
                sample = await read(dev)
                got = {r.name: r for r in sample.readings}
                assert set(got) == {p.name for p in sd.points}
                for p in sd.points:
                    assert got[p.name].quality is Quality.GOOD
                    assert got[p.name].value == pytest.approx(
                        sim.value(sd.unit_id, p.name), rel=1e-6, abs=1e-6
                    )
        finally:
            bus.close()


async def test_illegal_address_disables_only_that_point_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = [PointConfig(name="a", address=0), PointConfig(name="b", address=1)]
    missing = PointConfig(name="ghost", address=2)  # the device does not map register 2
    async with Simulator([SimulatedDevice(1, good)], port=0, interval=None) as sim:
        await sim.set_value(1, "a", 7)
        await sim.set_value(1, "b", 9)
        bus = tcp_bus(sim.port)
        try:
            dev = ModbusDevice(device(1, [*good, missing]), bus, SystemClock())
            with caplog.at_level(logging.ERROR, logger="drivers.modbus.device"):
                first = await read(dev)
                second = await read(dev)
        finally:
            bus.close()
    for sample in (first, second):
        assert {r.name: r.value for r in sample.readings} == {"a": 7, "b": 9}
    assert set(dev.disabled) == {"ghost"}
    assert "0x02" in dev.disabled["ghost"]
    lines = [r for r in caplog.records if "ghost" in r.getMessage()]
    assert len(lines) == 1
    assert "disabled" in lines[0].getMessage()


async def test_device_goes_offline_once_and_comes_back() -> None:
    port = free_port()
    points = [PointConfig(name="a", address=0)]
    rec = Recording()
    states = DeviceStates()
    bus = tcp_bus(port, timeout=0.1)
    dev = ModbusDevice(device(1, points), bus, SystemClock())
    poller = Poller(
        dev, Schedule(interval=0.1, offline_after=3, backoff_max=0.4), rec, SystemClock(), states
    )
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(poller.run())
            async with Simulator([SimulatedDevice(1, points)], port=port, interval=None):
                await rec.until(lambda: len(rec.samples) >= 3)
            await rec.until(lambda: len(rec.statuses) >= 2)
            assert poller.failures >= 3
            async with Simulator([SimulatedDevice(1, points)], port=port, interval=None):
                await rec.until(lambda: len(rec.statuses) >= 3)
                n = len(rec.samples)
                await rec.until(lambda: len(rec.samples) >= n + 3)
            task.cancel()
    finally:
        bus.close()
    assert [(s.online, s.reason == "ok") for s in rec.statuses] == [
        (True, True),
        (False, False),
        (True, True),
    ]
    assert "connect" in rec.statuses[1].reason
    # the device's state counts what the poller counts (what the metrics show)
    counters = states.snapshot()["dev-1"].counters
    assert counters["polls"] == poller.polls
    assert counters["poll_failures"] == poller.failed_polls >= 3
    assert counters["latency_sum"] == pytest.approx(poller.latency_sum)
    assert counters["last_latency"] == poller.last_latency
    assert "connect" in states.snapshot()["dev-1"].last_error


async def test_rtu_over_a_pty_pair_reads_two_devices(pty_pair: PtyPair) -> None:
    th = profile_points("th-rs485")
    sims = [SimulatedDevice(1, th), SimulatedDevice(2, th)]
    async with Simulator.rtu(sims, port=str(pty_pair.a), baudrate=19200, interval=None) as sim:
        await sim.set_value(2, "temperature", -12.5)
        bus = Bus(
            ModbusRtuBusConfig(
                kind="modbus_rtu",
                id="rs485",
                port=str(pty_pair.b),
                baudrate=19200,
                timeout=0.3,
                retries=1,
                gap=0.005,
            )
        )
        try:
            one = await read(ModbusDevice(device(1, th), bus, SystemClock()))
            two = await read(ModbusDevice(device(2, th), bus, SystemClock()))
        finally:
            bus.close()
    assert {r.name for r in one.readings} == {"temperature", "humidity"}
    assert {r.name: r.value for r in two.readings}["temperature"] == -12.5


async def test_unknown_unit_counts_as_a_failed_poll() -> None:
    points = [PointConfig(name="a", address=0)]
    async with Simulator([SimulatedDevice(1, points)], port=0, interval=None) as sim:
        bus = tcp_bus(sim.port)
        try:
            with pytest.raises(TransientError, match="0x04"):
                await ModbusDevice(device(9, points), bus, SystemClock()).poll()
        finally:
            bus.close()


async def test_dead_device_does_not_stall_its_shared_rtu_bus(pty_pair: PtyPair) -> None:
    """Three sensors on one RS-485 line, one of them silent: the other two keep their rate."""
    th = profile_points("th-rs485")
    interval = 0.25
    sims = [SimulatedDevice(u, th) for u in (1, 2, 3)]
    async with Simulator.rtu(sims, port=str(pty_pair.a), baudrate=38400, interval=None) as sim:
        sim.silent.add(3)
        bus = Bus(
            ModbusRtuBusConfig(
                kind="modbus_rtu",
                id="rs485",
                port=str(pty_pair.b),
                baudrate=38400,
                timeout=0.2,
                retries=1,
                gap=0.005,
            )
        )
        rec = Recording()
        pollers = [
            Poller(
                ModbusDevice(device(u, th, interval=interval), bus, SystemClock()),
                Schedule(interval=interval, offline_after=2, backoff_max=4.0),
                rec,
                SystemClock(),
            )
            for u in (1, 2, 3)
        ]
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(p.run()) for p in pollers]
                await rec.until(lambda: any(not s.online for s in rec.statuses), timeout=10)
                loop = asyncio.get_running_loop()
                start = loop.time()
                counts = {
                    d: sum(1 for s in rec.samples if s.device == d) for d in ("dev-1", "dev-2")
                }
                await rec.until(
                    lambda: all(
                        sum(1 for s in rec.samples if s.device == d) >= counts[d] + 16
                        for d in counts
                    ),
                    timeout=10,
                )
                elapsed = loop.time() - start
                for t in tasks:
                    t.cancel()
        finally:
            bus.close()
    # 16 polls at 0.25 s take 4 s when nothing stalls; allow one dead-device timeout
    # (0.2 s x 2 attempts) per backoff slot on top, but far less than 16 stalls would cost.
    assert elapsed < 16 * interval + 1.5
    offline = [s for s in rec.statuses if not s.online]
    assert [s.device for s in offline] == ["dev-3"]
    assert "no answer from unit 3" in offline[0].reason
    assert pollers[2].polls < pollers[0].polls / 2  # backed off, not hammering the bus


# -- a server that lies on purpose (fault finding 10) -----------------------------------------


async def test_a_refused_point_is_retried_on_its_slow_schedule_and_comes_back() -> None:
    points = [PointConfig(name="a", address=0), PointConfig(name="b", address=5)]
    clock = ManualClock()
    async with LyingServer(registers={0: 7, 5: 9}, exceptions={5: 0x02}) as srv:
        bus = tcp_bus(srv.port)
        try:
            dev = ModbusDevice(device(1, points, disabled_retry=600), bus, clock)
            first = await read(dev)
            clock.advance(599)
            second = await read(dev)
            srv.exceptions.clear()  # the register map is fixed (or the device was replaced)
            clock.advance(1)
            third = await read(dev)
        finally:
            bus.close()
    assert {r.name: r.value for r in first.readings} == {"a": 7}
    assert {r.name: r.value for r in second.readings} == {"a": 7}
    assert {r.name: r.value for r in third.readings} == {"a": 7, "b": 9}
    assert [r.address for r in srv.requests if r.address == 5] == [5, 5]  # refused, then retried
    assert dev.disabled == {}
    assert dev.counters == {"exception_0x02": 1}


async def test_a_device_whose_every_point_is_refused_keeps_being_retried() -> None:
    clock = ManualClock()
    async with LyingServer(registers={3: 4}, exceptions={3: 0x02}) as srv:
        bus = tcp_bus(srv.port)
        try:
            dev = ModbusDevice(device(1, [PointConfig(name="only", address=3)]), bus, clock)
            with pytest.raises(TransientError, match="no readable point"):
                await dev.poll()  # a failed poll (offline after a few), not a stopped poller
            srv.exceptions.clear()
            clock.advance(dev.cfg.disabled_retry)
            sample = await read(dev)
        finally:
            bus.close()
    assert [(r.name, r.value, r.quality) for r in sample.readings] == [("only", 4, Quality.GOOD)]


@pytest.mark.parametrize("delta", [-1, 1], ids=["short", "long"])
async def test_an_answer_with_a_wrong_count_is_a_bad_frame_never_a_value(delta: int) -> None:
    points = [
        PointConfig(name="a", address=0),
        PointConfig(name="energy", address=10, type="uint32"),
        PointConfig(name="door", table="coil", address=20, type="bool"),
    ]
    async with LyingServer(registers={0: 7, 10: 0, 11: 0, 20: 1}, miscount={10: delta}) as srv:
        bus = tcp_bus(srv.port)
        try:
            dev = ModbusDevice(device(1, points), bus, SystemClock())
            sample = await read(dev)
            srv.miscount = {20: 8 * delta}  # a coil answer one byte short or long
            coils = await read(dev)
        finally:
            bus.close()
    got = {r.name: (r.value, r.quality) for r in sample.readings}
    assert got == {
        "a": (7, Quality.GOOD),
        "energy": (None, Quality.COMM_ERROR),
        "door": (True, Quality.GOOD),
    }
    assert {r.name: r.value for r in coils.readings} == {"a": 7, "energy": 0, "door": None}
    assert dev.counters == {"bad_frames": 2}


async def test_a_hung_neighbour_causes_no_catch_up_polls() -> None:
    interval = 0.3
    async with LyingServer(registers={0: 1}, silent={2}) as srv:
        bus = tcp_bus(srv.port, timeout=0.28)
        rec = Recording()

        def poller(unit: int, every: float) -> Poller:
            dev = ModbusDevice(device(unit, [PointConfig(name="a", address=0)]), bus, SystemClock())
            return Poller(dev, Schedule(every, 100, every), rec, SystemClock())

        # The hung neighbour holds the bus for a whole timeout just as unit 1 is due.
        tasks = [asyncio.create_task(poller(2, 60.0).run())]
        await srv.wait_requests(1)
        tasks.append(asyncio.create_task(poller(1, interval).run()))
        try:
            await srv.wait_for(lambda reqs: sum(r.unit == 1 for r in reqs) >= 4)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            bus.close()
    ones = [r.at for r in srv.requests if r.unit == 1]
    gaps = [b - a for a, b in itertools.pairwise(ones)]
    assert min(gaps) > interval / 2 - 0.05, gaps  # never a second poll right behind a late one


async def test_a_serial_port_that_will_not_open_says_its_path_and_errno(tmp_path: Path) -> None:
    absent = tmp_path / "ttyUSB9"
    bus = Bus(ModbusRtuBusConfig(kind="modbus_rtu", id="rs485-1", port=str(absent)))
    with pytest.raises(TransientError) as info:
        await bus.read("holding", 0, 1, 1)
    assert str(info.value) == (
        f"cannot connect to bus rs485-1 ({absent}): {absent}: No such file or directory (ENOENT)"
    )
    bus.close()


async def test_an_rs485_line_behind_a_serial_server_is_read_with_rtu_frames_over_tcp() -> None:
    """A serial server (RS-485 to Ethernet, transparent mode) carries RTU frames over TCP."""
    sims = [SimulatedDevice(u, profile_points("th-rs485")) for u in (1, 2)]
    async with Simulator(sims, port=0, interval=None, rtu_framer=True) as sim:
        await sim.set_value(2, "temperature", -10.1)

        def bus(kind: str) -> Bus:
            cfg = ModbusTcpBusConfig.model_validate(
                {"kind": kind, "id": "line-3", "host": "127.0.0.1", "port": sim.port,
                 "timeout": 0.3, "retries": 0}
            )  # fmt: skip
            return Bus(cfg)

        over_tcp = bus("modbus_rtu_over_tcp")
        assert over_tcp.cfg.gap == 0.02  # the serial line's pause, not TCP's none
        try:
            dev = ModbusDevice(device(2, profile_points("th-rs485")), over_tcp, SystemClock())
            got = {r.name: r.value for r in (await read(dev)).readings}
            assert got["temperature"] == -10.1
        finally:
            over_tcp.close()
        plain = bus("modbus_tcp")  # the same server spoken to in Modbus TCP: no answer
        try:
            with pytest.raises(ModbusTimeout):
                await plain.read("holding", 0, 2, 2)
        finally:
            plain.close()
