"""``shed_qos0``: the QoS 0 PUBLISH packets of a read are dropped, nothing else, in order."""

from hypothesis import example, given
from hypothesis import strategies as st

from gateway.transport.reader import shed_qos0
from tests.support.packets import publish


def pub(qos: int, size: int, *, dup: bool = False, retain: bool = False) -> bytes:
    """A PUBLISH on ``a/b`` with ``size`` payload bytes."""
    return publish("a/b", b"x" * size, qos, mid=7, dup=dup, retain=retain)


PUBACK = b"\x40\x02\x00\x07"
PINGRESP = b"\xd0\x00"
SUBACK = b"\x90\x03\x00\x01\x01"


def is_qos0_publish(packet: bytes) -> bool:
    return packet[0] >> 4 == 3 and (packet[0] >> 1) & 3 == 0


packets = st.one_of(
    st.builds(
        pub,
        st.integers(0, 2),
        st.sampled_from([0, 1, 100, 200, 20_000]),  # 1-, 2- and 3-byte remaining lengths
        dup=st.booleans(),
        retain=st.booleans(),
    ),
    st.sampled_from([PUBACK, PINGRESP, SUBACK]),
)


@given(
    st.lists(packets, max_size=30),
    st.binary(max_size=40),  # the tail of a packet read before: not scanned
    st.integers(0, 30_000),  # bytes cut off the end: a packet read in part
)
@example([pub(0, 1), pub(1, 1), PUBACK, pub(0, 200)], b"", 0)
def test_only_complete_qos0_publishes_go(stream: list[bytes], tail: bytes, cut: int) -> None:
    data = tail + b"".join(stream)
    cut = min(cut, len(data) - len(tail))
    data = data[: len(data) - cut]
    kept, dropped = shed_qos0(data, len(tail))
    expected, pos = [tail], len(tail)
    complete = 0
    for packet in stream:
        if pos + len(packet) > len(data):
            expected.append(data[pos:])  # cut off: kept as it is, whatever it is
            break
        if not is_qos0_publish(packet):
            expected.append(packet)
        else:
            complete += 1
        pos += len(packet)
    assert kept == b"".join(expected)
    assert dropped == complete


def test_a_malformed_remaining_length_stops_the_scan() -> None:
    """Five length bytes: paho refuses the packet; the scan leaves it and the rest alone."""
    bad = b"\x30\xff\xff\xff\xff\x01"
    data = pub(0, 3) + bad + pub(0, 3)
    assert shed_qos0(data, 0) == (bad + pub(0, 3), 1)


def test_nothing_to_shed_keeps_the_bytes() -> None:
    data = pub(1, 10) + PUBACK
    assert shed_qos0(data, 0) == (data, 0)
    assert shed_qos0(b"", 0) == (b"", 0)
