"""The python-gsmmodem-new boundary: one blocking AT session with a 4G modem.

This is the only module that imports ``gsmmodem``. Everything here blocks and must run in the
modem's own worker thread (``gateway.notify.modem``); a ``Session`` is never shared.

Contract: every method either returns or raises ``ModemError`` (the reason, one line, never a
phone number or message text) within its timeouts: each AT command has one (``timeout``), an
SMS part ``sms_timeout`` and a call ``ring`` plus a few commands. A serial write is bounded too
(pyserial ``write_timeout``). After a ``ModemError`` the session is not trusted: the caller
closes it and opens a new one (a reset).

Decisions, read from python-gsmmodem-new 0.13.0's source:

- **PDU encoding and concatenation are the library's** (``gsmmodem.pdu.encodeSmsSubmitPdu``):
  GSM 7-bit when the text allows, else UCS-2; text longer than one SMS becomes concatenated
  parts with a user-data header. ``sms`` sends those PDUs with ``AT+CMGS=<length>``, the
  ``>`` prompt and Ctrl-Z as ``GsmModem.sendSms`` does, but not through it: ``sendSms`` first
  switches the character set with ``AT+CSCS`` and raises for UCS-2 text on a modem whose
  command list it cannot read (no ``AT+CLAC``), although PDU mode never needs ``AT+CSCS``; and
  its timeouts are fixed (5 s, 35 s).
- **Unsolicited lines** (``BUSY``, ``NO CARRIER``, ``RING``): the library starts a new,
  never-joined thread per notification to dispatch incoming calls and SMS, which the gateway
  does not take. ``_Modem`` keeps the lines instead; ``call`` reads them for the reason a call
  ended.
- **Garbage on the line**: the library's reader thread decodes each line as UTF-8 and dies on
  the first byte that is not (a ``UnicodeDecodeError`` nothing catches), after which every
  command times out. ``_Modem`` decodes with replacement; a garbled answer then fails its
  command (no ``OK``, a timeout), and the caller resets the session.
- **Calls**: the library's ``dial`` polls ``AT+CLCC`` from extra threads of its own with
  fixed half-second sleeps. ``call`` dials with ``ATD<number>;`` and polls ``AT+CLCC`` itself,
  in the session's thread, until the call is active (answered), gone (busy, rejected, no
  carrier) or ``ring`` has passed, and hangs up with ``ATH``.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import serial  # pyserial, under gsmmodem
from gsmmodem.exceptions import (  # type: ignore[import-untyped]
    CmeError,
    CommandError,
    GsmModemException,
    IncorrectPinError,
    PinRequiredError,
    TimeoutException,
)
from gsmmodem.modem import GsmModem  # type: ignore[import-untyped]
from gsmmodem.pdu import encodeGsm7, encodeSmsSubmitPdu  # type: ignore[import-untyped]

from gateway.core.errors import TransientError

__all__ = ["ModemError", "Reading", "Session", "fit"]

_CTRL_Z = "\x1a"
_CLCC = re.compile(r"^\+CLCC:\s*(\d+),(\d),(\d),(\d),(\d)")
_REG = re.compile(r"^\+C(?:E|G)?REG:\s*(?:\d,)?(\d)")
_ENDED = ("BUSY", "NO CARRIER", "NO ANSWER", "NO DIALTONE")
_POLL = 0.5  # seconds between two AT+CLCC during a call
_REFUSED = "the SIM refused the PIN of pin_file; it is not sent again until the gateway restarts"
_SIM = {"READY": "ready", "SIM PIN": "PIN required", "SIM PUK": "PUK required"}


class ModemError(TransientError):
    """The modem did not do what was asked; ``str()`` says why in one line."""


@dataclass(frozen=True, slots=True)
class Reading:
    """What one check of the modem found."""

    sim: str  # ready | PIN required | PUK required | not inserted | <other +CPIN state>
    registered: bool
    roaming: bool
    csq: int | None  # 0-31 (AT+CSQ), None when the modem does not know
    operator: str  # "" when not registered


def fit(text: str, max_parts: int) -> str:
    """``text`` cut to what ``max_parts`` concatenated SMS parts carry (3GPP TS 23.038/23.040).

    One part holds 160 GSM 7-bit or 70 UCS-2 characters; a part of a concatenated message 153
    or 67 (the user-data header takes 6 octets). Text that fits is returned unchanged; cut text
    ends in "…" (UCS-2) or "..." (GSM 7-bit, where "…" does not exist). GSM 7-bit characters
    that take two septets (``{}[]~|^€\\``) count as one here, so such text may need one part more.
    """
    try:
        encodeGsm7(text)
        one, part, mark = 160, 153, "..."  # "…" is not in the GSM alphabet: it would force UCS-2
    except ValueError:
        one, part, mark = 70, 67, "…"
    limit = one if max_parts == 1 else part * max_parts
    if len(text) <= limit:
        return text
    return text[: limit - len(mark)] + mark


class _Modem(GsmModem):  # type: ignore[misc]
    """``GsmModem`` that keeps unsolicited lines and survives undecodable bytes (see above)."""

    alive: bool  # the library's: its reader thread runs
    serial: serial.Serial

    def __init__(self, port: str, baudrate: int, write_timeout: float) -> None:
        # exclusive: a second opener (``cgw notify test`` while the gateway runs) is refused
        # instead of stealing half of the modem's answers
        super().__init__(
            port, baudrate, requestDelivery=False, write_timeout=write_timeout, exclusive=True
        )
        self.unsolicited: deque[str] = deque(maxlen=64)
        self.fatal: BaseException | None = None
        self.fatalErrorCallback = self._lost

    def _lost(self, exc: BaseException) -> None:
        self.fatal = exc

    def _handleModemNotification(self, lines: list[str]) -> None:
        self.unsolicited.extend(lines)

    def _readLoop(self) -> None:
        # The library's loop, decoding with replacement instead of dying on a bad byte.
        try:
            buffer = bytearray()
            while self.alive:
                data = self.serial.read(1)
                if not data:
                    continue
                buffer += data
                if buffer.endswith(b"\r\n"):
                    line = buffer[:-2].decode(errors="replace")
                    buffer = bytearray()
                    if line:
                        self._handleLineRead(line)
                elif self._expectResponseTermSeq and buffer.endswith(self._expectResponseTermSeq):
                    line = buffer.decode(errors="replace")
                    buffer = bytearray()
                    self._handleLineRead(line, checkForResponseTerm=False)
        except serial.SerialException as exc:
            self.alive = False
            self.serial.close()
            self.fatalErrorCallback(exc)


class Session:
    """An open AT session: ``open()`` unlocks the SIM and sets PDU mode; ``close()`` always."""

    def __init__(self, port: str, baudrate: int, *, pin: str | None, timeout: float) -> None:
        self._port = port
        self._baudrate = baudrate
        self._pin = pin
        self._timeout = timeout
        self._modem: _Modem | None = None
        self._pin_refused = False  # never send a refused PIN again: 3 wrong ones lock the SIM

    def open(self) -> None:
        """Open the port and initialise the modem (about 20 commands); ModemError if it fails."""
        modem = _Modem(self._port, self._baudrate, self._timeout)
        try:
            modem.connect(pin=None if self._pin_refused else self._pin)
        except IncorrectPinError as exc:
            self._pin_refused = True
            self._abandon(modem)
            raise ModemError(_REFUSED) from exc
        except PinRequiredError as exc:
            self._abandon(modem)
            raise ModemError(
                _REFUSED
                if self._pin_refused
                else "the SIM needs a PIN and no pin_file is configured"
            ) from exc
        except (GsmModemException, serial.SerialException, OSError) as exc:
            self._abandon(modem)
            raise ModemError(f"cannot open the modem: {_why(exc)}") from exc
        self._modem = modem

    @staticmethod
    def _abandon(modem: _Modem) -> None:
        if getattr(modem, "rxThread", None) is not None:
            modem.close()

    def close(self) -> None:
        """Stop the reader thread and close the port (waits up to one serial read, 1 s)."""
        modem, self._modem = self._modem, None
        if modem is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                modem.close()  # raises only when the port is gone already: nothing to release

    def _write(self, command: str, timeout: float | None = None, **kwargs: Any) -> list[str]:
        modem = self._modem
        if modem is None:
            raise ModemError("the modem is not open")
        if modem.fatal is not None or not modem.alive:
            raise ModemError(f"the modem is gone: {_why(modem.fatal)}")
        try:
            lines: list[str] = modem.write(command, timeout=timeout or self._timeout, **kwargs)
        except TimeoutException as exc:
            raise ModemError(f"no answer to {_verb(command)}") from exc
        except GsmModemException as exc:
            raise ModemError(f"{_verb(command)} refused: {_why(exc)}") from exc
        except (serial.SerialException, OSError) as exc:
            raise ModemError(f"the modem is gone: {_why(exc)}") from exc
        return lines

    def check(self) -> Reading:
        """SIM state, registration (2G/3G ``+CREG``, LTE ``+CEREG``), signal and operator."""
        try:
            cpin = self._write("AT+CPIN?")
        except ModemError as exc:
            if isinstance(exc.__cause__, CmeError) and exc.__cause__.code == 10:
                return Reading("not inserted", False, False, None, "")
            raise
        state = next((line[6:].strip() for line in cpin if line.startswith("+CPIN:")), "unknown")
        stats: list[int] = []
        for command in ("AT+CREG?", "AT+CEREG?"):
            try:
                lines = self._write(command)
            except ModemError as exc:
                if isinstance(exc.__cause__, TimeoutException):
                    raise
                continue  # a modem without LTE has no +CEREG
            stats += [int(m.group(1)) for m in map(_REG.match, lines) if m]
        registered = any(s in (1, 5) for s in stats)
        csq_lines = self._write("AT+CSQ")
        csq = next(
            (int(m.group(1)) for m in map(re.compile(r"^\+CSQ:\s*(\d+),").match, csq_lines) if m),
            99,
        )
        operator = ""
        if registered:
            cops = self._write("AT+COPS?")
            found = [re.match(r'^\+COPS:\s*\d,\d,"([^"]*)"', line) for line in cops]
            operator = next((m.group(1) for m in found if m), "")
        return Reading(
            _SIM.get(state, state),
            registered,
            5 in stats and 1 not in stats,
            None if csq == 99 else csq,
            operator,
        )

    def sms(self, number: str, text: str, sms_timeout: float) -> list[int]:
        """Send ``text`` to ``number`` in PDU mode; the network's reference of each part."""
        pdus = encodeSmsSubmitPdu(number, text, requestStatusReport=False)
        refs: list[int] = []
        for pdu in pdus:
            self._write(f"AT+CMGS={pdu.tpduLength}", expectedResponseTermSeq="> ")
            lines = self._write(str(pdu), sms_timeout, writeTerm=_CTRL_Z)
            ref = next((line[6:].strip() for line in lines if line.startswith("+CMGS:")), None)
            if ref is None or not ref.isdigit():
                raise ModemError("the modem did not confirm the SMS (no +CMGS)")
            refs.append(int(ref))
        return refs

    def call(self, number: str, ring: float, stop: threading.Event) -> str | None:
        """Ring ``number`` until answered, refused or ``ring`` s; None if answered, else why not.

        An answered call is hung up at once: it carries no speech, it wakes someone. ``stop``
        set (the gateway shuts down) hangs up too.
        """
        modem = self._modem
        if modem is None:
            raise ModemError("the modem is not open")
        modem.unsolicited.clear()
        self._write(f"ATD{number};")
        deadline = time.monotonic() + ring
        try:
            while time.monotonic() < deadline and not stop.wait(_POLL):
                ended = next((line for line in modem.unsolicited if line in _ENDED), None)
                if ended is not None:
                    return ended.lower()
                lines = self._write("AT+CLCC")
                ended = next((line for line in lines if line in _ENDED), None)
                if ended is not None:
                    return ended.lower()
                calls = [m for m in map(_CLCC.match, lines) if m]
                mine = [m for m in calls if m.group(2) == "0" and m.group(4) == "0"]  # MO voice
                if not mine:
                    ended = next((line for line in modem.unsolicited if line in _ENDED), None)
                    return ended.lower() if ended else "the call ended unanswered"
                if mine[0].group(3) == "0":  # stat 0: active, 27.007 §7.18
                    return None
            return "stopped" if stop.is_set() else f"not answered within {ring:g} s"
        finally:
            self._write("ATH")


def _verb(command: str) -> str:
    """The command without its arguments (no phone number or PDU in a reason)."""
    if not command.upper().startswith("AT"):
        return "the SMS text"
    return re.split(r"[=?]", command, maxsplit=1)[0] if command[2:3].upper() != "D" else "ATD"


def _why(exc: BaseException | None) -> str:
    """One line about ``exc``: a command error by its code only (its text holds the command,
    which may hold a phone number or PDU)."""
    if exc is None:
        return "the port closed"
    if isinstance(exc, CommandError):
        code = getattr(exc, "code", None)
        return f"{type(exc).__name__} {code}" if code is not None else type(exc).__name__
    return f"{type(exc).__name__}: {str(exc)[:120]}" if str(exc) else type(exc).__name__
