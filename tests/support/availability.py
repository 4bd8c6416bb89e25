"""A month of a community's availability on a fake clock, written through the real recorder.

``november(site)`` plays Asia/Shanghai's November 2026 into a store file: a PM sensor polled every
minute (added by a reload on the 5th), a door terminal (from the 3rd) and a call button that
never reports its availability; outages across midnight, a crash right after a heartbeat and
a clean restart while the sensor is down. ``tests/integration/test_availability.py`` checks the
figures against hand-computed ones; the report's API and CLI tests read the same month.
"""

from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.core.access import AccessEvent
from gateway.core.clock import ManualClock
from gateway.core.messages import DeviceStatus, Quality, Reading, Sample
from gateway.pipeline.stages import Availability
from gateway.reports.history import DeviceInfo
from gateway.reports.recorder import Recorder
from gateway.reports.service import ReportService
from gateway.store import Store

ZONE = "Asia/Shanghai"
TZ = ZoneInfo(ZONE)
PM = DeviceInfo("pm-1", "modbus", "acme", 60.0)
DOOR = DeviceInfo("door-1", "door_terminal", "doorco", None)
BUTTON = DeviceInfo("btn-1", "mqtt_button", None, None)


def at(day: int, hour: int = 0, minute: int = 0, month: int = 11) -> float:
    """A local wall time in the community's zone."""
    return datetime(2026, month, day, hour, minute, tzinfo=TZ).timestamp()


class Site:
    """One gateway on a fake clock: its store file, its recorder and the availability stage.

    The PM sensor is read once a minute while it answers and the gateway runs; the recorder's
    heartbeat is written at local noon (and where a step asks for one).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.clock = ManualClock(wall=at(3, 12))
        self.store: Store | None = None
        self.recorder = Recorder(self.clock, ZONE)
        self.stage = Availability(self.recorder)
        self.pm_online = False

    def goto(self, t: float) -> None:
        self.clock.advance(t - self.clock.wall())

    async def start(self, t: float, devices: list[DeviceInfo]) -> None:
        """The gateway (re)starts at ``t``: a new process, so a new recorder."""
        self.goto(t)
        self.store = await Store.open(self.path, quota=4 << 20, reserve=1 << 20, sinks=["mqtt"])
        self.recorder = Recorder(self.clock, ZONE)
        self.stage = Availability(self.recorder)
        await self.recorder.begin(self.store, devices)

    async def stop(self, clean: bool) -> None:
        """A clean stop writes its stamp; a crash leaves the last heartbeat as it was."""
        assert self.store is not None
        if clean:
            await self.recorder.flush(self.store, clean=True)
        await self.store.close()
        self.store = None

    def pm(self, online: bool) -> None:
        self.pm_online = online
        self.stage(DeviceStatus("pm-1", online, self.clock.wall(), "ok" if online else "timeout"))

    def door(self, online: bool) -> None:
        now = self.clock.wall()
        self.stage(
            AccessEvent("door-1", "", "terminal_online" if online else "terminal_offline", now)
        )

    async def run_until(self, t: float, garbled: tuple[float, float] = (0.0, 0.0)) -> None:
        """Minute by minute to ``t``; a poll within ``garbled`` reads nothing (comm_error)."""
        assert self.store is not None
        now = self.clock.wall()
        while now < t:
            self.goto(now)
            if self.pm_online:
                bad = garbled[0] <= now < garbled[1]
                reading = Reading(
                    "pm25",
                    None if bad else 35,
                    "ug/m3",
                    Quality.COMM_ERROR if bad else Quality.GOOD,
                )
                self.stage(Sample("pm-1", now, (reading,)))
            if datetime.fromtimestamp(now, TZ).strftime("%H:%M") == "12:00":
                await self.recorder.flush(self.store)
            now += 60
        self.goto(t)

    async def heartbeat(self) -> None:
        assert self.store is not None
        await self.recorder.flush(self.store)

    async def report(self, first: date, last: date, by: str | None) -> dict[str, Any]:
        assert self.store is not None
        return await ReportService(
            self.store, self.recorder, lambda: ZONE, self.clock
        ).availability(first, last, by)


async def november(site: Site) -> None:
    """The month, as the module docstring tells it."""
    await site.start(at(3, 12), [DOOR, BUTTON])
    site.door(True)
    await site.run_until(at(5, 6))
    assert site.store is not None
    await site.recorder.begin(site.store, [PM, DOOR, BUTTON])  # a reload adds the sensor
    site.pm(True)
    await site.run_until(at(10, 23))
    site.pm(False)  # two hours across midnight
    await site.run_until(at(11, 1))
    site.pm(True)
    await site.run_until(at(15, 10))
    await site.heartbeat()
    await site.stop(clean=False)  # killed right after its heartbeat at 10:00
    await site.start(at(15, 10, 30), [PM, DOOR, BUTTON])
    site.pm(True)  # each first outcome after the start
    site.door(True)
    await site.run_until(at(20, 22, 30), garbled=(at(20, 12), at(20, 12, 10)))
    site.door(False)  # two hours across midnight
    await site.run_until(at(21, 0, 30))
    site.door(True)
    await site.run_until(at(25, 7, 30))
    site.pm(False)
    await site.run_until(at(25, 9))
    await site.stop(clean=True)  # stopped at 09:00 while the sensor is down, back at 09:20
    await site.start(at(25, 9, 20), [PM, DOOR, BUTTON])
    site.door(True)
    await site.run_until(at(25, 9, 21))
    site.pm(False)  # an offline device's first outcome comes after its failed polls
    await site.run_until(at(25, 10))
    site.pm(True)
    await site.run_until(at(1, month=12))
