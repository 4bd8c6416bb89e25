"""How long ``cgw scan`` takes over every unit id (1-247) of an empty bus. Run by hand.

    .venv/bin/python bench/scan.py [--timeout 0.1] [--baudrate 9600] [--runs 2]

Two buses with nothing on them, each scanned by ``drivers.modbus.commission.scan`` (what
``cgw scan`` and the API run) with the shipped profiles:

``rtu``  an RS-485 line at the RTU bus defaults (``gap`` 0.02 s): one end of a socat pty pair
         with nothing on the other end, so every question waits out the scan's timeout.
``tcp``  a Modbus TCP endpoint that accepts the connection and never answers (a gateway
         whose RS-485 side is empty and silent).

Prints the seconds per run and per unit id. Nothing asserts a timing. socat is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from drivers.modbus.bus import Bus
from drivers.modbus.commission import scan
from gateway.config.loader import BUILTIN_PROFILES, modbus_profiles
from gateway.config.modbus import ModbusRtuBusConfig, ModbusTcpBusConfig
from gateway.core.commission import SCAN_TIMEOUT, parse_units

SOCAT = "/usr/bin/socat"


@contextlib.contextmanager
def empty_line(folder: Path) -> Iterator[Path]:
    """One end of a pty pair whose other end nobody reads."""
    a, b = folder / "tty-a", folder / "tty-b"
    proc = subprocess.Popen(
        [SOCAT, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while not (a.exists() and b.exists()):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("socat did not make the pty pair")
            time.sleep(0.01)
        yield b
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.asynccontextmanager
async def black_hole() -> AsyncIterator[int]:
    """A TCP port that accepts connections and never answers; yields the port."""
    handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers[task] = writer
        try:
            while await reader.read(1024):
                pass
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in handlers.values():
            writer.close()  # its reader ends, and its handler with it
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def timed(bus: Bus, within: float) -> float:
    profiles = modbus_profiles([BUILTIN_PROFILES])
    try:
        report = await scan(bus, parse_units("1-247"), profiles, within=within)
    finally:
        bus.close()
    assert not report.found
    assert report.complete
    return report.seconds


async def main(args: argparse.Namespace) -> None:
    print(f"scan of unit ids 1-247 on an empty bus, {args.timeout:g} s a unit id")
    with tempfile.TemporaryDirectory(prefix="cgw-scan-") as tmp, empty_line(Path(tmp)) as port:
        rtu = ModbusRtuBusConfig(kind="modbus_rtu", id="rs485-1", port=str(port),
                                 baudrate=args.baudrate)  # fmt: skip
        for run in range(args.runs):
            seconds = await timed(Bus(rtu), args.timeout)
            print(f"  rtu {args.baudrate} baud, gap {rtu.gap:g} s, run {run + 1}:"
                  f" {seconds:.1f} s ({seconds / 247 * 1000:.0f} ms a unit id)")  # fmt: skip
    async with black_hole() as tcp_port:
        tcp = ModbusTcpBusConfig(kind="modbus_tcp", id="tcp-1", host="127.0.0.1", port=tcp_port)
        for run in range(args.runs):
            seconds = await timed(Bus(tcp), args.timeout)
            print(f"  tcp black hole, gap {tcp.gap:g} s, run {run + 1}:"
                  f" {seconds:.1f} s ({seconds / 247 * 1000:.0f} ms a unit id)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=SCAN_TIMEOUT)
    parser.add_argument("--baudrate", type=int, default=9600)
    parser.add_argument("--runs", type=int, default=2)
    asyncio.run(main(parser.parse_args()))
