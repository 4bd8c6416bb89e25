"""The workers of ``flood.py``: each runs as ``flood.py --worker <kind>``.

Contract: a worker prints its protocol lines (``READY``, ``RESULT {json}``) on stdout; the
long-lived ones stop when stdin closes.
- ``flood``: one publisher of junk on the local broker, QoS 0, ``--rate`` msg/s for
  ``--duration`` s after a ``go`` line on stdin, in the mix ``MIX`` (worker ``--index`` of
  ``--workers`` takes every ``--workers``-th slot, so together they send the mix exactly).
  ``--client raw`` writes MQTT 3.1.1 PUBLISH packets on a plain socket (a few µs each);
  ``--client paho`` publishes through paho-mqtt (its network thread, ``on_publish`` counts
  what was written). Either way a message counts as sent once it is written to the socket.
- ``sys``: the broker's ``$SYS/broker/#`` counters, the last value of each (``RESULT`` at EOF).
- the SOS presser and the upstream subscriber are ``alarm_workers``' (``worker_press`` on
  ``bench/btn/<device>/event``, ``worker_sub`` on the alarm topics).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from harness.measure import max_rss_mib
from harness.procs import HOST, REPO, emit_result

sys.path.insert(0, str(REPO))  # the tests' raw MQTT packets
from tests.support.packets import connect, publish

SOS_DEVICES = 200  # configured buttons b0001..b0200; the presser uses the first ones
GARBAGE = "g0001"  # a configured button that sends garbage at a high rate
TERMINAL = "FG-A1"  # the configured door terminal
TICK = 0.005  # s between two bursts of a publisher
MAX_UNWRITTEN = 10_000  # paho: messages handed to paho and not written yet, at most
OVERSIZE = 5000  # bytes: above the buttons' max_payload (4096), below the broker's 65536

# (kind, slots of 100, what the gateway should count it as, before any rate limit)
MIX: tuple[tuple[str, int, str], ...] = (
    ("unknown_button", 35, "(not subscribed)"),  # a valid press from an id no entry lists
    ("unknown_door", 10, "(not subscribed)"),  # a valid door event from an unknown terminal
    ("malformed_button", 10, "not_json"),  # on the configured buttons' topics, round-robin
    ("malformed_door", 5, "not_utf8"),  # on the configured terminal's event topic
    ("oversize", 5, "too_large"),  # on the configured buttons' topics, round-robin
    ("garbage_valid", 20, "accepted"),  # the configured g0001: "released", a new id each
    ("garbage_unmapped", 10, "unmapped"),  # the configured g0001: a state in neither list
    ("heartbeat", 5, "accepted"),  # the configured terminal's heartbeat, over and over
)


def sos_device(i: int) -> str:
    """Configured button ``i`` (1-based): the presser's devices are the first ones."""
    return f"b{i:04d}"


def slots() -> list[str]:
    """The mix as 100 slots, interleaved (each kind spread over the cycle)."""
    weighted = [(kind, n) for kind, n, _ in MIX]
    out: list[str] = []
    counts = dict.fromkeys([k for k, _ in weighted], 0)
    for i in range(100):
        # the kind furthest behind its share at this point of the cycle
        kind = max(weighted, key=lambda kn: kn[1] * (i + 1) / 100 - counts[kn[0]])[0]
        counts[kind] += 1
        out.append(kind)
    return out


class Junk:
    """Topic and payload of the ``n``-th junk message of kind ``kind`` from worker ``w``."""

    def __init__(self, w: int) -> None:
        self.w = w
        self.big = b'{"id":"x","evt":"sos","state":"pressed","pad":"' + b"x" * OVERSIZE + b'"}'

    def __call__(self, kind: str, n: int) -> tuple[str, bytes]:
        w = self.w
        if kind == "unknown_button":
            return (
                f"bench/btn/u{w}x{n % 100_000:05d}/event",
                b'{"id":"j%d-%d","evt":"sos","state":"pressed"}' % (w, n),
            )
        if kind == "unknown_door":
            body = b'{"eventId":"j%d-%d","doorNo":1,"eventType":"DOOR_FORCED"}' % (w, n)
            return f"facegate/T{w}x{n % 100_000:05d}/event", body
        if kind == "malformed_button":
            return f"bench/btn/{sos_device(n % SOS_DEVICES + 1)}/event", b'{"id":"j%d-%d",' % (w, n)
        if kind == "malformed_door":
            return f"facegate/{TERMINAL}/event", b"\xff\xfe not json %d" % n
        if kind == "oversize":
            return f"bench/btn/{sos_device(n % SOS_DEVICES + 1)}/event", self.big
        if kind == "garbage_valid":
            body = b'{"id":"g%d-%d","evt":"sos","state":"released"}' % (w, n)
            return f"bench/btn/{GARBAGE}/event", body
        if kind == "garbage_unmapped":
            return f"bench/btn/{GARBAGE}/event", b'{"id":"u%d-%d","evt":"sos","state":7}' % (w, n)
        if kind == "heartbeat":
            return f"facegate/{TERMINAL}/heartbeat", b'{"status":"online"}'
        raise ValueError(kind)


