"""Free loopback ports for peers that cannot bind port 0 and report it (LIBRARIES.md §3.4, P21)."""

from __future__ import annotations

import contextlib
import socket

__all__ = ["free_port", "free_ports"]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago.

    Binds ``(host, 0)``, reads the port the kernel picked and closes the socket. Another process
    may take the port before the caller binds it (a small race, fine in tests); callers that can
    detect a failed bind retry with a new port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct ports that were free on ``host`` a moment ago.

    All sockets stay bound until every port is picked: ``free_port()`` twice in a row can return
    the same port, since the kernel may hand a port out again as soon as its socket closes.
    """
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports
