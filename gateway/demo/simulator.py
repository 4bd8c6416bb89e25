"""In-process Modbus simulator of sensor devices, for the demo and the tests.

A :class:`Simulator` serves one or more :class:`SimulatedDevice` (one unit id each) over Modbus
TCP (``ModbusTcpServer``) or Modbus RTU (``ModbusSerialServer``, e.g. on one end of a socat pty
pair), using the pymodbus 3.16 simulator datastore (``pymodbus.simulator.SimDevice`` /
``SimData``; the deprecated ``ModbusDeviceContext`` classes are not used).

Contract:

* **Tables.** Each device has four separate tables (coils FC1/5/15, discrete inputs FC2, holding
  registers FC3/6/16, input registers FC4), built from the device's *enabled* points. Within a
  table, every address from the lowest mapped address to the highest mapped one answers;
  registers not covered by a point read 0, so merged block reads across small gaps work. Any
  request reaching outside that span, and any request to a table without points, is answered
  with exception 2 (ILLEGAL ADDRESS). Bit tables are stored 16 bits to a register, so their span
  is widened to whole 16-bit groups: unmapped bits inside the group read ``False``.
* **Unknown unit ids** are answered with exception 4 (DEVICE FAILURE), not with silence: pymodbus
  3.16 behaves so even with ``ignore_missing_devices=True`` (LIBRARIES.md P9). Test silence with a
  black-hole server instead.
* **Encoding** is the inverse of the gateway's decoding, ``value = raw * scale + offset``:
  ``raw = (value - offset) / scale``, rounded for integer types, packed big-endian with the
  point's ``word_order``, then each register byte-swapped when ``byte_order`` is ``little``
  (LIBRARIES.md P11). A value that does not fit the type raises ``ValueError``. Bool points are
  single coils or discrete inputs.
* **Values.** All points hold a value from the start (the server never serves the zeros of an
  empty datastore). Every ``interval`` seconds (a *tick*) each point that is not held gets a new
  value: the caller's function of the tick number if the device has one for it
  (:attr:`SimulatedDevice.functions`; written as returned, even outside the range), otherwise a
  bounded, mean-reverting random walk that stays inside the point's ``range`` after encoding.
  Points without a range keep their initial value; bool points flip now and then.
  :meth:`Simulator.set_value` writes a value at once and, by default, holds it (no more drift)
  until :meth:`Simulator.release`. A 32-bit value is written in one datastore update, so a client
  never reads half of an old and half of a new value.
* **Client writes** to mapped holding registers and coils are accepted (real transmitters keep
  their settings there); drifting points overwrite their own registers on the next tick.
* **Lifecycle.** ``async with Simulator(...)`` starts listening (and the tick task) before the
  body runs and always shuts the server down afterwards; an exception raised by a value
  function stops the ticks and is re-raised by :meth:`Simulator.stop`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimAction, SimData, SimDevice

from gateway.config.loader import load_profile
from gateway.config.modbus import PointConfig, Table

__all__ = [
    "SimulatedDevice",
    "Simulator",
    "ValueFunction",
    "decode_registers",
    "encode_value",
]

_log = logging.getLogger(__name__)

ValueFunction = Callable[[int], float]
"""Scaled value of a point from the tick number (0 at start); bool points use its truthiness."""

_DATATYPE = ModbusClientMixin.DATATYPE
_CODEC: dict[str, ModbusClientMixin.DATATYPE] = {
    "int16": _DATATYPE.INT16,
    "uint16": _DATATYPE.UINT16,
    "int32": _DATATYPE.INT32,
    "uint32": _DATATYPE.UINT32,
    "float32": _DATATYPE.FLOAT32,
}
_INT_LIMITS: dict[str, tuple[int, int]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38

# Function code the runtime datastore uses to address each table for our own updates, and every
# function code (Modbus spec §6) that reaches the table from the wire.
_TABLE_FC: dict[str, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
_WIRE_FCS: dict[str, frozenset[int]] = {
    "coil": frozenset({1, 5, 15}),
    "discrete": frozenset({2}),
    "holding": frozenset({3, 6, 16, 22, 23}),
    "input": frozenset({4}),
}

# Where the random walk starts, by unit, when the value lies inside the point's range:
# ordinary weather in a residential community. Other units start a quarter into the range.
_TYPICAL: dict[str, float] = {
    "degC": 22.0,
    "%RH": 55.0,
    "ug/m3": 35.0,
    "dB(A)": 50.0,
    "ppm": 450.0,
    "kPa": 101.3,
    "hPa": 1013.0,
    "lux": 800.0,
}
# One random-walk step has a standard deviation of _STEP of the range, and is pulled back by
# _REVERT of the distance to the start value, so the walk settles about 5 steps (1% of the
# range) around the start: temperature +-1.2 degC, PM2.5 +-10 ug/m3, noise +-1 dB(A).
_STEP = 0.002
_REVERT = 0.02
_FLIP = 0.02  # probability per tick that a free-running bool point changes state


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
        low, high = _INT_LIMITS[point.type]
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


@dataclass
class SimulatedDevice:
    """One simulated Modbus device: a unit id and the points it serves.

    Attributes:
        unit_id: Modbus unit (slave) id, 1-247.
        points: Points to serve; disabled ones (``enabled: false``) are left out.
        functions: Optional value function per point name, replacing the random walk.
        initial: Optional start value per point name, inside its range; the random walk
            keeps returning towards it (default: a typical value for the unit, or a quarter
            into the range).
    """

    unit_id: int
    points: list[PointConfig]
    functions: dict[str, ValueFunction] = field(default_factory=dict)
    initial: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_profile(
        cls,
        unit_id: int,
        profile: Path,
        functions: Mapping[str, ValueFunction] | None = None,
        initial: Mapping[str, float] | None = None,
    ) -> SimulatedDevice:
        """A device serving every point of the profile file ``profile``.

        Raises:
            ConfigError: the profile does not load (see ``load_profile``).
        """
        data = load_profile(profile)
        points = [PointConfig.model_validate(p) for p in data["points"]]
        return cls(unit_id, points, dict(functions or {}), dict(initial or {}))

    def __post_init__(self) -> None:
        if not 1 <= self.unit_id <= 247:
            raise ValueError(f"unit id {self.unit_id}: must be 1-247")
        names = [p.name for p in self.points]
        if len(set(names)) != len(names):
            raise ValueError(f"unit {self.unit_id}: duplicate point names in {names}")
        for extra in (self.functions, self.initial):
            unknown = set(extra) - set(names)
            if unknown:
                raise ValueError(f"unit {self.unit_id}: no points named {sorted(unknown)}")
        for p in self.points:
            start = self.initial.get(p.name)
            if start is not None and p.range is not None and not p.range[0] <= start <= p.range[1]:
                raise ValueError(f"{p.name}: initial value {start} is outside {list(p.range)}")
        used: dict[tuple[str, int], str] = {}
        for p in self.active_points:
            for addr in range(p.address, p.address + p.count):
                other = used.setdefault((p.table, addr), p.name)
                if other != p.name:
                    raise ValueError(
                        f"unit {self.unit_id}: {p.name} overlaps {other} at {p.table} {addr}"
                    )

    @property
    def active_points(self) -> list[PointConfig]:
        """The points served: the enabled ones."""
        return [p for p in self.points if p.enabled]


class _PointState:
    """Current value of one simulated point, and its random walk."""

    def __init__(self, point: PointConfig, function: ValueFunction | None, start: float | None):
        self.point = point
        self.function = function
        self.held = False
        self.bounds = _walk_bounds(point)
        if start is None:
            start = _typical_start(point, self.bounds)
        self.start = start
        self.value = start  # the value as decoded from the registers last written
        self.registers: list[int] | list[bool] = []  # the registers last written

    def next_value(self, tick: int, rng: random.Random) -> float:
        if self.function is not None:
            return float(self.function(tick))
        if self.point.type == "bool":
            return 1.0 - self.value if rng.random() < _FLIP else self.value
        if self.bounds is None:
            return self.value
        low, high = self.bounds
        span = high - low
        value = self.value + rng.gauss(0.0, _STEP * span) + _REVERT * (self.start - self.value)
        if value > high:  # reflect at the edges
            value = 2 * high - value
        if value < low:
            value = 2 * low - value
        return self.fit(min(max(value, low), high))

    def fit(self, value: float) -> float:
        """``value``, pulled towards the middle until its encoding decodes inside the range."""
        if self.bounds is None:
            return value
        low, high = self.bounds
        middle = (low + high) / 2
        for shrink in (0.0, 1e-9, 1e-6, 1e-3, 1e-2, 1e-1, 1.0):
            candidate = value + (middle - value) * shrink
            decoded = decode_registers(self.point, encode_value(self.point, candidate))
            if low <= decoded <= high:
                return candidate
        raise ValueError(f"{self.point.name}: no value inside {self.bounds} fits {self.point.type}")


def _walk_bounds(point: PointConfig) -> tuple[float, float] | None:
    """The point's range, narrowed to what its type can carry; None without a range."""
    if point.range is None or point.type == "bool":
        return None
    low, high = point.range
    if point.type != "float32":
        raw_low, raw_high = _INT_LIMITS[point.type]
        ends = sorted((raw_low * point.scale + point.offset, raw_high * point.scale + point.offset))
        low, high = max(low, ends[0]), min(high, ends[1])
    if low > high:
        raise ValueError(f"{point.name}: range {point.range} cannot be encoded as {point.type}")
    return low, high


