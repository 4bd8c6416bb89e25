"""A month of availability on a fake clock, against figures worked out by hand.

One community in Asia/Shanghai, November 2026, on a real store file that is closed and opened
again at every gateway restart (``tests.support.availability.november``): the pipeline's
availability stage feeds the recorder. A PM sensor polled every minute (added by a reload on
the 5th), a door terminal (from the 3rd) and a call button that never reports its
availability. Outages across midnight, a crash (the last heartbeat is where the gateway's
outage starts) and a clean restart while the sensor is down.
"""

from datetime import date
from pathlib import Path
from typing import Any

from tests.support.availability import Site, november


def rows(period: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["device"]: row for row in period["devices"]}


# seconds of November each device was counted, from its first known state to the month's end
PM_COUNTED = (25 * 24 + 18) * 3600  # from the 5th at 06:00: 2,224,800 s
DOOR_COUNTED = (27 * 24 + 12) * 3600  # from the 3rd at noon: 2,376,000 s
# the gateway's outages: the crash (10:00-10:30 on the 15th), the stop (09:00-09:20 on the 25th)
GATEWAY_DOWN = 1800 + 1200
PM_DOWN = 7200 + 5400 + 2400  # 23:00-01:00; 07:30-09:00 and 09:20-10:00 on the 25th
PM_MISSED = 120 + 30 + 150 + 10  # minutes unread: offline, the crash, the 25th, garbled polls


