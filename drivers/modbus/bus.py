"""One physical Modbus bus (an RS-485 port or a TCP endpoint), shared by its devices.

Contract:
- Requests on a bus never overlap: one ``asyncio.Lock`` per bus, held for one request.
- On serial lines a configurable silence (``gap``) separates the end of one transaction from
  the start of the next; slow sensors need it to turn their transceiver around.
- Short timeouts and at most ``retries`` extra attempts, so a dead device costs the bus
  ``timeout * (retries + 1)`` per request, not pymodbus's default 12 s.
- A request may bring its own timeout (``within``) and then gets no retry: a scan asks up to
  247 unit ids, most of them absent, and each absent one costs the bus that timeout, not the
  bus's request budget. The bus's own timeout and retries apply again to the next request.
- pymodbus exceptions never leave this module: no answer becomes ``ModbusTimeout``, a lost
  connection ``ModbusUnavailable`` (both transient), and an exception response is returned as
  ``ModbusErrorResponse`` with its code (Modbus Application Protocol v1.1b3 §7).
- An answer is checked against its request: a register count other than the one asked for,
  or a bit answer whose byte count is not ``ceil(count / 8)``, raises ``ModbusBadFrame``; it
  is never decoded into values. The connection stays up (the frame itself was complete).
"""

import asyncio
import errno
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse

from gateway.config.modbus import ModbusRtuBusConfig, ModbusTcpBusConfig
from gateway.core.errors import TransientError

log = logging.getLogger(__name__)
# pymodbus logs every timeout at ERROR; the poller logs state changes once instead.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

ILLEGAL_FUNCTION = 0x01
ILLEGAL_ADDRESS = 0x02
ILLEGAL_VALUE = 0x03
DEVICE_FAILURE = 0x04
ACKNOWLEDGE = 0x05
DEVICE_BUSY = 0x06
#: Codes that say "this request can never succeed": the point is misconfigured.
CONFIG_CODES = frozenset({ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE})
#: Codes that say "try again later": the device is alive but busy.
BUSY_CODES = frozenset({ACKNOWLEDGE, DEVICE_BUSY})


class ModbusTimeout(TransientError):
    """The device did not answer (or answered with a bad CRC, which pymodbus drops)."""


class ModbusUnavailable(TransientError):
    """The port or endpoint cannot be opened or the connection dropped."""


class ModbusBadFrame(Exception):
    """The device answered, but the answer does not fit the request (a wrong byte count)."""


class ModbusErrorResponse(Exception):
    """The device answered with an exception response."""

    def __init__(self, code: int) -> None:
        super().__init__(f"exception code {code:#04x}")
        self.code = code