# -- MQTT 3.1.1 on a plain socket (the cheap publisher) ----------------------------------------


class RawPublisher:
    """QoS 0 PUBLISH packets written on a plain socket: a few µs of CPU each."""

    def __init__(self, port: int, client_id: str) -> None:
        self.sock = connect(HOST, port, client_id)
        self.written = 0

    def send(self, batch: list[tuple[str, bytes]]) -> None:
        """Write ``batch``; blocks while the broker does not read (TCP flow control)."""
        self.sock.sendall(b"".join(publish(t, p) for t, p in batch))
        self.written += len(batch)

    def finish(self) -> None:
        self.sock.close()


class PahoPublisher:
    """paho-mqtt QoS 0 with its network thread; ``written`` counts its ``on_publish`` calls."""

    def __init__(self, port: int, client_id: str) -> None:
        from paho.mqtt.client import Client
        from paho.mqtt.enums import CallbackAPIVersion

        self.written = 0
        self.handed = 0
        self._connected = threading.Event()
        self.client = Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        self.client.on_connect = lambda *_: self._connected.set()
        self.client.on_publish = self._on_publish
        self.client.connect(HOST, port, keepalive=60)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise SystemExit("flood: no CONNACK within 10 s")

    def _on_publish(self, *_: object) -> None:
        self.written += 1  # paho's thread; the only writer of this count

    def send(self, batch: list[tuple[str, bytes]]) -> None:
        """Hand ``batch`` to paho, waiting while ``MAX_UNWRITTEN`` are not written yet."""
        while self.handed - self.written > MAX_UNWRITTEN:  # paho's queue is unbounded
            time.sleep(0.001)
        for topic, payload in batch:
            self.client.publish(topic, payload, qos=0)
        self.handed += len(batch)

    def finish(self) -> None:
        """Wait (30 s at most) until paho wrote what it was handed, then disconnect."""
        deadline = time.monotonic() + 30
        while self.written < self.handed and time.monotonic() < deadline:
            time.sleep(0.01)
        self.client.disconnect()
        self.client.loop_stop()


def worker_flood(args: argparse.Namespace) -> None:
    """Connect, ``READY``, wait for ``go``, publish the mix at ``--rate`` for ``--duration``.

    Bursts every ``TICK`` on an absolute schedule; a burst that cannot be written in time
    (the broker or the machine is slower) makes the next ones late, never skipped, so the
    achieved rate is what was written over the time it took.
    """
    cycle = slots()
    mine = [cycle[i] for i in range(args.index, 100, args.workers)]
    junk = Junk(args.index)
    cid = f"flood-{args.index}"
    pub = RawPublisher(args.port, cid) if args.client == "raw" else PahoPublisher(args.port, cid)
    print("READY", flush=True)
    if not sys.stdin.readline():
        pub.finish()
        return
    per_tick = args.rate / args.workers * TICK
    sent: dict[str, int] = {}
    n = tick = 0
    due = 0.0
    t0 = time.monotonic()
    end = t0 + args.duration
    while time.monotonic() < end:
        due += per_tick
        k = int(due)
        due -= k
        batch = []
        for _ in range(k):
            kind = mine[n % len(mine)]
            sent[kind] = sent.get(kind, 0) + 1
            batch.append(junk(kind, n))
            n += 1
        if batch:
            pub.send(batch)
        tick += 1
        delay = t0 + tick * TICK - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    seconds = time.monotonic() - t0
    pub.finish()
    emit_result(
        {
            "sent": sent,
            "offered": n,
            "written": pub.written,
            "seconds": seconds,
            "max_rss_mib": max_rss_mib(),
        }
    )


# -- worker: the broker's $SYS counters --------------------------------------------------------


def worker_sys(args: argparse.Namespace) -> None:
    """``$SYS/broker/#`` of the broker: ``SYS {topic: value}`` for every line read on stdin."""
    from paho.mqtt.client import Client, MQTTMessage
    from paho.mqtt.enums import CallbackAPIVersion

    last: dict[str, str] = {}
    lock = threading.Lock()
    subscribed = threading.Event()

    def on_message(_c: Client, _u: object, msg: MQTTMessage) -> None:
        with lock:
            last[msg.topic] = msg.payload.decode(errors="replace")

    client = Client(CallbackAPIVersion.VERSION2, client_id="flood-sys", clean_session=True)
    client.on_connect = lambda c, *_: c.subscribe("$SYS/broker/#", 0)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = on_message
    client.connect(HOST, args.port, keepalive=60)
    client.loop_start()
    try:
        if not subscribed.wait(10):
            raise SystemExit("sys: no SUBACK within 10 s")
        print("READY", flush=True)
        for _ in sys.stdin:
            with lock:
                print("SYS " + json.dumps(last), flush=True)
    finally:
        client.disconnect()
        client.loop_stop()
