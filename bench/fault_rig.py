"""The rig of ``faults.py``: the peers around ``cgw run`` and the exact counts each one keeps.

Contract:
- ``Slave`` is the devices' side: ``tests/support/lying_modbus.LyingServer`` on an event loop
  thread of its own, which can lie (exceptions, short or long answers, silence) where a row
  asks it to. A *counted* address answers with a uint32 that is the number of that answer
  (1, 2, 3, ...), so every reading upstream says which answer it came from: the readings a
  fault lost are exactly the numbers missing upstream, and where they lie (the tail of a
  gateway's life, the oldest of an outage) says why. ``answered()`` counts answers per counted
  address; ``silence()`` stops every answer at one instant (on the slave's loop), so a row can
  end with no reading on the wire.
- ``Platform`` is the upstream consumer: a paho QoS 1 subscriber with a persistent session
  (it outlives a broker restart when the broker persists), recording every message by the
  contract's dedup key ``(site_id, gateway_id, epoch, lane, seq)``: unique messages, copies of
  a key already seen (and of those, how many the broker itself redelivered to it, MQTT DUP),
  gap reports' counts per device, the first arrival of each raised alarm, and per counted
  device the answer numbers that arrived (bitmaps: a million seqs in 125 KB).
- ``Presser`` presses emergency buttons on the local broker: one QoS 1 message per press, each
  on a topic of its own with its own event id, so each press is one new alarm.
- ``Gateway`` is ``cgw run`` as systemd starts it (``harness.peers.Daemon``, ``READY=1``),
  started again after every kill on the same config and store; its JSON log, its monitor's
  metrics, its peak RSS (``VmHWM``) before each stop, and the store file read after the stop.

Everything runs on loopback; every process is stopped by PID (``harness.procs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from harness.measure import proc_status_mib
from harness.peers import Daemon
from harness.procs import GATEWAY, HOST, PREFIX, REPO, ROOT, SITE, free_port

sys.path.insert(0, str(REPO))  # the tests' peers: the lying Modbus slave, the disk helpers
from tests.support.lying_modbus import LyingServer

if TYPE_CHECKING:
    from paho.mqtt.client import Client, ConnectFlags, MQTTMessage
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

BUTTONS = "bench/btn/+/event"
STREAM_LANES = ("alarm", "event", "telemetry")


# -- the devices --------------------------------------------------------------------------------


class CountingServer(LyingServer):
    """A ``LyingServer`` whose counted addresses answer with the number of the answer."""

    def __init__(self, counted: Iterable[int], **lies: Any) -> None:
        super().__init__(**lies)
        self.counted: dict[int, int] = dict.fromkeys(counted, 0)

    def _answer(self, function: int, address: int, count: int) -> bytes:
        if function in (3, 4) and address in self.counted:
            n = self.counted[address] = self.counted[address] + 1
            self.registers[address], self.registers[address + 1] = n >> 16, n & 0xFFFF
        return super()._answer(function, address, count)


class Slave:
    """The Modbus TCP slave of every device, on an event loop thread of its own."""

    def __init__(self, counted: Iterable[int] = (), **lies: Any) -> None:
        self.server = CountingServer(counted, **lies)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="slave", daemon=True)
        self.silenced_at = math.nan  # monotonic time of ``silence``
        self._heard = -1  # requests received before ``silence``; -1 until then

    def __enter__(self) -> Slave:
        self._thread.start()
        self._call(self.server.__aenter__())
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._call(self.server.__aexit__(None, None, None))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    @property
    def port(self) -> int:
        """The slave's TCP port."""
        return self.server.port

    def answered(self) -> dict[int, int]:
        """Answers given so far, per counted address (the uint32 the last one carried)."""
        return dict(self.server.counted)

    def requests(self, before_silence: bool = False, by: str = "unit") -> Counter[int]:
        """Requests received so far (or until ``silence``), answered or not, per unit id (or
        per first address, ``by="address"``)."""
        reqs = list(self.server.requests)
        if before_silence and self._heard >= 0:
            reqs = reqs[: self._heard]
        return Counter(int(getattr(r, by)) for r in reqs)

    def silence(self) -> dict[int, int]:
        """From now on no unit answers; the answers given until then, per counted address."""

        async def now() -> dict[int, int]:
            self.server.silent |= set(range(1, 248))
            self.silenced_at = time.monotonic()
            self._heard = len(self.server.requests)
            return dict(self.server.counted)

        out: dict[int, int] = self._call(now())
        return out