async def test_a_month_with_outages_across_midnight_and_two_restarts(tmp_path: Path) -> None:
    site = Site(tmp_path / "buffer.db")
    await november(site)
    month = await site.report(date(2026, 11, 1), date(2026, 11, 30), "month")
    days = await site.report(date(2026, 11, 1), date(2026, 11, 30), "day")
    await site.stop(clean=True)

    assert month["restarts"] == [
        {"from": "2026-11-15T02:00:00.000Z", "to": "2026-11-15T02:30:00.000Z",
         "seconds": 1800.0, "clean": False},
        {"from": "2026-11-25T01:00:00.000Z", "to": "2026-11-25T01:20:00.000Z",
         "seconds": 1200.0, "clean": True},
    ]  # fmt: skip
    (nov,) = month["periods"]
    assert (nov["period"], nov["from"], nov["to"]) == (
        "2026-11",
        "2026-10-31T16:00:00.000Z",
        "2026-11-30T16:00:00.000Z",
    )
    got = rows(nov)
    assert got["pm-1"] == {
        "device": "pm-1", "kind": "modbus", "supplier": "acme",
        "counted_s": 2224800.0,
        "uptime_pct": 99.191,  # (2,224,800 - 15,000 - 3,000) / 2,224,800
        "outages": 3,  # across midnight; the crash; the 25th (device, gateway, device: one)
        "gateway_outages": 1,
        "longest_outage_s": 9000.0,  # 07:30-10:00 on the 25th, the stop inside it
        "downtime_s": 18000.0,
        "gateway_downtime_s": 3000.0,
        "readings": 36770,  # 37,080 minutes counted, 310 of them without a reading
        "readings_expected": 37080,
        "completeness_pct": 99.164,  # 36,770 / 37,080
    }  # fmt: skip
    assert (PM_COUNTED, PM_DOWN + GATEWAY_DOWN, PM_COUNTED // 60 - PM_MISSED) == (
        2224800, 18000, 36770,
    )  # fmt: skip
    assert got["door-1"] == {
        "device": "door-1", "kind": "door_terminal", "supplier": "doorco",
        "counted_s": 2376000.0,
        "uptime_pct": 99.571,  # (2,376,000 - 7,200 - 3,000) / 2,376,000
        "outages": 3,  # both restarts, each its own outage; 22:30-00:30 on the 20th
        "gateway_outages": 2,
        "longest_outage_s": 7200.0,
        "downtime_s": 10200.0,
        "gateway_downtime_s": 3000.0,
        "readings": 0, "readings_expected": None, "completeness_pct": None,
    }  # fmt: skip
    assert DOOR_COUNTED - 7200 - GATEWAY_DOWN == 2365800
    assert got["btn-1"] == {
        "device": "btn-1", "kind": "mqtt_button", "supplier": None,
        "counted_s": 0.0, "uptime_pct": None, "outages": 0, "gateway_outages": 0,
        "longest_outage_s": 0.0, "downtime_s": 0.0, "gateway_downtime_s": 0.0,
        "readings": 0, "readings_expected": None, "completeness_pct": None,
    }  # fmt: skip
    assert nov["all"] == {
        "devices": 3,
        "counted_s": 4600800.0,
        "uptime_pct": 99.387,  # (2,206,800 + 2,365,800) / 4,600,800
        "outages": 6, "gateway_outages": 3, "longest_outage_s": 9000.0,
        "downtime_s": 28200.0, "gateway_downtime_s": 6000.0,
        "readings": 36770, "readings_expected": 37080, "completeness_pct": 99.164,
    }  # fmt: skip
    assert [g["kind"] for g in nov["by_kind"]] == ["door_terminal", "modbus", "mqtt_button"]
    assert [(g["supplier"], g["devices"], g["uptime_pct"]) for g in nov["by_supplier"]] == [
        ("acme", 1, 99.191),
        ("doorco", 1, 99.571),
        (None, 1, None),
    ]

    by_day = {p["period"]: rows(p) for p in days["periods"]}
    assert len(by_day) == 30
    assert by_day["2026-11-03"]["pm-1"]["counted_s"] == 0  # not configured yet: not downtime
    assert by_day["2026-11-03"]["door-1"]["counted_s"] == 43200  # from noon
    assert by_day["2026-11-05"]["pm-1"]["completeness_pct"] == 100.0  # 1,080 of 1,080
    for day, part in (("2026-11-10", 3600.0), ("2026-11-11", 3600.0)):  # split at midnight
        assert by_day[day]["pm-1"]["downtime_s"] == part
        assert by_day[day]["pm-1"]["outages"] == 1
        assert by_day[day]["pm-1"]["uptime_pct"] == 95.833  # 82,800 / 86,400
        assert by_day[day]["pm-1"]["readings"] == 1380
    for device in ("pm-1", "door-1"):  # the crash: the gateway's outage of every device
        crash = by_day["2026-11-15"][device]
        assert (crash["gateway_outages"], crash["gateway_downtime_s"]) == (1, 1800.0)
    assert by_day["2026-11-15"]["pm-1"]["completeness_pct"] == 97.917  # 1,410 / 1,440
    assert by_day["2026-11-20"]["pm-1"]["completeness_pct"] == 99.306  # 1,430 / 1,440
    assert by_day["2026-11-20"]["door-1"]["downtime_s"] == 5400  # 22:30-24:00
    assert by_day["2026-11-21"]["door-1"]["downtime_s"] == 1800  # 00:00-00:30
    stopped = by_day["2026-11-25"]["pm-1"]
    assert (stopped["outages"], stopped["gateway_outages"], stopped["longest_outage_s"]) == (
        1, 0, 9000.0,
    )  # fmt: skip
    assert stopped["readings"] == 1290  # 150 minutes unread
    assert by_day["2026-11-25"]["door-1"]["gateway_outages"] == 1
    # a month is its days: the same seconds and readings, the midnight outages counted twice
    for device, row in got.items():
        for key in ("counted_s", "downtime_s", "gateway_downtime_s", "readings"):
            assert sum(d[device][key] for d in by_day.values()) == row[key], (device, key)
    assert sum(d["pm-1"]["outages"] for d in by_day.values()) == 4


async def test_the_purge_keeps_what_each_device_carries_into_the_kept_history(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path / "buffer.db")
    await november(site)
    assert site.store is not None
    late = (date(2026, 11, 21), date(2026, 11, 30), None)
    before = await site.report(*late)
    await site.recorder.purge(site.store, retention_days=11)  # on Dec 1: keeps Nov 20 on
    assert await site.report(*late) == before  # the sensor online since the 15th, still known
    (early,) = (await site.report(date(2026, 11, 10), date(2026, 11, 10), None))["periods"]
    assert rows(early)["pm-1"]["counted_s"] == 0  # forgotten
    assert rows(early)["door-1"]["counted_s"] == 0
    left = await site.store.transact(
        lambda c: [
            c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("availability", "restarts", "readings")
        ]
    )
    # per device the change it carries in (online since the 15th) and three later ones: the
    # door's 22:30, 00:30 and 09:20 after the stop, the sensor's 07:30, 09:21 and 10:00; the
    # later restart; eleven days of the sensor's readings (the 20th to the 30th)
    assert left == [2 + 3 + 3, 1, 11]
    await site.stop(clean=True)
