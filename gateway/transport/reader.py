"""A cheaper read path for paho on a plain TCP socket: whole socket buffers, QoS 0 shed when behind.

Read in paho-mqtt 2.2's and aiomqtt 2.5.1's source:
- paho reads a packet with one ``recv(1)`` for its first byte, one per byte of its remaining
  length and at least one more for the rest (``Client._packet_read``), and ``loop_read()``
  reads one packet a call (more only while messages of QoS 1 or 2 are in flight): three or
  more syscalls per message.
- aiomqtt's reader (``Client._on_socket_open``: ``loop.add_reader`` on the socket's fd) calls
  ``loop_read()`` again while ``sock.pending()`` is positive: the hook kept for SSL sockets,
  whose decrypted bytes make no fd readable (paho issue 131). Bytes held in user space wake no
  selector, so whatever is buffered must be parsed before the reader returns.
- paho makes its socket in ``Client._create_socket`` (on aiomqtt's connect thread) and then
  calls ``recv``, ``send``, ``setblocking``, ``fileno``, ``close`` and ``pending`` on it.

``install(client, loop, shed_after, on_shed)`` makes ``client``'s paho wrap each plain TCP
socket it makes in a ``Buffered``. Contract:
- ``recv(n)`` serves the buffer. With the buffer empty it reads from the kernel, ``CHUNK``
  bytes at most a read, until it has handed paho ``CHUNK`` bytes in this event-loop turn (or
  read ``READS_MAX`` times); asked again in the same turn it raises ``BlockingIOError``, as a
  socket with nothing to read would (paho keeps its partial packet, and the fd, still
  readable, wakes the reader on the next turn). So one wake-up parses up to ``CHUNK`` bytes of
  packets and never holds the loop for longer, however fast bytes come; what is shed does not
  count, so a reader that is behind drains the backlog in a few turns.
- ``pending()`` is the number of bytes buffered: aiomqtt's reader parses until none is left,
  so no byte ever waits in the buffer (it is empty whenever the reader returns).
- Shedding (``shed_after`` not None): after a read that filled ``CHUNK``, if the kernel still
  holds ``shed_after`` bytes or more for this socket (``FIONREAD``), the gateway is behind:
  past the kernel's buffers the rest waits in the broker's queue for this session, which
  mosquitto 2.0.11 bounds by count with QoS 1 messages in it (docs/performance.md, "A junk
  flood"). Then every complete QoS 0 PUBLISH of what was read is dropped before paho sees it
  and counted (``on_shed(n)``). QoS 1 and 2 PUBLISHes and every other packet (CONNACK,
  SUBACK, PUBACK, PINGRESP, ...) are kept, in order. The scan starts at a packet boundary
  known from paho's own read state (``_in_packet``); when paho is inside a fixed header, that
  read is not shed.
- TLS, websocket and unix sockets are left as paho made them (an SSL socket's ``pending()`` is
  its own).
- ``recv`` runs on the event loop only (aiomqtt's reader): it schedules the turn's end there.
"""

import asyncio
import fcntl
import socket
import struct
import termios
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiomqtt

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike

CHUNK = 65536  # bytes handed to paho per event-loop turn, at most (and read at once)
READS_MAX = 64  # reads from the kernel per event-loop turn, at most (shed bytes do not count)
_FIONREAD = struct.Struct("i")