def _typical_start(point: PointConfig, bounds: tuple[float, float] | None) -> float:
    if point.type == "bool":
        return 0.0
    if bounds is None:
        return point.offset  # raw 0
    low, high = bounds
    typical = _TYPICAL.get(point.unit)
    if typical is not None and low <= typical <= high:
        return typical
    return low + (high - low) / 4


@dataclass(frozen=True)
class _Tcp:
    host: str
    port: int


@dataclass(frozen=True)
class _Rtu:
    port: str
    baudrate: int
    parity: Literal["N", "E", "O"]
    stopbits: int
    bytesize: int


def _span(points: Iterable[PointConfig]) -> tuple[int, int] | None:
    """First and last address the points cover, or None."""
    cells = [(p.address, p.address + p.count - 1) for p in points]
    if not cells:
        return None
    return min(c[0] for c in cells), max(c[1] for c in cells)


def _bit_span(span: tuple[int, int]) -> tuple[int, int]:
    """A bit span widened to whole 16-bit groups, as the datastore stores bits."""
    return span[0] - span[0] % 16, span[1] - span[1] % 16 + 15


def _refuse(function_codes: frozenset[int]) -> SimAction:
    """Datastore hook answering ILLEGAL ADDRESS to the function codes of empty tables."""

    async def action(
        function_code: int,
        _start_address: int,
        _address: int,
        _count: int,
        _registers: list[int],
        _values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        return ExcCodes.ILLEGAL_ADDRESS if function_code in function_codes else None

    return action


def _sim_device(device: SimulatedDevice) -> SimDevice:
    """The pymodbus datastore of one device: four tables, each its points' span (see module doc)."""
    tables: dict[str, list[SimData]] = {}
    empty: set[int] = set()
    for table in ("coil", "discrete", "holding", "input"):
        span = _span(p for p in device.active_points if p.table == table)
        bits = table in ("coil", "discrete")
        if span is None:
            empty |= _WIRE_FCS[table]
            # SimDevice needs an entry in every table; bit tables only take BITS entries, so
            # those placeholders are refused by the action hook instead.
            placeholder = (
                SimData(address=0, count=1, values=False, datatype=DataType.BITS)
                if bits
                else SimData(address=0, count=1, datatype=DataType.INVALID)
            )
            tables[table] = [placeholder]
        elif bits:
            tables[table] = [
                SimData(
                    address=span[0],
                    count=span[1] - span[0] + 1,
                    values=False,
                    datatype=DataType.BITS,
                )
            ]
        else:
            tables[table] = [
                SimData(
                    address=span[0],
                    count=span[1] - span[0] + 1,
                    values=0,
                    datatype=DataType.REGISTERS,
                )
            ]
    return SimDevice(
        id=device.unit_id,
        simdata=(tables["coil"], tables["discrete"], tables["holding"], tables["input"]),
        action=_refuse(frozenset(empty)) if empty else None,
    )


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class Simulator:
    """Serve simulated devices over Modbus TCP or RTU; see the module docstring for the contract.

    Example::

        dev = SimulatedDevice.from_profile(1, Path("config/profiles/th-rs485.yaml"))
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
    ) -> None:
        """A Modbus TCP simulator on ``host:port``.

        Args:
            devices: The devices to serve, unique unit ids.
            host: Address to listen on.
            port: TCP port; 0 picks a free port at each start (read it from :attr:`port`).
            interval: Seconds between ticks; None disables the ticks (values change only by
                :meth:`set_value`, :meth:`set_raw` and :meth:`tick`).
            seed: Seed of the random walks, for repeatable runs.
        """
        self._init(devices, _Tcp(host, port), interval, seed)

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
        self._init(devices, _Rtu(port, baudrate, parity, stopbits, bytesize), interval, seed)
        return self

    def _init(
        self,
        devices: Sequence[SimulatedDevice],
        transport: _Tcp | _Rtu,
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
        self._pick_port = isinstance(transport, _Tcp) and transport.port == 0
        self.interval = interval
        self._rng = random.Random(seed)
        self._states: dict[int, dict[str, _PointState]] = {
            dev.unit_id: {
                p.name: _PointState(p, dev.functions.get(p.name), dev.initial.get(p.name))
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
        return f"{t.host}:{t.port}" if isinstance(t, _Tcp) else f"{t.port} at {t.baudrate} baud"

    def _tcp(self) -> _Tcp:
        if not isinstance(self._transport, _Tcp):
            raise AttributeError("an RTU simulator has no TCP address")
        return self._transport

    async def start(self) -> None:
        """Write the initial values, listen, and start ticking.

        Raises:
            RuntimeError: already running, or the address or serial port cannot be opened.
        """
        if self._server is not None:
            raise RuntimeError("simulator already running")
        sim_devices = [_sim_device(dev) for dev in self.devices.values()]
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
        if isinstance(t, _Rtu):
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
            self._transport = t = _Tcp(t.host, _free_port(t.host))
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

    async def _write_point(self, unit_id: int, state: _PointState, value: float) -> None:
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
        await server.async_setValues(unit_id, _TABLE_FC[table], address, values)

    def _state(self, unit_id: int, point_name: str) -> _PointState:
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
        span = _span(points)
        last = address + len(registers) - 1
        if span is None or not registers:
            raise ValueError(f"unit {unit_id}: nothing to write in table {table!r}")
        low, high = _bit_span(span) if table in ("coil", "discrete") else span
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
                current = await server.async_getValues(
                    unit_id, _TABLE_FC[table], p.address, p.count
                )
                state.registers = current
                state.value = decode_registers(p, current)