# -- the platform -------------------------------------------------------------------------------


def run(client: Client, port: int, keepalive: int, ready: threading.Event, fail: str) -> None:
    """Connect ``client`` on its own thread; raise ``fail`` unless ``ready`` is set in 10 s."""
    client.connect(HOST, port, keepalive=keepalive)
    client.loop_start()
    if not ready.wait(10):
        raise RuntimeError(f"{fail} within 10 s")


def stop(client: Client | None) -> None:
    """Disconnect and stop the client's thread."""
    if client is not None:
        client.disconnect()
        client.loop_stop()


class SeqSet:
    """A set of positive integers as a bitmap; ``add`` says whether the number was new."""

    def __init__(self) -> None:
        self.bits = bytearray()
        self.count = 0

    def add(self, n: int) -> bool:
        i, b = divmod(n, 8)
        if i >= len(self.bits):
            self.bits.extend(bytes(i + 1 - len(self.bits) + len(self.bits) // 2))
        if self.bits[i] >> b & 1:
            return False
        self.bits[i] |= 1 << b
        self.count += 1
        return True

    def __contains__(self, n: object) -> bool:
        if not isinstance(n, int):
            return False
        i, b = divmod(n, 8)
        return i < len(self.bits) and bool(self.bits[i] >> b & 1)

    def missing(self, first: int, last: int) -> list[int]:
        """The numbers of ``first..last`` not in the set."""
        return [n for n in range(first, last + 1) if n not in self]


@dataclass
class Tally:
    """What the platform received, by dedup key; read it under ``Platform.lock``."""

    keys: dict[tuple[str, str], SeqSet] = field(default_factory=dict)  # (epoch, lane) -> seqs
    unique: Counter[str] = field(default_factory=Counter)  # lane -> first copies
    copies: Counter[str] = field(default_factory=Counter)  # lane -> copies of a seen key
    redelivered: int = 0  # of the copies: resent by the broker to us (MQTT DUP flag)
    telemetry: Counter[str] = field(default_factory=Counter)  # device -> first copies
    values: dict[str, SeqSet] = field(default_factory=dict)  # counted device -> answer numbers
    repeated: int = 0  # an answer number arrived again under a new key (never expected)
    no_value: Counter[str] = field(default_factory=Counter)  # device -> readings without value
    lies: Counter[str] = field(default_factory=Counter)  # device -> values of lying points
    gaps: Counter[str] = field(default_factory=Counter)  # device -> readings reported lost
    gap_reports: int = 0
    raised: dict[str, float] = field(default_factory=dict)  # device -> first arrival
    alarm_ids: dict[str, set[str]] = field(default_factory=dict)  # device -> raised alarm ids
    statuses: Counter[str] = field(default_factory=Counter)  # device -> status messages
    replaced: int = 0  # store-replaced events
    epochs: set[str] = field(default_factory=set)
    retained: int = 0  # retained copies sent on subscribing: not stream deliveries
    last: float = math.nan  # monotonic time of the last stream message


class Platform:
    """The platform's subscriber on ``<root>/<site>/<gateway>/#``, QoS 1, persistent session."""

    def __init__(
        self, port: int, counted: Iterable[str] = (), lying: dict[str, set[str]] | None = None
    ) -> None:
        self.port = port
        self.lock = threading.Lock()
        self.tally = Tally()
        self.tally.values = {d: SeqSet() for d in counted}
        self.lying = lying or {}  # device -> points whose every value would be a lie
        self._ready = threading.Event()
        self._client: Client | None = None

    def __enter__(self) -> Platform:
        from paho.mqtt.client import Client
        from paho.mqtt.enums import CallbackAPIVersion

        client = Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-platform-{os.getpid()}",
            clean_session=False,
        )  # fmt: skip
        # back within 0.2 s of a broker's return; paho sleeps these as floats (typed int)
        client.reconnect_delay_set(0.05, 0.2)  # type: ignore[arg-type]
        client.max_inflight_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_: self._ready.set()
        client.on_message = self._on_message
        self._client = client
        run(client, self.port, 600, self._ready, "platform subscriber: no SUBACK")  # outlives
        return self  # a SIGSTOPped broker: keepalive 600 s

    def __exit__(self, *exc: object) -> None:
        stop(self._client)

    def _on_connect(
        self, client: Client, _u: Any, flags: ConnectFlags, rc: ReasonCode, _p: Properties | None
    ) -> None:
        if not rc.is_failure and not flags.session_present:
            client.subscribe(f"{PREFIX}/#", qos=1)

    def _on_message(self, _c: Client, _u: Any, msg: MQTTMessage) -> None:
        now = time.monotonic()
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        lane = doc.get("lane") if isinstance(doc, dict) else None
        if lane not in STREAM_LANES:
            return  # the gateway's retained online/offline: a state, not a stream message
        with self.lock:
            self._count(doc, lane, msg, now)

    def _count(self, doc: dict[str, Any], lane: str, msg: MQTTMessage, now: float) -> None:
        t = self.tally
        if msg.retain:  # sent because we subscribed, not because it was published now
            t.retained += 1
            return
        epoch = str(doc.get("epoch", ""))
        seqs = t.keys.setdefault((epoch, lane), SeqSet())
        t.last = now
        if not seqs.add(int(doc["seq"])):
            t.copies[lane] += 1
            t.redelivered += int(msg.dup)
            return
        t.unique[lane] += 1
        t.epochs.add(epoch)
        topic = msg.topic[len(PREFIX) + 1 :]
        device = str(doc.get("device", ""))
        if lane == "telemetry":
            t.telemetry[device] += 1
            lying = self.lying.get(device)
            if lying:
                t.lies[device] += sum(
                    1 for p in doc["points"] if p["name"] in lying and p["value"] is not None
                )
            values = t.values.get(device)
            if values is not None:
                value = doc["points"][0]["value"]
                if value is None:
                    t.no_value[device] += 1
                elif not values.add(int(value)):
                    t.repeated += 1
        elif lane == "alarm":
            if doc.get("state") == "raised":
                t.raised.setdefault(device, now)
                t.alarm_ids.setdefault(device, set()).add(str(doc["alarm_id"]))
        elif topic == "gap":
            t.gaps[device] += int(doc["count"])
            t.gap_reports += 1
        elif topic == "store-replaced":
            t.replaced += 1
        elif topic.endswith("/status"):
            t.statuses[device] += 1

    def snapshot(self) -> Tally:
        """A copy of the counts that are plain numbers (bitmaps and sets shared)."""
        with self.lock:
            t = self.tally
            return Tally(
                keys=dict(t.keys), unique=Counter(t.unique), copies=Counter(t.copies),
                redelivered=t.redelivered, telemetry=Counter(t.telemetry), values=t.values,
                repeated=t.repeated, no_value=Counter(t.no_value), lies=Counter(t.lies),
                gaps=Counter(t.gaps),
                gap_reports=t.gap_reports, raised=dict(t.raised), alarm_ids=t.alarm_ids,
                statuses=Counter(t.statuses), replaced=t.replaced, epochs=set(t.epochs),
                retained=t.retained, last=t.last,
            )  # fmt: skip

    def wait(self, done: Any, timeout: float) -> bool:
        """Poll ``done(tally)`` every 50 ms until it holds (True) or ``timeout`` (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done(self.snapshot()):
                return True
            time.sleep(0.05)
        return False

    def quiet(self, seconds: float, timeout: float) -> bool:
        """Wait until no stream message arrived for ``seconds`` (True), or ``timeout``."""
        return self.wait(
            lambda t: math.isnan(t.last) or time.monotonic() - t.last >= seconds, timeout
        )


# -- the buttons --------------------------------------------------------------------------------


class Presser:
    """Emergency buttons on the local broker; ``press()`` is one new alarm."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent: dict[str, tuple[float, float]] = {}  # device -> (monotonic, wall) of press
        self._client: Client | None = None

    def __enter__(self) -> Presser:
        from paho.mqtt.client import Client
        from paho.mqtt.enums import CallbackAPIVersion

        connected = threading.Event()
        client = Client(CallbackAPIVersion.VERSION2, client_id=f"bench-presser-{os.getpid()}")
        client.on_connect = lambda *_: connected.set()
        self._client = client
        run(client, self.port, 60, connected, "presser: no CONNACK")
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self._client)

    def press(self) -> str:
        """Press the next button (``b0001``, ``b0002``, ...); its device id."""
        assert self._client is not None, "not connected"
        device = f"b{len(self.sent) + 1:04d}"
        payload = json.dumps({"id": f"ev-{device}-{os.getpid()}", "evt": "sos", "state": "pressed"})
        self.sent[device] = (time.monotonic(), time.time())
        self._client.publish(f"bench/btn/{device}/event", payload, qos=1)
        return device


