"""What the link-chaos tests share: the gateway they run, what they feed it, how they count.

The real daemon reads environment stations (``mqtt_json``) and an SOS button (``mqtt_button``)
on a local mosquitto and publishes upstream through an ``MqttProxy`` in front of a second
mosquitto (the platform's). ``Feed`` publishes readings at a fixed rate, each carrying its own
number (per station, from 0) in ``pm25`` and ``pm10``, and now and then presses a button it
has not pressed yet (one raised alarm each). ``Tally`` counts what reached the platform by the
dedup key ``(epoch, lane, seq)``: first copies, duplicates, the reading numbers per device, the gap
reports, the raised alarms with the arrival of their first copy, the seqs of the alarm lane,
the reports of messages the broker refused (``publish-refused``), and every availability
message (a device's ``device/<id>/status``, the gateway's ``status``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiomqtt
import pytest
import pytest_asyncio

from tests.support.daemon import Daemon, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.proxy import MqttProxy
from tests.support.subscriber import Received, Recorder

PREFIX = "cgw/s1/gw1"
STATIONS = ("es-1", "es-2", "es-3", "es-4")
BUTTONS = tuple(f"sos-{n}" for n in range(12))  # one per press: each press a new alarm


def config(store: Path, upstream: int, local: int, **mqtt: Any) -> dict[str, Any]:
    """Four stations and twelve SOS buttons on the local broker; ``mqtt`` adds to the upstream
    section (``publish_timeout``, ``keepalive``, ...)."""
    return {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(store), "quota": "16MiB", "reserve": "1MiB", "commit_interval": 0.2},
        "upstream": {"mqtt": {"host": "127.0.0.1", "port": upstream, **mqtt}},
        "local_broker": {"host": "127.0.0.1", "port": local},
        "devices": [
            {
                "kind": "mqtt_json",
                "id": "stations",
                "topic": "env/+/up",
                "device_from_topic": 1,
                "devices": list(STATIONS),
                "profile": "env-station-json",
                "interval": 1.0,  # offline after 3 s without a reading
            },
            {
                "kind": "mqtt_button",
                "id": "sos",
                "topic": "sos/+/event",
                "device_from_topic": 1,
                "devices": list(BUTTONS),
                "profile": "sos-state-json",
            },
        ],
        "alarms": {"rules": [{"kind": "contact", "id": "sos", "device": "*", "input": "sos"}]},
    }


async def ready(daemon: Daemon) -> None:
    """Both inputs subscribed and the upstream session up."""
    await daemon.wait_log("subscribed to 1 button topics")
    await daemon.wait_log("subscribed to 1 mqtt_json entries")
    await daemon.wait_log("connected to upstream broker")


@contextlib.asynccontextmanager
async def running(
    daemon: Daemon, doc: dict[str, Any], up: Mosquitto, local: Mosquitto, user: str | None = None
) -> AsyncIterator[tuple[Recorder, Feed]]:
    """The platform's recorder (as ``user``) and a feed, then the daemon on ``doc``, ready."""
    write_config(daemon.config, doc)
    async with (
        Recorder(up.host, up.port, f"{PREFIX}/#", username=user) as rec,
        Feed(local.port) as feed,
    ):
        daemon.start()
        await ready(daemon)
        yield rec, feed


def dead_letters(daemon: Daemon) -> list[str]:
    """What the gateway logged as dead-lettered: rows a server refused for good."""
    return [e["msg"] for e in daemon.logs() if e["logger"].endswith("_dead_letter")]


async def everything(rec: Recorder, feed: Feed, timeout: float = 15.0) -> Tally:  # noqa: ASYNC109
    """Wait until every reading and every press's alarm reached the platform; the tally."""

    def complete(_: object) -> bool:
        tally = Tally.of(rec.messages)
        return tally.telemetry >= feed.readings and len(tally.raised) >= len(feed.pressed_at)

    await rec.wait_for(complete, timeout)
    return Tally.of(rec.messages)


