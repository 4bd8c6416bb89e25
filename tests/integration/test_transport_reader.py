"""The buffered read path (``gateway.transport.reader``) under paho, against a real mosquitto.

Bursts are written as raw MQTT packets on a plain socket (``tests.support.packets``), far
faster than a client library publishes, so the session's socket holds many packets at once.
What is checked: one kernel read hands paho many packets, and the reader never returns with
bytes left in its buffer (nothing would wake it: the last message of a burst would wait for
the next keepalive); one read per event-loop turn at most; QoS 0 shed when behind and QoS 1
never, every message either delivered or counted.
"""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, closing

import pytest

from gateway.transport.mqtt import Endpoint, Retry, Session
from gateway.transport.reader import CHUNK, Buffered
from tests.support.mosquitto import Mosquitto
from tests.support.packets import connect, publish
from tests.support.wait import wait_until


def session(port: int, shed_after: int | None) -> Session:
    endpoint = Endpoint(
        "127.0.0.1",
        port,
        "reader-under-test",
        keepalive=60,  # no PINGRESP in the test's time: only the burst makes the fd readable
        timeout=5.0,
        buffered=True,
        shed_after=shed_after,
    )
    return Session(
        endpoint,
        Retry(0.05, 0.2),
        label="test broker",
        down="testing",
        subscriptions=[("burst/#", 1)],
    )


@asynccontextmanager
async def delivering(
    sess: Session, deliver: Callable[[str, bytes], None]
) -> AsyncIterator[Buffered]:
    """``sess`` running with ``deliver``, connected; its paho socket."""
    task = asyncio.create_task(sess.run(sess.closed, deliver), name="test:session")
    try:
        await wait_until(sess.connected.is_set, "connected")
        assert sess.client is not None
        sock = sess.client._client.socket()
        assert isinstance(sock, Buffered)
        yield sock
    finally:
        task.cancel()
        await asyncio.wait({task})


async def burst(broker: Mosquitto, packets: list[bytes]) -> None:
    """Write ``packets`` in one go from a raw publisher, then take its PUBACKs: a socket closed
    with bytes unread is reset, and the broker would drop what it had not read yet."""
    acks = 4 * sum(1 for p in packets if p[0] & 0x06)
    sock = connect(broker.host, broker.port, "burst-publisher")

    def write() -> None:
        sock.sendall(b"".join(packets))
        got = 0
        while got < acks:
            got += len(sock.recv(acks - got))
        sock.sendall(b"\xe0\x00")  # DISCONNECT

    with closing(sock):
        await asyncio.to_thread(write)


async def test_a_read_hands_paho_many_packets_and_leaves_no_byte_behind(
    mosquitto: Mosquitto,
) -> None:
    n = 5000
    got: list[bytes] = []
    all_in = asyncio.Event()

    def deliver(topic: str, payload: bytes) -> None:
        got.append(payload)
        if len(got) == n:
            all_in.set()

    sess = session(mosquitto.port, shed_after=None)
    async with delivering(sess, deliver) as sock:
        await burst(mosquitto, [publish(f"burst/{i % 7}", b"%d" % i) for i in range(n)])
        await asyncio.wait_for(all_in.wait(), 10)
        reads = sock.reads
        assert sock.pending() == 0
    assert got == [b"%d" % i for i in range(n)]
    assert reads <= n // 50  # ~20 bytes a packet: hundreds of packets a read


async def test_one_kernel_read_per_event_loop_turn() -> None:
    """Asked again in the turn of its read, with its buffer empty, the reader says "nothing
    yet" however much the kernel holds; the next turn reads again."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    with closing(ours), closing(theirs):
        ours.setblocking(False)
        theirs.sendall(b"x" * (CHUNK + 10))
        sock = Buffered(ours, loop)
        assert len(sock.recv(CHUNK + 10)) == CHUNK
        assert sock.pending() == 0
        with pytest.raises(BlockingIOError):
            sock.recv(1)
        await asyncio.sleep(0)  # one turn of the loop
        assert sock.recv(100) == b"x" * 10
        assert sock.reads == 2


async def test_a_reader_behind_drains_past_what_it_sheds_in_one_turn() -> None:
    """Shed bytes do not count against the turn's ``CHUNK``: four buffers of QoS 0 junk, then
    a QoS 1 press, and the press is in the first turn's hands. (64-byte packets: each read
    starts at a packet boundary, as ``boundary`` says by default.)"""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    with closing(ours), closing(theirs):
        ours.setblocking(False)
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        junk = publish("junk", b"j" * 56)
        assert len(junk) == 64
        press = publish("press", b"p", qos=1, mid=9)
        theirs.sendall(junk * (4 * CHUNK // 64) + press)
        sock = Buffered(ours, loop, shed_after=0)
        read = b""
        with contextlib.suppress(BlockingIOError):
            while True:
                read += sock.recv(CHUNK)
        assert read == press
        assert (sock.reads, sock.shed) == (5, 4 * CHUNK // 64)


async def test_behind_qos0_is_shed_and_qos1_never(mosquitto: Mosquitto) -> None:
    """``shed_after=0``: every read that fills the buffer sheds its QoS 0 messages. Each QoS 0
    message is delivered or counted as shed; every QoS 1 message is delivered, in order."""
    n, every = 20_000, 100  # every 100th message QoS 1

    def packet(i: int) -> bytes:
        qos = 1 if i % every == 0 else 0
        return publish(f"burst/{qos}", b"%d:" % i + b"p" * 200, qos, mid=i + 1)

    n1 = n // every
    got: dict[str, list[int]] = {"burst/0": [], "burst/1": []}
    all_in = asyncio.Event()
    sess = session(mosquitto.port, shed_after=0)

    def deliver(topic: str, payload: bytes) -> None:
        got[topic].append(int(payload.split(b":")[0]))
        check(0)

    def check(shed: int) -> None:
        if len(got["burst/1"]) == n1 and len(got["burst/0"]) + sess.shed == n - n1:
            all_in.set()

    sess.on_shed = check
    async with delivering(sess, deliver):
        await burst(mosquitto, [packet(i) for i in range(n)])
        await asyncio.wait_for(all_in.wait(), 20)
    assert got["burst/1"] == list(range(0, n, every))
    zeros = got["burst/0"]
    assert zeros == sorted(zeros)
    assert sess.shed > 0
    assert len(zeros) + sess.shed == n - n1
