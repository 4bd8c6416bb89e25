"""In-process Modbus server of simulated devices: TCP or RTU, ticks, and test controls.

Contract:
- ``async with Simulator(...)`` writes every point's initial value (the server never serves the
  zeros of an empty datastore), starts listening and the tick task before the body runs, and
  always shuts the server down afterwards. An exception raised by a value function stops the
  ticks and is re-raised by ``stop``. ``port=0`` picks a free port at each start.
- Every ``interval`` seconds (a *tick*) each point that is not held gets its next value
  (``device.PointState``). A 32-bit value is written in one datastore update, so a client
  never reads half of an old and half of a new value.
- ``set_value`` writes a value at once and, by default, holds it until ``release``;
  ``set_raw`` writes raw registers and holds the points they touch. Client writes to mapped
  holding registers and coils are accepted; drifting points overwrite them on the next tick.
- Unit ids in ``silent`` get no answer (a dead device on a live bus). Unknown unit ids are
  answered with exception 4 (DEVICE FAILURE), not silence: pymodbus 3.16 behaves so even with
  ``ignore_missing_devices=True`` (LIBRARIES.md P9).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Literal, Self

from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import SimDevice

from gateway.config.modbus import Table
from gateway.demo.sim.codec import decode_registers, encode_value
from gateway.demo.sim.datastore import (
    TABLE_FC,
    Rtu,
    Tcp,
    bit_span,
    free_port,
    sim_device,
    table_span,
)
from gateway.demo.sim.device import PointState, SimulatedDevice

_log = logging.getLogger(__name__)


class Simulator:
    """Serve simulated devices over Modbus TCP or RTU; see the module docstring for the contract.

    Example::

        dev = SimulatedDevice.from_profile(1, BUILTIN_PROFILES / "th-rs485.yaml")
        async with Simulator([dev], port=free_port()) as sim:
            await sim.set_value(1, "temperature", -10.1)
    """

    def __init__(
        self,
        devices: Sequence[SimulatedDevice],
        host: str = "127.0.0.1",
        port: int = 502,
        *,
        interval: float | None = 1.0,
        seed: int | None = None,
        rtu_framer: bool = False,
    ) -> None:
        """A Modbus TCP simulator on ``host:port`` (RTU frames over TCP with ``rtu_framer``).

        Args:
            devices: The devices to serve, unique unit ids.
            host: Address to listen on.
            port: TCP port; 0 picks a free port at each start (read it from :attr:`port`).
            interval: Seconds between ticks; None disables the ticks (values change only by
                :meth:`set_value`, :meth:`set_raw` and :meth:`tick`).
            seed: Seed of the random walks, for repeatable runs.
        """
        self._init(devices, Tcp(host, port, rtu_framer), interval, seed)

    @classmethod
    def rtu(
        cls,
        devices: Sequence[SimulatedDevice],
        port: str,
        baudrate: int = 9600,
        *,
        parity: Literal["N", "E", "O"] = "N",
        stopbits: int = 1,
        bytesize: int = 8,
        interval: float | None = 1.0,
        seed: int | None = None,
    ) -> Simulator:
        """A Modbus RTU simulator on the serial device ``port`` (e.g. one end of a pty pair)."""
        self = cls.__new__(cls)
        self._init(devices, Rtu(port, baudrate, parity, stopbits, bytesize), interval, seed)
        return self

    def _init(
        self,
        devices: Sequence[SimulatedDevice],
        transport: Tcp | Rtu,
        interval: float | None,
        seed: int | None,
    ) -> None:
        if not devices:
            raise ValueError("a simulator needs at least one device")
        if interval is not None and interval <= 0:
            raise ValueError(f"interval {interval}: must be positive (or None)")
        #: Unit ids whose answers are swallowed: a dead device on a live bus (tests may change
        #: it at any time). Unknown unit ids are not silent: pymodbus answers them with 0x04.
        self.silent: set[int] = set()
        self.devices: dict[int, SimulatedDevice] = {}
        for dev in devices:
            if dev.unit_id in self.devices:
                raise ValueError(f"unit id {dev.unit_id} is used by two devices")
            self.devices[dev.unit_id] = dev
        self._transport = transport
        self._pick_port = isinstance(transport, Tcp) and transport.port == 0
        self.interval = interval
        self._rng = random.Random(seed)
        self._states: dict[int, dict[str, PointState]] = {
            dev.unit_id: {
                p.name: PointState(p, dev.functions.get(p.name), dev.initial.get(p.name))
                for p in dev.active_points
            }
            for dev in devices
        }
        self._tick = 0
        self._lock = asyncio.Lock()
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """TCP address listened on (TCP simulators only)."""
        return self._tcp().host

    @property
    def port(self) -> int:
        """TCP port listened on; the chosen one after start when created with ``port=0``."""
        return self._tcp().port

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._server is not None

    @property
    def ticks(self) -> int:
        """Ticks done so far (the initial values are tick 0)."""
        return self._tick

    def _where(self) -> str:
        t = self._transport
        return f"{t.host}:{t.port}" if isinstance(t, Tcp) else f"{t.port} at {t.baudrate} baud"

    def _tcp(self) -> Tcp:
        if not isinstance(self._transport, Tcp):
            raise AttributeError("an RTU simulator has no TCP address")
        return self._transport

    async def start(self) -> None:
        """Write the initial values, listen, and start ticking.

        Raises:
            RuntimeError: already running, or the address or serial port cannot be opened.
        """
        if self._server is not None:
            raise RuntimeError("simulator already running")
        sim_devices = [sim_device(dev) for dev in self.devices.values()]
        attempts = 5 if self._pick_port else 1  # a picked port may be taken before we bind it
        for attempt in range(attempts):
            server = self._make_server(sim_devices)
            self._server = server
            try:
                await self._write_all(initial=True)
                await server.serve_forever(background=True)
            except RuntimeError as exc:  # pymodbus: "Could not start listen"
                self._server = None
                await server.shutdown()  # type: ignore[no-untyped-call]
                if attempt + 1 == attempts:
                    raise RuntimeError(f"simulator cannot listen on {self._where()}") from exc
                continue
            except BaseException:
                self._server = None
                await server.shutdown()  # type: ignore[no-untyped-call]
                raise
            break
        _log.debug("simulating units %s on %s", sorted(self.devices), self._where())
        if self.interval is not None:
            self._task = asyncio.create_task(self._run(self.interval), name="modbus-simulator")

    def _make_server(self, sim_devices: list[SimDevice]) -> ModbusTcpServer | ModbusSerialServer:
        t = self._transport
        if isinstance(t, Rtu):
            return ModbusSerialServer(
                sim_devices,
                framer=FramerType.RTU,
                port=t.port,
                baudrate=t.baudrate,
                parity=t.parity,
                stopbits=t.stopbits,
                bytesize=t.bytesize,
                trace_packet=self._silence(0),  # RTU frame: unit id first
            )
        if self._pick_port:
            self._transport = t = Tcp(t.host, free_port(t.host), t.rtu)
        if t.rtu:  # RTU frames over TCP: unit id first, CRC at the end
            return ModbusTcpServer(sim_devices, address=(t.host, t.port), framer=FramerType.RTU,
                                   trace_packet=self._silence(0))  # fmt: skip
        # MBAP header: transaction (2), protocol (2), length (2), then the unit id
        return ModbusTcpServer(sim_devices, address=(t.host, t.port), trace_packet=self._silence(6))

    def _silence(self, at: int) -> Callable[[bool, bytes], bytes]:
        """A pymodbus packet hook that swallows the answers of the units in ``silent``."""

        def hook(sending: bool, data: bytes) -> bytes:
            if sending and len(data) > at and data[at] in self.silent:
                return b""
            return data

        return hook

    async def stop(self) -> None:
        """Stop ticking and shut the server down; idempotent.

        Raises:
            Exception: whatever a value function raised in the tick task.
        """
        task, self._task = self._task, None
        server, self._server = self._server, None
        failure: BaseException | None = None
        try:
            if task is not None:
                task.cancel()  # no-op if it already ended
                await asyncio.wait([task])
                if not task.cancelled():
                    failure = task.exception()
        finally:
            if server is not None:
                await server.shutdown()  # type: ignore[no-untyped-call]
                await asyncio.sleep(0)  # let the transports finish closing
        if failure is not None:
            raise failure

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _run(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += interval
            await asyncio.sleep(max(0.0, due - loop.time()))
            await self.tick()

    # -- values ---------------------------------------------------------------------------

    async def tick(self) -> None:
        """Advance every point that is not held by one step now (what the tick task does)."""
        async with self._lock:
            self._tick += 1
            await self._write_all(initial=False)

    async def _write_all(self, *, initial: bool) -> None:
        for unit_id, states in self._states.items():
            for state in states.values():
                if state.held:
                    if initial:  # a restarted server keeps what was set
                        p = state.point
                        await self._store(unit_id, p.table, p.address, state.registers)
                    continue
                if initial:
                    value = (
                        float(state.function(0))
                        if state.function is not None
                        else state.fit(state.value)
                    )
                else:
                    value = state.next_value(self._tick, self._rng)
                await self._write_point(unit_id, state, value)

    async def _write_point(self, unit_id: int, state: PointState, value: float) -> None:
        p = state.point
        registers = encode_value(p, value)
        await self._store(unit_id, p.table, p.address, registers)
        state.registers = registers
        state.value = decode_registers(p, registers)

    async def _store(
        self, unit_id: int, table: str, address: int, values: list[int] | list[bool]
    ) -> None:
        server = self._server
        if server is None:
            raise RuntimeError("simulator is not running")
        await server.async_setValues(unit_id, TABLE_FC[table], address, values)

    def _state(self, unit_id: int, point_name: str) -> PointState:
        try:
            return self._states[unit_id][point_name]
        except KeyError:
            raise KeyError(f"unit {unit_id} has no enabled point {point_name!r}") from None

    def value(self, unit_id: int, point_name: str) -> float:
        """The scaled value the point's registers hold now, as a client would decode it."""
        return self._state(unit_id, point_name).value

    def held(self, unit_id: int, point_name: str) -> bool:
        """True while the point is held by :meth:`set_value` or :meth:`set_raw`."""
        return self._state(unit_id, point_name).held

    async def set_value(
        self, unit_id: int, point_name: str, value: float, *, hold: bool = True
    ) -> float:
        """Write the scaled ``value`` of a point now (any value its type can carry).

        Args:
            hold: Keep the value (no ticks) until :meth:`release`; False lets the point drift on
                from the new value.

        Returns:
            The value as a client decodes it (rounded to the point's resolution).

        Raises:
            KeyError: no such unit or enabled point.
            ValueError: the value does not fit the point's type.
            RuntimeError: the simulator is not running.
        """
        state = self._state(unit_id, point_name)
        async with self._lock:
            await self._write_point(unit_id, state, value)
            state.held = hold
        return state.value

    def release(self, unit_id: int, point_name: str) -> None:
        """Let a held point tick again, starting from its current value."""
        self._state(unit_id, point_name).held = False

    async def set_raw(
        self, unit_id: int, table: Table, address: int, registers: Sequence[int] | Sequence[bool]
    ) -> None:
        """Write raw registers (or bits, for coil and discrete tables) as they are, now.

        Points whose registers are touched are held (see :meth:`release`), so the raw pattern
        stays, e.g. a sensor's 0xFFFF error code; their :meth:`value` is decoded from it.

        Raises:
            KeyError: no such unit.
            ValueError: the registers reach outside the table's span, or a value is not a
                16-bit register.
            RuntimeError: the simulator is not running.
        """
        if unit_id not in self.devices:
            raise KeyError(f"no simulated unit {unit_id}")
        points = [p for p in self.devices[unit_id].active_points if p.table == table]
        span = table_span(points)
        last = address + len(registers) - 1
        if span is None or not registers:
            raise ValueError(f"unit {unit_id}: nothing to write in table {table!r}")
        low, high = bit_span(span) if table in ("coil", "discrete") else span
        if address < low or last > high:
            raise ValueError(
                f"unit {unit_id}: {table} {address}..{last} is outside the span {low}..{high}"
            )
        values: list[int] | list[bool]
        if table in ("coil", "discrete"):
            values = [bool(v) for v in registers]
        else:
            values = [int(v) for v in registers]
            if not all(0 <= v <= 0xFFFF for v in values):
                raise ValueError(f"registers {values}: each must be 0..65535")
        touched = [p for p in points if p.address <= last and address <= p.address + p.count - 1]
        async with self._lock:
            await self._store(unit_id, table, address, values)
            for p in touched:
                state = self._states[unit_id][p.name]
                state.held = True
                server = self._server
                assert server is not None  # _store checked
                current = await server.async_getValues(unit_id, TABLE_FC[table], p.address, p.count)
                state.registers = current
                state.value = decode_registers(p, current)
