"""The daily reports: each day published once, the day after, missed days caught up.

First on a fake clock against the store alone (when a day is due, restarts, a later
``publish_at``, the clock stepping back), then the whole gateway in this process on a fake
clock with a real mosquitto behind a proxy: the reports of the days it was off are published
while the uplink is down, delivered once it is back, and never again after another restart.
"""

import asyncio
import json
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.alarms.lifecycle import to_dict
from gateway.alarms.model import Alarm, State
from gateway.config import validate
from gateway.config.alarms import AlarmsConfig
from gateway.config.modbus import PointConfig
from gateway.config.reports import ReportsConfig
from gateway.core.clock import ManualClock
from gateway.core.contract import Identity, render
from gateway.demo.sim import SimulatedDevice, Simulator
from gateway.reports.daily import DailyReports
from gateway.reports.history import DeviceInfo
from gateway.reports.recorder import Recorder
from gateway.reports.service import ReportService
from gateway.runtime.root import Runtime
from gateway.store import Store
from tests.support.mosquitto import Mosquitto
from tests.support.proxy import MqttProxy
from tests.support.schemas import validate_message
from tests.support.subscriber import Recorder as Subscriber

ZONE = "Asia/Shanghai"
TZ = ZoneInfo(ZONE)
PREFIX = "cgw/s1/gw1"


def at(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=TZ).timestamp()


async def published(store: Store) -> list[dict[str, Any]]:
    """The report messages in the outbox, rendered and checked against their schemas."""
    ident = Identity("cgw", "s1", "gw1", store.epoch)
    out = []
    for row in await store.fetch("mqtt", 1000):
        topic, payload = render(ident, row)
        if "/report/" in topic:
            out.append({"topic": topic.removeprefix(PREFIX + "/")} | validate_message(
                PREFIX, topic, payload
            ))  # fmt: skip
    return out


def late_alarm(raised: float, acked: float) -> dict[str, Any]:
    alarm = Alarm(
        id="a1", cause="sos/btn-1/b1", rule="sos", kind="contact", device="btn-1",
        severity="critical", latched=True, ladder="default", message="emergency input b1 pressed",
        state=State.ACKNOWLEDGED, active=False, raised_at=raised, raised_mono=0.0,
        acked_at=acked, acked_by="guard-wang",
    )  # fmt: skip
    return to_dict(alarm)


async def test_each_day_once_at_local_midnight_missed_days_after_restarts(tmp_path: Path) -> None:
    clock = ManualClock(wall=at(27, 10))
    store = await Store.open(tmp_path / "b.db", quota=4 << 20, reserve=1 << 20, sinks=["mqtt"])
    recorder = Recorder(clock, ZONE)
    service = ReportService(store, recorder, lambda: ZONE, clock)
    alarms = AlarmsConfig(timezone=ZONE)

    def daily(**reports: Any) -> DailyReports:
        cfg = ReportsConfig.model_validate(reports)
        return DailyReports(service, store, clock, lambda: True, cfg, alarms)

    try:
        await recorder.begin(store, [DeviceInfo("pm-1", "modbus", "acme", 60.0)])
        recorder.availability("pm-1", True, clock.wall())
        body = late_alarm(at(27, 19), at(27, 19, 9))  # acknowledged after 9 minutes: late
        await store.transact(
            lambda c: c.execute(
                "INSERT INTO alarms(id, open, raised_at, body) VALUES('a1', 0, ?, ?)",
                (body["raised_at"], json.dumps(body)),
            )
        )
        first = daily()
        assert await first.publish_due() == date(2026, 11, 26)  # the first start: nothing older
        clock.advance(at(27, 23, 59, 59) - clock.wall())
        await first.publish_due()
        assert await published(store) == []
        clock.advance(1)  # local midnight
        assert await first.publish_due() == date(2026, 11, 27)
        uptime, answers = await published(store)
        assert (uptime["topic"], uptime["day"], uptime["timezone"]) == (
            "report/availability", "2026-11-27", ZONE,
        )  # fmt: skip
        assert (uptime["from"], uptime["to"]) == (
            "2026-11-26T16:00:00.000Z",
            "2026-11-27T16:00:00.000Z",
        )
        (pm,) = uptime["devices"]
        assert (pm["device"], pm["counted_s"], pm["uptime_pct"]) == ("pm-1", 50400.0, 100.0)
        assert answers["topic"] == "report/response"
        assert (answers["all"]["alarms"], answers["critical"]["within_target"]) == (1, 0)
        assert answers["late"] == [
            {"id": "a1", "device": "btn-1", "severity": "critical",
             "raised_at": "2026-11-27T11:00:00.000Z", "time_to_ack_s": 540.0,
             "acked_by": "guard-wang"},
        ]  # fmt: skip

        clock.advance(at(30, 0, 10) - clock.wall())  # off over two midnights
        again = daily()  # a restart: the mark is in the store
        assert await again.publish_due() == date(2026, 11, 29)
        assert [(m["topic"], m["day"]) for m in await published(store)] == [
            ("report/availability", "2026-11-28"), ("report/response", "2026-11-28"),
            ("report/availability", "2026-11-29"), ("report/response", "2026-11-29"),
        ]  # fmt: skip
        assert await daily().publish_due() == date(2026, 11, 29)  # and once only
        assert await published(store) == []

        later = daily(publish_at="06:00")
        clock.advance(datetime(2026, 12, 1, 5, 59, tzinfo=TZ).timestamp() - clock.wall())
        await later.publish_due()
        assert await published(store) == []
        clock.advance(60)
        assert await later.publish_due() == date(2026, 11, 30)
        assert [m["day"] for m in await published(store)] == ["2026-11-30"] * 2
        assert later.due_at(date(2026, 12, 1)) == datetime(2026, 12, 2, 6, tzinfo=TZ).timestamp()

        clock.advance(-3 * 86400)  # the clock steps back three days: Nov 28, 06:00
        assert await daily().publish_due() == date(2026, 11, 27)  # the 28th on go again
        clock.advance(86400)
        assert await daily().publish_due() == date(2026, 11, 28)
        assert [m["day"] for m in await published(store)] == ["2026-11-28"] * 2
    finally:
        await store.close()