# -- the gateway --------------------------------------------------------------------------------


def counted_devices(n: int, interval: float) -> list[dict[str, Any]]:
    """``dev-1`` .. ``dev-<n>``: unit k reads its answer counter (uint32) at address 2k."""
    return [
        {
            "kind": "modbus",
            "id": f"dev-{k}",
            "bus": "tcp",
            "unit_id": k,
            "interval": interval,
            "points": [{"name": "counter", "address": 2 * k, "type": "uint32"}],
        }
        for k in range(1, n + 1)
    ]


def gateway_doc(
    store: Path,
    upstream: int,
    local: int,
    slave: int,
    devices: list[dict[str, Any]],
    mqtt: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The config: devices on one Modbus TCP bus, a button on the local broker, the monitor.

    The shipped defaults everywhere (quota 256 MiB, ``commit_interval`` 1 s, keepalive 30 s,
    ``reconnect_max`` 2 s, ``max_inflight`` 100) except what ``mqtt`` sets upstream. The bus
    timeout is the shortest poll interval (the config allows no longer one).
    """
    timeout = min((float(d["interval"]) for d in devices), default=1.0)
    return {
        "gateway": {"site_id": SITE, "gateway_id": GATEWAY},
        "store": {"path": str(store), "quota": "256MiB", "reserve": "16MiB"},
        "upstream": {"mqtt": {"host": HOST, "port": upstream, "topic_root": ROOT, **(mqtt or {})}},
        "local_broker": {"host": HOST, "port": local},
        "buses": [
            {
                "id": "tcp",
                "kind": "modbus_tcp",
                "host": HOST,
                "port": slave,
                "timeout": timeout,
                "retries": 0,
            }
        ],
        "devices": [
            *devices,
            {
                "kind": "mqtt_button",
                "id": "bench-buttons",
                "topic": BUTTONS,
                "device_from_topic": 2,
                "profile": "sos-state-json",
            },
        ],
        "alarms": {
            "rules": [{"kind": "contact", "id": "sos", "device": "*"}],
            "storm": {"per_device": 1000, "window": 1},  # every press is a new cause anyway
        },
        "monitor": {"host": HOST, "port": listen_port()},
        "log_level": "INFO",
    }


def listen_port() -> int:
    """A free loopback port below the kernel's ephemeral range, for a listener.

    The gateway binds its monitor again at every start. A port from the ephemeral range (what
    binding port 0 gives) can meanwhile become the source port of some outgoing connection,
    and the next start then fails with "address already in use"; a real box listens on 9181,
    below that range.
    """
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket() as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return port
    return free_port()


def log_wall(entry: dict[str, Any]) -> float:
    """The wall time of a JSON log line (``ts`` is local time with milliseconds)."""
    ts = str(entry["ts"])
    return time.mktime(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) + int(ts[20:23]) / 1000


@dataclass
class StoreFile:
    """The store as the gateway left it (read after it stopped)."""

    epoch: str
    top: dict[str, int]  # lane -> highest seq ever given
    waiting: dict[str, int]  # lane -> rows not confirmed
    counters: dict[str, int]
    integrity: str


LANES = {0: "alarm", 1: "event", 2: "telemetry"}


def read_store(db: Path) -> StoreFile:
    """Open ``db`` after the gateway stopped cleanly (its WAL checkpointed) and read it."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        top = {LANES[ln]: nxt - 1 for ln, nxt in conn.execute("SELECT lane, next FROM lane_seq")}
        rows = conn.execute("SELECT lane, COUNT(*) FROM outbox GROUP BY lane")
        waiting = {LANES[ln]: n for ln, n in rows}
        counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
        (epoch,) = conn.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()
        (integrity,) = conn.execute("PRAGMA integrity_check").fetchone()
    finally:
        conn.close()
    return StoreFile(str(epoch), top, waiting, counters, str(integrity))


class Gateway:
    """``cgw run`` on one config and store, started as often as a row needs."""

    def __init__(self, tmp: Path, doc: dict[str, Any]) -> None:
        os.environ.setdefault("PYTHONFAULTHANDLER", "1")  # stacks on SIGABRT (``stop``)
        self.tmp = tmp
        self.doc = doc
        self.store = Path(doc["store"]["path"])
        self.config = tmp / "gateway.yaml"
        self.config.write_text(yaml.safe_dump(doc, sort_keys=False))
        self.log = tmp / "gateway.log"
        self.monitor = f"http://{HOST}:{doc['monitor']['port']}"
        self.peak_mib = 0.0  # the highest VmHWM of any life
        self.lives = 0
        self.daemon: Daemon | None = None

    def start(self) -> float:
        """Spawn ``cgw run``; seconds to its ``READY=1``."""
        self.daemon = Daemon(self.config, self.tmp)
        self.daemon.__enter__()
        self.lives += 1
        try:
            return self.daemon.wait_ready(60)
        except BaseException:
            self.daemon.__exit__(None, None, None)
            raise

    @property
    def pid(self) -> int:
        assert self.daemon is not None, "not started"
        return self.daemon.pid

    def _peak(self) -> None:
        self.peak_mib = max(self.peak_mib, proc_status_mib(self.pid, "VmHWM"))

    def _proc(self) -> subprocess.Popen[bytes]:
        assert self.daemon is not None, "not started"
        assert self.daemon.proc is not None, "not started"
        return self.daemon.proc

    def exited(self) -> int | None:
        """The exit code if this life already ended on its own, else None."""
        return self._proc().poll()

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would; reaped."""
        proc = self._proc()
        self._peak()
        os.kill(self.pid, signal.SIGKILL)
        proc.wait()
        assert self.daemon is not None
        self.daemon.__exit__(None, None, None)
        self.daemon = None

    def stop(self, timeout: float = 30.0) -> tuple[int | None, float]:
        """SIGTERM: (exit code, seconds it took); (None, inf) if it did not exit in time.

        A gateway still there after ``timeout`` gets SIGABRT first: ``faulthandler``
        (``PYTHONFAULTHANDLER``, set by ``faults.py``) writes every thread's stack to its log,
        then it is killed.
        """
        proc = self._proc()
        self._peak()
        t0 = time.monotonic()
        proc.terminate()
        rc: int | None = None
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        finally:
            assert self.daemon is not None
            self.daemon.__exit__(None, None, None)  # SIGKILL if it is still there
            self.daemon = None
        return rc, (time.monotonic() - t0) if rc is not None else math.inf

    def keep_log(self, folder: Path | None, name: str) -> None:
        """Copy the log of every life to ``folder/<name>.log`` (nothing if ``folder`` is None)."""
        if folder is not None and self.log.exists():
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}.log").write_bytes(self.log.read_bytes())

    def logs(self) -> list[dict[str, Any]]:
        """Every JSON log line of every life so far."""
        out = []
        with contextlib.suppress(OSError), self.log.open() as f:
            for line in f:
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        out.append(json.loads(line))
        return out

    def wait_log(self, pattern: str, after: float, timeout: float) -> dict[str, Any] | None:
        """The first log line matching ``pattern`` (a regex) at wall time >= ``after``."""
        deadline = time.monotonic() + timeout
        found = re.compile(pattern)
        while True:
            for entry in self.logs():
                if found.search(str(entry.get("msg", ""))) and log_wall(entry) >= after - 0.001:
                    return entry
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)

    def metrics(self) -> dict[str, float]:
        """The monitor's metrics, ``name{labels}`` -> value ({} if it does not answer)."""
        try:
            with urllib.request.urlopen(self.monitor + "/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
        return out

    def backlog(self) -> float:
        """Rows the MQTT sink has not confirmed (the monitor's figure; NaN if unreadable)."""
        return self.metrics().get('cgw_sink_backlog_rows{sink="mqtt"}', math.nan)

    def wait_drained(self, timeout: float) -> bool:
        """Until the sink has confirmed every row (True) or ``timeout`` (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.backlog() == 0:
                return True
            time.sleep(0.2)
        return False
