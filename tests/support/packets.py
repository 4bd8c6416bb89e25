"""MQTT 3.1.1 packets as bytes, and a publisher that writes them on a plain socket.

For tests that need a stream of packets exactly as a broker or a device would write it: the
reader seam's scan (``gateway.transport.reader``) and a burst faster than any client library
publishes.
"""

import socket
import struct


def remaining(n: int) -> bytes:
    """The "remaining length" of a fixed header: 7 bits a byte, low first (§2.2.3)."""
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish(
    topic: str,
    payload: bytes,
    qos: int = 0,
    *,
    mid: int = 1,
    dup: bool = False,
    retain: bool = False,
) -> bytes:
    """A PUBLISH (§3.3): a packet id from QoS 1 on."""
    t = topic.encode()
    body = struct.pack("!H", len(t)) + t + (struct.pack("!H", mid) if qos else b"") + payload
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    return bytes([first]) + remaining(len(body)) + body


def connect(host: str, port: int, client_id: str) -> socket.socket:
    """A clean session with keepalive 0 on a blocking socket, its CONNACK checked (§3.1, §3.2)."""
    sock = socket.create_connection((host, port))
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x00" + struct.pack("!H", len(cid)) + cid
    sock.sendall(b"\x10" + remaining(len(body)) + body)
    ack = b""
    while len(ack) < 4:
        chunk = sock.recv(4 - len(ack))
        if not chunk:
            raise ConnectionError("the broker closed the connection before CONNACK")
        ack += chunk
    if ack != b"\x20\x02\x00\x00":
        raise ConnectionError(f"CONNACK {ack.hex()}")
    return sock