class Feed:
    """``async with Feed(local_port) as feed: await feed.run(seconds, rate, presses)``."""

    def __init__(self, port: int) -> None:
        self._client = aiomqtt.Client("127.0.0.1", port, identifier=f"feed-{os.getpid()}")
        self.sent: Counter[str] = Counter()  # readings per station
        self.pressed_at: list[float] = []  # time.monotonic() of each press

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.__aexit__(t, e, tb)

    @property
    def readings(self) -> int:
        """Readings published so far."""
        return sum(self.sent.values())

    async def reading(self) -> None:
        """One reading of the next station (round robin)."""
        station = STATIONS[self.readings % len(STATIONS)]
        n = self.sent[station]
        data = {"pm25": n % 1000, "pm10": n // 1000, "temp": 21.5, "hum": 40.0, "noise": 50.0}
        body = {"ts": int(time.time() * 1000), "data": data}
        await self._client.publish(f"env/{station}/up", json.dumps(body), qos=1)
        self.sent[station] += 1

    async def press(self) -> None:
        """Press the next button (each once): one raised alarm."""
        k = len(self.pressed_at)
        self.pressed_at.append(time.monotonic())
        body = {"id": f"press-{k}", "evt": "sos", "state": "pressed"}
        await self._client.publish(f"sos/{BUTTONS[k]}/event", json.dumps(body), qos=1)

    async def run(self, seconds: float, rate: float, presses: int = 0) -> None:
        """``rate`` readings a second for ``seconds`` s on an absolute schedule; ``presses``
        presses spread evenly over the time."""
        t0 = time.monotonic()
        total = int(seconds * rate)
        press_at = {int(total * (i + 1) / (presses + 1)) for i in range(presses)}
        for i in range(total):
            await self.reading()
            if i in press_at:
                await self.press()
            await asyncio.sleep(max(0.0, t0 + (i + 1) / rate - time.monotonic()))


@dataclass
class Tally:
    """What the platform got, counted by the dedup key."""

    readings: dict[str, set[int]] = field(default_factory=dict)  # station -> pm25 numbers
    telemetry: int = 0  # first copies
    duplicates: Counter[str] = field(default_factory=Counter)  # by lane
    gaps: int = 0  # readings the gap reports say were lost
    raised: dict[str, float] = field(default_factory=dict)  # button -> first raised alarm
    offline: list[str] = field(default_factory=list)  # devices reported offline
    gateway_offline: int = 0  # the gateway's "offline" (its will) while running
    alarm_seqs: set[int] = field(default_factory=set)  # every alarm-lane message, by seq
    refused: list[dict[str, Any]] = field(default_factory=list)  # publish-refused events

    @classmethod
    def of(cls, messages: Sequence[Received]) -> Tally:
        """Count ``messages`` (a recorder's, on ``PREFIX/#``)."""
        tally = cls()
        seen: set[tuple[Any, ...]] = set()
        for m in messages:
            doc = json.loads(m.payload)
            if m.topic == f"{PREFIX}/status":
                tally.gateway_offline += doc.get("state") == "offline" and not m.retain
                continue
            key = (doc.get("epoch"), doc["lane"], doc["seq"])
            if key in seen:
                tally.duplicates[doc["lane"]] += 1
                continue
            seen.add(key)
            tally.add(m, doc)
        return tally

    def add(self, m: Received, doc: dict[str, Any]) -> None:
        """Count the first copy of one message."""
        suffix = m.topic.removeprefix(f"{PREFIX}/")
        if doc["lane"] == "alarm":
            self.alarm_seqs.add(doc["seq"])
        if suffix.startswith("telemetry/"):
            self.telemetry += 1
            value = {p["name"]: p["value"] for p in doc["points"]}
            n = int(value["pm25"]) + 1000 * int(value["pm10"])
            self.readings.setdefault(suffix.split("/")[1], set()).add(n)
        elif suffix.startswith("alarm/") and doc["state"] == "raised":
            assert doc["device"] not in self.raised, f"{doc['device']} raised twice"
            self.raised[doc["device"]] = m.at
        elif suffix == "gap":
            self.gaps += int(doc["count"])
        elif suffix == "publish-refused":
            self.refused.append(doc)
        elif suffix.startswith("device/") and doc.get("state") == "offline":
            self.offline.append(doc["device"])

    def missing(self, sent: Counter[str]) -> int:
        """Readings sent and neither arrived nor gap-reported, over all stations."""
        return sum(len(set(range(n)) - self.readings.get(s, set())) for s, n in sent.items())

    def latencies(self, pressed_at: Sequence[float]) -> list[float]:
        """Press -> first copy of its alarm upstream (s), in press order, for those arrived."""
        return [
            self.raised[b] - at
            for b, at in zip(BUTTONS, pressed_at, strict=False)
            if b in self.raised
        ]

    @property
    def dups(self) -> int:
        """Duplicates over all lanes."""
        return sum(self.duplicates.values())


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[tuple[Mosquitto, Mosquitto]]:
    """The platform's broker (behind the proxy) and the community's local broker."""
    with Mosquitto(tmp_path / "upstream") as up, Mosquitto(tmp_path / "local") as local:
        yield up, local


@pytest_asyncio.fixture
async def proxy(brokers: tuple[Mosquitto, Mosquitto]) -> AsyncIterator[MqttProxy]:
    """The fault-injecting proxy in front of the platform's broker."""
    async with MqttProxy(brokers[0].host, brokers[0].port) as p:
        yield p
