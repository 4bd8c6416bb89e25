"""The console's reports over HTTP: the real console server, the real report service on the
month of ``tests.support.availability``, the real alarm engine's response report.

The console's clock stands at 1 December 2026, 00:00 in Asia/Shanghai, so "last month" is the
documented November (docs/reports.md) and its figures are the ones worked out by hand in
``test_availability.py``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.alarms.engine import AlarmEngine
from gateway.config.alarms import AlarmsConfig
from gateway.config.console import ConsoleConfig
from gateway.console.ports import ConsolePorts
from gateway.console.server import Console
from gateway.console.users import Role, Users
from gateway.core.devices import DeviceStates
from gateway.core.messages import Json
from gateway.reports.export import FIGURES, as_csv
from gateway.reports.service import ReportService
from tests.support.accounts import FAST
from tests.support.availability import ZONE, Site, at, november
from tests.support.ports import free_port
from tests.unit.test_ops import healthy

PASSWORD = "correct horse 42"
ACCOUNTS: tuple[tuple[str, Role], ...] = (("wang", "guard"), ("li", "installer"), ("chen", "admin"))


def alarm(n: int, severity: str, raised: float, acked_after: float | None, by: str) -> Any:
    """An alarm body as the engine keeps it in its table."""
    return {
        "id": f"a{n}", "device": "btn-1", "severity": severity, "ladder": "default",
        "raised_at": raised, "cleared_at": None, "acked_by": by,
        "acked_at": None if acked_after is None else raised + acked_after,
    }  # fmt: skip


ALARMS = [
    alarm(1, "critical", at(31, 23, 0, month=10), 60, "wang"),  # October: not in November
    alarm(2, "critical", at(12, 9), 60, "王保安"),  # in time
    alarm(3, "critical", at(20, 3), 600, "李四"),  # 10 min: late
    alarm(4, "warning", at(30, 23, 59), 30, "wang"),  # the month's last minute: in time
]


@dataclass
class Reports:
    url: str
    service: ReportService


@pytest.fixture
async def reports(tmp_path: Path) -> AsyncIterator[Reports]:
    site = Site(tmp_path / "buffer.db")
    await november(site)  # the clock is now 1 December, 00:00 local
    assert site.store is not None
    store = site.store

    def insert(conn: Any) -> None:
        conn.executemany(
            "INSERT INTO alarms(id, open, raised_at, body) VALUES(?, 0, ?, ?)",
            [(a["id"], a["raised_at"], json.dumps(a)) for a in ALARMS],
        )

    await store.transact(insert)
    cfg = AlarmsConfig.model_validate({"timezone": ZONE})
    engine = AlarmEngine(cfg, store, site.clock, lambda: True, site="s1")
    service = ReportService(store, site.recorder, lambda: ZONE, site.clock)
    users = Users(hasher=FAST)
    for name, role in ACCOUNTS:
        users.add(name, role, PASSWORD)
    users.save(tmp_path / "users.yaml")

    def audit(action: str, target: str, fields: Mapping[str, Json]) -> None:
        pass  # the reports audit nothing; sign-ins are audited, and checked elsewhere

    ports = ConsolePorts("s1", ZONE, engine, DeviceStates(), healthy, audit, reports=service)
    port = free_port()
    web = ConsoleConfig.model_validate(
        {"host": "127.0.0.1", "port": port, "users_file": str(tmp_path / "users.yaml")}
    )
    try:
        async with Console(web, ports, site.clock):
            yield Reports(f"http://127.0.0.1:{port}", service)
    finally:
        await site.stop(clean=True)


async def signed_in(url: str, name: str) -> aiohttp.ClientSession:
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get(url + "/login") as r:
        token = (await r.text()).split('name="token" value="')[1].split('"')[0]
    form = {"name": name, "password": PASSWORD, "token": token}
    async with http.post(url + "/login", data=form, allow_redirects=False) as r:
        assert r.status == 303
    return http


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as r:
        return r.status, await r.json()


async def test_reports_need_a_session_and_a_role_that_opens_them(reports: Reports) -> None:
    paths = ("/api/reports?period=last_month", "/api/reports/availability.csv")
    async with aiohttp.ClientSession() as anonymous:
        for path in paths:
            assert await get(anonymous, reports.url + path) == (401, {"error": "sign in first"})
    expected: dict[Role, int] = {"guard": 403, "installer": 200, "admin": 200}
    for name, role in ACCOUNTS:
        async with await signed_in(reports.url, name) as http:
            async with http.get(reports.url + "/api/me") as r:
                assert ("reports" in (await r.json())["areas"]) is (role != "guard")
            for path in paths:
                async with http.get(reports.url + path) as r:
                    assert r.status == expected[role], (role, path)


async def test_last_month_is_the_documented_november_with_its_response_figures(
    reports: Reports,
) -> None:
    async with await signed_in(reports.url, "li") as http:
        status, doc = await get(http, reports.url + "/api/reports?period=last_month&by=month")
    assert status == 200
    assert (doc["from"], doc["to"], doc["by"], doc["timezone"]) == (
        "2026-11-01", "2026-11-30", "month", ZONE,
    )  # fmt: skip
    same = await reports.service.availability(date(2026, 11, 1), date(2026, 11, 30), "month")
    assert doc["availability"] == same  # the local API's document, as it is
    (month,) = doc["availability"]["periods"]
    pm = next(d for d in month["devices"] if d["device"] == "pm-1")
    assert (pm["uptime_pct"], pm["outages"], pm["longest_outage_s"]) == (99.191, 3, 9000.0)
    assert [g["supplier"] for g in month["by_supplier"]] == ["acme", "doorco", None]
    response = doc["response"]
    assert (response["all"]["alarms"], response["all"]["within_target"]) == (3, 2)
    assert (response["critical"]["alarms"], response["warning"]["alarms"]) == (2, 1)
    assert response["late"] == [
        {"id": "a3", "device": "btn-1", "severity": "critical",
         "raised_at": "2026-11-19T19:00:00.000Z", "time_to_ack_s": 600.0, "acked_by": "李四"}
    ]  # fmt: skip


async def test_this_month_is_the_default_and_a_range_is_one_period(reports: Reports) -> None:
    async with await signed_in(reports.url, "li") as http:
        status, doc = await get(http, reports.url + "/api/reports")
        assert status == 200
        assert (doc["from"], doc["to"], doc["by"]) == ("2026-12-01", "2026-12-01", None)
        assert doc["response"]["all"]["alarms"] == 0
        status, doc = await get(http, reports.url + "/api/reports?from=2026-11-20&to=2026-11-30")
    assert status == 200
    assert [p["period"] for p in doc["availability"]["periods"]] == ["2026-11-20/2026-11-30"]
    assert [a["id"] for a in doc["response"]["late"]] == ["a3"]
    assert doc["response"]["all"]["alarms"] == 2  # the 20th's and the 30th's


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("from=2026-11-31&to=2026-12-01", '"from" must be a date, YYYY-MM-DD'),
        ("from=2026-11-01", '"to" must be a date, YYYY-MM-DD'),
        ("from=2026-11-30&to=2026-11-01", "the range ends (2026-11-01) before it starts"
         " (2026-11-30)"),
        ("from=2025-01-01&to=2026-11-30", "a report spans at most 400 days"),
        ("period=last_year", '"period" must be one of this_month, last_month, or give from'
         " and to"),
        ("period=last_month&by=week", '"by" must be one of day, month (or left out)'),
    ],
)  # fmt: skip
async def test_a_period_that_cannot_be_reported_is_a_400_that_says_why(
    reports: Reports, query: str, reason: str
) -> None:
    async with await signed_in(reports.url, "li") as http:
        for path in ("/api/reports?", "/api/reports/availability.csv?"):
            assert await get(http, reports.url + path + query) == (400, {"error": reason})


async def test_the_csv_is_the_cli_s_csv_as_a_download(reports: Reports) -> None:
    async with await signed_in(reports.url, "li") as http:
        query = "from=2026-11-01&to=2026-11-30&by=month"
        async with http.get(reports.url + "/api/reports/availability.csv?" + query) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
            assert r.headers["Content-Disposition"] == (
                'attachment; filename="availability-2026-11-01-2026-11-30-by-month.csv"'
            )
            body = await r.text()
        _, doc = await get(http, reports.url + "/api/reports?" + query)
    assert body == as_csv(doc["availability"])
    rows = list(csv.DictReader(io.StringIO(body)))
    assert list(rows[0]) == ["period", "group", "name", "kind", "supplier", "devices", *FIGURES]
    assert [(r["group"], r["name"]) for r in rows] == [
        ("device", "btn-1"), ("device", "door-1"), ("device", "pm-1"),
        ("kind", "door_terminal"), ("kind", "modbus"), ("kind", "mqtt_button"),
        ("supplier", "acme"), ("supplier", "doorco"), ("supplier", ""), ("all", ""),
    ]  # fmt: skip
    pm = rows[2]
    assert (pm["period"], pm["uptime_pct"], pm["outages"], pm["completeness_pct"]) == (
        "2026-11", "99.191", "3", "99.164",
    )  # fmt: skip
    assert rows[0]["uptime_pct"] == ""  # the call button: never counted, never 0