def site(tmp_path: Path, upstream: int, modbus: int) -> dict[str, Any]:
    """One Modbus sensor, the uplink through the proxy; Asia/Shanghai, reports at midnight."""
    return {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(tmp_path / "buf.db"), "commit_interval": 0.1},
        "upstream": {"mqtt": {"host": "127.0.0.1", "port": upstream, "reconnect_max": 1}},
        "buses": [{"id": "tcp", "kind": "modbus_tcp", "host": "127.0.0.1", "port": modbus,
                   "timeout": 1.0, "retries": 0}],
        "devices": [{"kind": "modbus", "id": "dev-1", "bus": "tcp", "unit_id": 1, "interval": 60,
                     "supplier": "acme", "points": [{"name": "counter", "address": 0}]}],
        "alarms": {"timezone": ZONE},
    }  # fmt: skip


async def running(
    runtime: Runtime, body: Callable[[], Any], stop: asyncio.Event | None = None
) -> None:
    """Run the gateway until ``body`` is done, then stop it in order."""
    stop = stop or asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(runtime.run(stop))
        await runtime.ready.wait()
        await body()
        stop.set()


async def checked(runtime: Runtime) -> DailyReports:
    """The daily publisher, once its first pass is over."""
    async with asyncio.timeout(10):
        while runtime.reports.daily is None:  # noqa: ASYNC110 - a component starting
            await asyncio.sleep(0.01)
        daily = runtime.reports.daily
        await daily.checked.wait()
    return daily


async def report_rows(runtime: Runtime) -> list[str]:
    return await runtime.store.transact(
        lambda c: [r[0] for r in c.execute("SELECT topic FROM outbox WHERE topic LIKE 'report/%'")]
    )


async def test_reports_of_days_off_go_out_once_after_an_uplink_outage(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_proxy: MqttProxy
) -> None:
    clock = ManualClock(wall=at(27, 10))
    reading = [PointConfig(name="counter", address=0)]
    async with (
        Simulator([SimulatedDevice(1, reading)], port=0, interval=None) as sim,
        Subscriber(mosquitto.host, mosquitto.port, f"{PREFIX}/report/#") as platform,
    ):
        cfg = validate(site(tmp_path, mqtt_proxy.port, sim.port), tmp_path)

        async def first_day() -> None:  # the first start ever: the sensor online from 10:00
            runtime = first
            await checked(runtime)
            async with asyncio.timeout(10):
                while runtime.devices.snapshot()["dev-1"].online is not True:
                    await runtime.devices.changed(runtime.devices.version)
            clock.advance(3600)  # stopped cleanly at 11:00

        first = Runtime(cfg, clock)
        await running(first, first_day)

        clock.advance(at(29, 9) - clock.wall())  # off over two midnights
        await mqtt_proxy.refuse(True)  # and the uplink is down when it comes back
        second = Runtime(cfg, clock)

        async def catch_up() -> None:
            await checked(second)
            assert sorted(await report_rows(second)) == sorted(
                ["report/availability", "report/response"] * 2
            )
            assert platform.on(f"{PREFIX}/report/") == []
            await mqtt_proxy.refuse(False)
            await platform.wait_for(lambda ms: len(ms) >= 4, timeout=20)
            async with asyncio.timeout(10):
                while await report_rows(second):  # noqa: ASYNC110 - until the broker confirms them
                    await asyncio.sleep(0.05)

        await running(second, catch_up)
        third = Runtime(cfg, clock)  # and once more: nothing is published again

        async def nothing_more() -> None:
            await checked(third)
            assert await report_rows(third) == []

        clock.advance(600)
        await running(third, nothing_more)

    got: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for m in platform.on(f"{PREFIX}/report/"):
        body = validate_message(PREFIX, m.topic, m.payload)
        got.setdefault((m.topic.rsplit("/", 1)[1], body["day"]), []).append(body)
    assert sorted(got) == [
        ("availability", "2026-11-27"), ("availability", "2026-11-28"),
        ("response", "2026-11-27"), ("response", "2026-11-28"),
    ]  # fmt: skip
    for copies in got.values():  # a resend would repeat its seq: one message per day each
        assert len({(b["epoch"], b["seq"]) for b in copies}) == 1
    restart = {"from": "2026-11-27T03:00:00.000Z", "to": "2026-11-29T01:00:00.000Z",
               "seconds": 165600.0, "clean": True}  # fmt: skip
    day1, day2 = got["availability", "2026-11-27"][0], got["availability", "2026-11-28"][0]
    assert day1["restarts"] == day2["restarts"] == [restart]
    (dev1,) = day1["devices"]
    assert (dev1["supplier"], dev1["counted_s"], dev1["gateway_downtime_s"]) == (
        "acme", 50400.0, 46800.0,  # from 10:00; the gateway off from 11:00
    )  # fmt: skip
    assert (dev1["uptime_pct"], dev1["outages"], dev1["gateway_outages"]) == (7.143, 1, 1)
    (dev1,) = day2["devices"]
    assert (dev1["uptime_pct"], dev1["gateway_downtime_s"]) == (0.0, 86400.0)
    assert got["response", "2026-11-28"][0]["all"]["alarms"] == 0
