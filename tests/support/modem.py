"""An emulated 4G modem (Quectel EC25-like) on one end of a socat pty pair.

It speaks the AT commands the gateway's modem channel uses (``gateway.notify.gsm``, on top of
python-gsmmodem-new): the library's initialisation (``ATZ``, ``ATE0``, ``AT+CFUN?``,
``AT+CMEE=1``, ``AT+CPIN?``/``AT+CPIN="…"``, ``AT+CLAC``, ``AT+CGMI``, ``AT+CMGF=0``, …),
registration (``AT+CREG?``, ``AT+CEREG?``), ``AT+CSQ``, ``AT+COPS?``, PDU SMS (``AT+CMGS=<n>``,
the ``>`` prompt, the PDU and Ctrl-Z, answered with ``+CMGS: <ref>``), calls (``ATD<n>;``,
``AT+CLCC``, ``BUSY`` / ``NO CARRIER``, ``ATH``). Unknown commands get ``ERROR``.

Faults: ``registered = False`` (``+CREG: 0,2``), ``sim = "absent"`` (``+CME ERROR: 10``),
``silent_after`` (stop answering at a command starting with that text: a modem that hangs
mid-send), ``garbage`` (answer every command with noise and no final result code).

Received SMS are decoded with the library's own ``decodeSmsPdu`` and joined by their
concatenation header: ``sms`` holds (number, text) per complete message. Everything runs in one
thread, started by ``start()`` and joined by ``stop()``; ``wait(predicate)`` waits for the
emulator's state without sleeping.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import serial
from gsmmodem.pdu import decodeSmsPdu  # type: ignore[import-untyped]

from tests.support.socat import PtyPair

__all__ = ["CallPlan", "EmulatedModem"]

_OK = "OK"


@dataclass
class CallPlan:
    """What the phone at one number does when called."""

    outcome: str = "answer"  # answer | busy | no-answer | reject
    rings: int = 2  # AT+CLCC polls while alerting before it answers or rejects


@dataclass
class _Call:
    number: str
    plan: CallPlan
    polls: int = 0
    state: int = 2  # 27.007 +CLCC stat: 2 dialling, 3 alerting, 0 active


@dataclass
class EmulatedModem:
    """The modem's behaviour and what it has received; change fields under ``lock``."""

    directory: Path
    registered: bool = True
    sim: str = "ready"  # ready | pin | absent
    pin: str = "1234"
    csq: int = 21
    operator: str = "CHINA MOBILE"
    silent_after: str | None = None
    garbage: bool = False
    calls: dict[str, CallPlan] = field(default_factory=dict)  # by number; default: answer
    sms: list[tuple[str, str]] = field(default_factory=list)
    pdus: list[str] = field(default_factory=list)
    dialled: list[tuple[str, str]] = field(default_factory=list)  # (number, how it ended)
    commands: list[str] = field(default_factory=list)
    lock: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.pair = PtyPair(self.directory, name="modem")
        self._thread: threading.Thread | None = None
        self._running = False
        self._port: serial.Serial | None = None
        self._ref = 0
        self._parts: dict[tuple[str, int], dict[int, str]] = {}
        self._call: _Call | None = None
        self._after: list[str] = []  # unsolicited lines sent after the next reply

    @property
    def port(self) -> Path:
        """The gateway's end of the pty pair."""
        return self.pair.a

    def start(self) -> None:
        self.pair.start()
        self._port = serial.Serial(str(self.pair.b), 115200, timeout=0.05)
        self._running = True
        self._thread = threading.Thread(target=self._serve, name="emulated-modem", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(5)
        if self._port is not None:
            self._port.close()
        self.pair.stop()

    def __enter__(self) -> EmulatedModem:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def wait(self, predicate: Callable[[EmulatedModem], bool], timeout: float = 20) -> None:  # noqa: ASYNC109
        """Until ``predicate(self)`` holds; TimeoutError after ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with self.lock:
                if predicate(self):
                    return
            if loop.time() > deadline:
                raise TimeoutError(
                    f"emulated modem: condition not met; commands {self.commands[-12:]}"
                )
            await asyncio.sleep(0.02)  # a poll of in-memory state, not a wait for time to pass

    # -- the serial side -------------------------------------------------------------------

    def _serve(self) -> None:
        assert self._port is not None
        buffer = b""
        while self._running:
            data = self._port.read(1)  # returns as soon as a byte is there
            if not data:
                continue
            data += self._port.read(self._port.in_waiting)
            buffer += data
            while True:
                cut = [i for i in (buffer.find(b"\r"), buffer.find(b"\x1a")) if i >= 0]
                if not cut:
                    break
                i = min(cut)
                line, end, buffer = buffer[:i], buffer[i : i + 1], buffer[i + 1 :]
                text = line.strip(b"\n").decode(errors="replace")
                if text or end == b"\x1a":
                    self._handle(text, end == b"\x1a")

    def _send(self, *lines: str) -> None:
        assert self._port is not None
        self._port.write(b"".join(f"\r\n{line}\r\n".encode() for line in lines))

    def _handle(self, text: str, ctrl_z: bool) -> None:
        with self.lock:
            self.commands.append(text if not ctrl_z else "<pdu>")
            if self.silent_after is not None and (
                text.upper().startswith(self.silent_after)
                or (ctrl_z and self.silent_after == "<pdu>")
            ):
                self.lock.notify_all()
                return
            if self.garbage:
                assert self._port is not None
                self._port.write(b"\r\n\xff\xfe#?%\x00garble\r\n")
                return
            reply = self._reply(text, ctrl_z)
            self.lock.notify_all()
        if reply is not None:
            if reply == ["> "]:
                assert self._port is not None
                self._port.write(b"\r\n> ")
            else:
                self._send(*reply)
        with self.lock:
            after, self._after = self._after, []
        if after:
            self._send(*after)

    def _reply(self, text: str, ctrl_z: bool) -> list[str] | None:
        if ctrl_z:
            return self._pdu(text)
        cmd = text.upper()
        if cmd in ("AT", "ATZ", "ATE0", "AT+CMEE=1", "AT+CMGF=0", "AT+COPS=3,0", "AT+CVHU=0"):
            return [_OK]
        if cmd.startswith(("AT+CSMP=", 'AT+CPMS="', "AT+CLIP=1", "AT+CRC=1", "AT+CNMI=")):
            return [_OK]
        if cmd == "AT+CPMS=?":
            return ['+CPMS: ("SM","ME"),("SM","ME"),("SM","ME")', _OK]
        if cmd == "AT+CSCA?":
            return ['+CSCA: "+8613800100500",145', _OK]
        if cmd == "AT+CFUN?":
            return ["+CFUN: 1", _OK]
        if cmd == "AT+CPIN?":
            if self.sim == "absent":
                return ["+CME ERROR: 10"]
            return ["+CPIN: SIM PIN" if self.sim == "pin" else "+CPIN: READY", _OK]
        if cmd.startswith("AT+CPIN="):
            if text[8:].strip('"') == self.pin:
                self.sim = "ready"
                return [_OK]
            return ["+CME ERROR: 16"]
        if self.sim != "ready" and cmd.startswith(("AT+CMGS", "ATD", "AT+COPS?")):
            return ["+CME ERROR: 11"]
        if cmd == "AT+CLAC":
            return ["+CLAC: +CMGS,+CSQ,+CREG,+CEREG,+COPS,+CLCC,+CSCS,+VTS", _OK]
        if cmd == "AT+CGMI":
            return ["Quectel", _OK]
        if cmd in ("AT+CREG?", "AT+CEREG?"):
            return [f"{cmd[2:-1]}: 0,{1 if self.registered else 2}", _OK]
        if cmd == "AT+CSQ":
            return [f"+CSQ: {self.csq if self.registered else 99},99", _OK]
        if cmd == "AT+COPS?":
            return [f'+COPS: 0,0,"{self.operator}",7' if self.registered else "+COPS: 0", _OK]
        if cmd.startswith("AT+CMGS="):
            return ["> "]
        if cmd.startswith("ATD") and cmd.endswith(";"):
            return self._dial(text[3:-1])
        if cmd == "AT+CLCC":
            return self._clcc()
        if cmd == "ATH":
            if self._call is not None:
                self._end("hung up" if self._call.state == 0 else "cancelled")
            return [_OK]
        return ["ERROR"]

    def _pdu(self, text: str) -> list[str]:
        if not self.registered:
            return ["+CMS ERROR: 331"]  # no network service
        self.pdus.append(text)
        decoded: dict[str, Any] = decodeSmsPdu(text)
        self._ref = (self._ref + 1) % 256
        number, body, udh = decoded["number"], decoded["text"], decoded.get("udh") or []
        concat = next((u for u in udh if hasattr(u, "parts")), None)
        if concat is None:
            self.sms.append((number, body))
        else:
            parts = self._parts.setdefault((number, concat.reference), {})
            parts[concat.number] = body
            if len(parts) == concat.parts:
                self.sms.append((number, "".join(parts[i] for i in sorted(parts))))
                del self._parts[(number, concat.reference)]
        return [f"+CMGS: {self._ref}", _OK]

    def _dial(self, number: str) -> list[str]:
        if not self.registered:
            return ["NO CARRIER"]
        self._call = _Call(number, self.calls.get(number, CallPlan()))
        return [_OK]

    def _clcc(self) -> list[str]:
        call = self._call
        if call is None:
            return [_OK]
        call.polls += 1
        if call.state != 0 and call.polls > call.plan.rings:
            if call.plan.outcome == "answer":
                call.state = 0
            elif call.plan.outcome in ("busy", "reject"):  # told after this answer, unsolicited
                self._end(call.plan.outcome)
                self._after = ["BUSY" if call.plan.outcome == "busy" else "NO CARRIER"]
                return [f'+CLCC: 1,0,3,0,0,"{call.number}",129', _OK]
        elif call.state == 2:
            call.state = 3
        return [f'+CLCC: 1,0,{call.state},0,0,"{call.number}",129', _OK]

    def _end(self, how: str) -> None:
        assert self._call is not None
        self.dialled.append((self._call.number, how))
        self._call = None