class Bus:
    """A shared client plus the lock and pacing that keep its devices from colliding."""

    def __init__(self, cfg: ModbusTcpBusConfig | ModbusRtuBusConfig) -> None:
        self.cfg = cfg
        self.lock = asyncio.Lock()
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._last_done = 0.0

    @property
    def name(self) -> str:
        """Where the bus is, for log lines."""
        if isinstance(self.cfg, ModbusTcpBusConfig):
            return f"{self.cfg.id} ({self.cfg.host}:{self.cfg.port})"
        return f"{self.cfg.id} ({self.cfg.port})"

    def _make_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        cfg = self.cfg
        # reconnect_delay=0: no background reconnects; the next request reconnects instead.
        if isinstance(cfg, ModbusTcpBusConfig):
            return AsyncModbusTcpClient(
                cfg.host,
                port=cfg.port,
                framer=FramerType.RTU if cfg.rtu_frames else FramerType.SOCKET,
                timeout=cfg.timeout,
                retries=cfg.retries,
                reconnect_delay=0,
                name=cfg.id,
            )
        return AsyncModbusSerialClient(
            cfg.port,
            framer=FramerType.RTU,
            baudrate=cfg.baudrate,
            bytesize=cfg.bytesize,
            parity=cfg.parity,
            stopbits=cfg.stopbits,
            timeout=cfg.timeout,
            retries=cfg.retries,
            reconnect_delay=0,
            name=cfg.id,
        )

    async def _connected(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        if self._client is not None and self._client.connected:
            return self._client
        if self._client is not None:
            self._client.close()
        self._client = self._make_client()
        ok = await self._client.connect()
        if not ok:
            self._client.close()
            self._client = None
            raise ModbusUnavailable(f"cannot connect to bus {self.name}{self._why()}")
        return self._client

    def _why(self) -> str:
        """What is wrong with a serial port that would not open: its path and the errno."""
        if isinstance(self.cfg, ModbusTcpBusConfig):
            return ""  # the name holds host and port; the peer says no more than "refused"
        port = self.cfg.port
        try:
            os.close(os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK))
        except OSError as exc:
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            return f": {port}: {exc.strerror} ({name})"
        return f": {port} opens, but the serial line could not be set up"

    async def read(
        self, table: str, address: int, count: int, unit: int, *, within: float | None = None
    ) -> Sequence[int]:
        """Read ``count`` registers (or bits, as 0/1) of ``table`` from device ``unit``;
        with ``within``, wait that many seconds for the answer and do not retry."""
        loop = asyncio.get_running_loop()
        async with self.lock:
            pause = self._last_done + self.cfg.gap - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            try:
                client = await self._connected()
                with _impatient(client, within):
                    rr = await _request(client, table, address, count, unit)
            except ModbusIOException as exc:
                raise ModbusTimeout(f"no answer from unit {unit} on bus {self.name}") from exc
            except ConnectionException as exc:
                self.close()
                raise ModbusUnavailable(f"bus {self.name}: {exc}") from exc
            except (ModbusException, OSError) as exc:
                self.close()
                raise ModbusUnavailable(f"bus {self.name}: {exc}") from exc
            finally:
                self._last_done = loop.time()
        if isinstance(rr, ExceptionResponse) or rr.isError():
            raise ModbusErrorResponse(int(getattr(rr, "exception_code", DEVICE_FAILURE)))
        if table in ("coil", "discrete"):
            bits: list[bool] = rr.bits
            if len(bits) != 8 * ((count + 7) // 8):
                raise ModbusBadFrame(
                    f"unit {unit} answered {len(bits) // 8} bytes for {count} {table}s"
                )
            return [int(b) for b in bits[:count]]
        regs: list[int] = rr.registers
        if len(regs) != count:
            raise ModbusBadFrame(f"unit {unit} answered {len(regs)} registers of {count} asked")
        return regs

    def close(self) -> None:
        """Drop the connection; the next request opens a new one."""
        if self._client is not None:
            self._client.close()
            self._client = None


@contextmanager
def _impatient(
    client: AsyncModbusTcpClient | AsyncModbusSerialClient, timeout: float | None
) -> Iterator[None]:
    """One request with ``timeout`` and no retry. pymodbus 3.16 reads both from the client's
    transaction manager at each request (``TransactionManager.execute``); the bus holds its
    lock, so no other request sees them before they are put back."""
    if timeout is None:
        yield
        return
    ctx = client.ctx
    saved = ctx.comm_params.timeout_connect, ctx.retries
    ctx.comm_params.timeout_connect, ctx.retries = timeout, 0
    try:
        yield
    finally:
        ctx.comm_params.timeout_connect, ctx.retries = saved


async def _request(client: Any, table: str, address: int, count: int, unit: int) -> Any:
    if table == "holding":
        return await client.read_holding_registers(address, count=count, device_id=unit)
    if table == "input":
        return await client.read_input_registers(address, count=count, device_id=unit)
    if table == "coil":
        return await client.read_coils(address, count=count, device_id=unit)
    return await client.read_discrete_inputs(address, count=count, device_id=unit)