class Buffered:
    """paho's socket, read a whole buffer at a time (see the module docstring)."""

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        *,
        shed_after: int | None = None,
        boundary: Callable[[], int | None] = lambda: 0,
        on_shed: Callable[[int], None] = lambda n: None,
    ) -> None:
        """``boundary()``: how many bytes of the next read finish the packet paho is reading
        (0 at a packet boundary), None when that is not known."""
        self.sock = sock
        self.loop = loop
        self.shed_after = shed_after
        self.boundary = boundary
        self.on_shed = on_shed
        self.reads = 0  # reads from the kernel that returned bytes
        self.shed = 0  # QoS 0 PUBLISH packets dropped
        self._data = b""
        self._pos = 0
        self._turn = [0, 0]  # this event-loop turn: bytes handed to paho, reads

    def recv(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes, from the buffer; see the contract for when it is empty."""
        pos = self._pos
        if pos >= len(self._data):
            self._fill()
            pos = 0
        end = min(pos + bufsize, len(self._data))
        self._pos = end
        return self._data[pos:end]

    def pending(self) -> int:
        """Bytes buffered and not yet handed to paho."""
        return len(self._data) - self._pos

    def _fill(self) -> None:
        turn = self._turn
        while True:
            if turn[0] >= CHUNK or turn[1] >= READS_MAX:
                raise BlockingIOError("enough for this turn")
            data = self.sock.recv(CHUNK)  # BlockingIOError when there is nothing: paho's
            if not turn[1]:
                self.loop.call_soon(self._next_turn)
            turn[1] += 1
            if not data:
                break  # the peer closed, and paho sees it
            self.reads += 1
            if len(data) == CHUNK and self.shed_after is not None and self._behind():
                data = self._shed(data)
            turn[0] += len(data)
            if data:
                break
        self._data, self._pos = data, 0

    def _next_turn(self) -> None:
        self._turn = [0, 0]

    def _behind(self) -> bool:
        waiting = fcntl.ioctl(self.sock.fileno(), termios.FIONREAD, bytes(_FIONREAD.size))
        (count,) = _FIONREAD.unpack(waiting)
        assert self.shed_after is not None
        return bool(count >= self.shed_after)

    def _shed(self, data: bytes) -> bytes:
        start = self.boundary()
        if start is None or start > len(data):
            return data
        kept, dropped = shed_qos0(data, start)
        if dropped:
            self.shed += dropped
            self.on_shed(dropped)
        return kept

    # the rest is the socket's
    def send(self, data: bytes | bytearray) -> int:
        """Write to the socket."""
        return self.sock.send(data)

    def setblocking(self, flag: bool) -> None:
        """As the socket's."""
        self.sock.setblocking(flag)

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        """As the socket's."""
        self.sock.setsockopt(level, option, value)

    def fileno(self) -> int:
        """The socket's fd, which aiomqtt watches."""
        return self.sock.fileno()

    def close(self) -> None:
        """Close the socket; what is buffered goes with it."""
        self._data, self._pos = b"", 0
        self.sock.close()


def shed_qos0(data: bytes, start: int) -> tuple[bytes, int]:
    """``data`` without its complete QoS 0 PUBLISH packets, and how many were dropped.

    ``data[:start]`` ends a packet read before (kept as it is); packets start at ``start``.
    A packet cut off at the end, and everything after a malformed remaining length (paho
    refuses it), is kept as it is. MQTT 3.1.1 §2.2: the first byte is the type in its high
    nibble and, for PUBLISH (3), DUP, QoS (two bits) and RETAIN; then the remaining length, 7
    bits a byte, at most four bytes.
    """
    n = len(data)
    pieces = [data[:start]]
    keep_from = i = start
    dropped = 0
    while i < n:
        first = data[i]
        j, length, shift = i + 1, 0, 0
        while True:
            if j >= n or shift > 21:
                return _joined(pieces, data, keep_from), dropped
            byte = data[j]
            j += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        end = j + length
        if end > n:
            break
        if first & 0xF6 == 0x30:  # PUBLISH with QoS 0, whatever DUP and RETAIN say
            pieces.append(data[keep_from:i])
            keep_from = end
            dropped += 1
        i = end
    return _joined(pieces, data, keep_from), dropped


def _joined(pieces: list[bytes], data: bytes, keep_from: int) -> bytes:
    pieces.append(data[keep_from:])
    return b"".join(pieces)


def install(
    client: aiomqtt.Client,
    loop: asyncio.AbstractEventLoop,
    *,
    shed_after: int | None = None,
    on_shed: Callable[[int], None] = lambda n: None,
) -> None:
    """Wrap each plain TCP socket ``client``'s paho makes in a ``Buffered``."""
    paho = client._client
    make = paho._create_socket

    def boundary() -> int | None:
        state = paho._in_packet  # paho's partial packet: see its _packet_read
        if not state["command"]:
            return 0
        return state["to_process"] if state["have_remaining"] else None

    def create() -> "SocketLike":
        sock = make()
        if type(sock) is not socket.socket or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return sock
        return Buffered(sock, loop, shed_after=shed_after, boundary=boundary, on_shed=on_shed)

    paho._create_socket = create  # type: ignore[method-assign]
