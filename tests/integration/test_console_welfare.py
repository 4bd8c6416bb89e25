"""The console's Welfare view over HTTP: the real console server in front of the real welfare
monitor, alarm engine and store, on a fake clock.

Two households with a 1 h window. The clock stands at 12:00 (Asia/Shanghai) on 8 December
2026; an hour on without a sign (a look every 5 minutes) opens a welfare check on both. Staff
sign in with real sessions; every POST carries the session's CSRF token unless the test says
not.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from gateway.alarms.engine import AlarmEngine
from gateway.config.alarms import AlarmsConfig
from gateway.config.console import ConsoleConfig
from gateway.config.welfare import WelfareConfig
from gateway.console import users as console_users
from gateway.console.ports import ConsolePorts
from gateway.console.server import Console
from gateway.console.users import Users
from gateway.core.clock import ManualClock
from gateway.core.devices import DeviceStates
from gateway.core.messages import Json
from gateway.store import Store
from gateway.welfare.monitor import Parts, WelfareMonitor, cause
from tests.integration.test_console_reports import PASSWORD, get, signed_in
from tests.support.accounts import FAST
from tests.support.ports import free_port
from tests.unit.test_ops import healthy

ZONE = "Asia/Shanghai"
TZ = ZoneInfo(ZONE)
T0 = datetime(2026, 12, 8, 12, 0, tzinfo=TZ).timestamp()
NOTE = "visited: resident fine, hearing aid was off"  # personal: never in a log or an audit
WELFARE = {
    "check_every": 60,
    "households": [
        {"id": "b7-0304", "flat": "Building 7, flat 0304", "quiet": "1h",
         "signs": [{"kind": "button", "device": "btn-0304"}]},
        {"id": "b7-0501", "quiet": "1h", "signs": [{"kind": "button", "device": "btn-0501"}]},
    ],
}  # fmt: skip


@dataclass
class Desk:
    """The gateway's parts behind one console."""

    url: str
    clock: ManualClock
    engine: AlarmEngine
    monitor: WelfareMonitor
    audits: list[dict[str, Json]] = field(default_factory=list)

    async def quiet_for_an_hour(self) -> None:
        """An hour without a sign, looked at every 5 min: a check opens on every household."""
        for _ in range(12):
            self.clock.advance(300)  # what one look counts at most
            await self.monitor.check()
        await self.engine.settled()

    def check(self, household: str) -> Any:
        """The household's open welfare check, or None."""
        return next((a for a in self.engine.open_alarms() if a.cause == cause(household)), None)

    def audited(self, name: str) -> list[tuple[Json, ...]]:
        return [
            (a["by"], a["account"], a["role"], a["target"], a["outcome"], a["detail"])
            for a in self.audits
            if a["name"] == name
        ]


async def start(tmp_path: Path, welfare: bool = True) -> AsyncIterator[Desk]:
    clock = ManualClock(wall=T0)
    store = await Store.open(tmp_path / "buf.db", quota=1 << 24, reserve=1 << 20, sinks=["mqtt"])
    engine = AlarmEngine(AlarmsConfig(timezone=ZONE), store, clock, lambda: True, site="s1")
    task = asyncio.create_task(engine.run(), name="engine")
    await engine.ready.wait()
    parts = Parts(engine, store, clock, asyncio.Event())
    monitor = WelfareMonitor(WelfareConfig.model_validate(WELFARE), ZONE, {}, parts)
    await monitor.restore()
    users = Users(hasher=FAST)
    users.add("wang", "guard", PASSWORD, display="王保安")
    users.add("li", "installer", PASSWORD)
    users.save(tmp_path / "users.yaml")
    audits: list[dict[str, Json]] = []
    port = free_port()
    ports = ConsolePorts(
        "s1", ZONE, engine, DeviceStates(), healthy,
        lambda action, target, fields: audits.append(dict(fields)),
        welfare=(lambda: monitor) if welfare else None,
    )  # fmt: skip
    web = ConsoleConfig.model_validate(
        {"host": "127.0.0.1", "port": port, "users_file": str(tmp_path / "users.yaml")}
    )
    try:
        async with Console(web, ports, clock):
            yield Desk(f"http://127.0.0.1:{port}", clock, engine, monitor, audits)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    async for d in start(tmp_path):
        yield d


async def post(
    http: aiohttp.ClientSession, url: str, body: Any, csrf: str | None = None
) -> tuple[int, Any]:
    """POST ``body`` as JSON with the session's CSRF token (looked up unless given)."""
    if csrf is None:
        csrf = (await get(http, url.split("/api/")[0] + "/api/me"))[1]["csrf"]
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
    async with http.post(url, data=raw, headers=headers) as r:
        return r.status, await r.json()


def household(doc: Any, hid: str) -> Any:
    return next(h for h in doc["households"] if h["household"] == hid)


async def test_a_guard_answers_an_open_check_in_their_name_and_the_note_is_never_logged(
    desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await desk.quiet_for_an_hour()
    async with await signed_in(desk.url, "wang") as http:
        status, doc = await get(http, desk.url + "/api/welfare")
        assert status == 200
        assert doc["timezone"] == ZONE
        h = household(doc, "b7-0304")
        assert (h["state"], h["quiet_s"], h["limit_s"], h["flat"]) == (
            "quiet", 3600, 3600.0, "Building 7, flat 0304",
        )  # fmt: skip
        status, doc = await post(http, desk.url + "/api/welfare/b7-0304/answer", {"note": NOTE})
    assert status == 200
    assert doc["done"] == "its welfare check cleared"
    answered = household(doc, "b7-0304")
    assert (answered["state"], answered["quiet_s"]) == ("watched", 0)
    assert answered["last_sign"]["kind"] == "answer"
    assert answered["last_sign"]["source"] == "王保安"
    assert answered["last_sign"]["local"] == "2026-12-08 13:00"
    assert household(doc, "b7-0501")["state"] == "quiet"  # the other one is still open
    await desk.engine.settled()
    assert desk.check("b7-0304") is None  # acknowledged and cleared
    assert desk.audited("welfare-answer") == [
        ("王保安", "wang", "guard", "b7-0304", "executed", "its welfare check cleared")
    ]
    assert all(NOTE not in json.dumps(a, ensure_ascii=False) for a in desk.audits)
    # nothing logs the note (the alarm's clearing text carries it upstream, as
    # docs/welfare.md says; the engine's log line of that transition says who, not what)
    assert not [r for r in caplog.records if NOTE in r.getMessage()]
    assert "console: welfare-answer b7-0304 by 王保安: executed" in caplog.text
    assert "cleared: cleared: answered by 王保安 (b7-0304)" in caplog.text


async def test_an_absence_in_local_time_reaches_the_monitor_and_back_early_ends_it(
    desk: Desk,
) -> None:
    await desk.quiet_for_an_hour()
    async with await signed_in(desk.url, "li") as http:
        body = {"from": "2026-12-08T13:00", "until": "2026-12-20T18:30", "note": "visiting family"}
        status, doc = await post(http, desk.url + "/api/welfare/b7-0501/absences", body)
        assert status == 200
        entered = doc["done"]
        assert entered == "absence 1 from 2026-12-08 13:00 until 2026-12-20 18:30"
        away = household(doc, "b7-0501")
        assert away["state"] == "absent"
        (absence,) = away["absences"]
        assert (absence["from_local"], absence["until_local"], absence["status"]) == (
            "2026-12-08 13:00", "2026-12-20 18:30", "current",
        )  # fmt: skip
        assert (absence["by"], absence["note"]) == ("li", "visiting family")
        (kept,) = desk.monitor.watch.absences.values()
        assert (kept.household, kept.by) == ("b7-0501", "li")
        assert kept.end == datetime(2026, 12, 20, 18, 30, tzinfo=TZ).timestamp()
        await desk.engine.settled()
        assert desk.check("b7-0501") is None  # the absence ended the open check
        status, doc = await post(
            http, desk.url + f"/api/welfare/absences/{absence['id']}/cancel", {}
        )
        assert status == 200
        assert household(doc, "b7-0501")["state"] == "watched"
        assert household(doc, "b7-0501")["absences"] == []
    assert desk.monitor.watch.absences == {}
    assert desk.audited("welfare-away") == [
        ("li", "li", "installer", "b7-0501", "executed", entered)
    ]
    assert desk.audited("welfare-back") == [
        ("li", "li", "installer", "b7-0501", "executed", "absence 1 cancelled: back early")
    ]


@pytest.mark.parametrize(
    ("path", "body", "status", "reason"),
    [
        ("b7-0304/answer", {}, 400, '"note" must be text of 1 to 200 characters'),
        ("b7-0304/answer", {"note": "  "}, 400, '"note" must be text of 1 to 200 characters'),
        ("b7-0304/answer", {"note": "x" * 201}, 400, '"note" must be text of 1 to 200 characters'),
        ("b7-0304/answer", {"note": "a\nb"}, 400, '"note" must be printable text'),
        ("b7-0304/answer", {"note": "ok", "by": "someone else"}, 400,
         'the body must be a JSON object like {"note": "..."}'),
        ("b7-0304/answer", b"not json", 400, 'the body must be JSON like {"note": "..."}'),
        ("b7-9999/answer", {"note": "ok"}, 404, "no watched household 'b7-9999'"),
        ("b7-0304/absences", {"from": "tomorrow", "until": "2026-12-20T18:00", "note": "away"},
         400, '"from" must be an ISO 8601 time (YYYY-MM-DDTHH:MM)'),
        ("b7-0304/absences", {"from": "2026-12-20T08:00", "note": "away"}, 400,
         '"until" must be an ISO 8601 time (YYYY-MM-DDTHH:MM)'),
        ("b7-0304/absences", {"from": "2026-12-20T08:00", "until": "2026-12-10T08:00",
                              "note": "away"},
         400, "an absence must end after it starts, and after now"),
        ("b7-0304/absences", {"from": "2026-12-01T08:00", "until": "2026-12-02T08:00",
                              "note": "away"},
         400, "an absence must end after it starts, and after now"),
        ("b7-9999/absences", {"from": "2026-12-20T08:00", "until": "2026-12-21T08:00",
                              "note": "away"}, 404, "no watched household 'b7-9999'"),
        ("absences/7/cancel", {}, 404, "no planned absence '7'"),
        ("absences/x/cancel", {}, 404, "no planned absence 'x'"),
    ],
)  # fmt: skip
async def test_a_request_that_cannot_be_done_says_why_and_changes_nothing(
    desk: Desk, path: str, body: Any, status: int, reason: str
) -> None:
    async with await signed_in(desk.url, "wang") as http:
        assert await post(http, f"{desk.url}/api/welfare/{path}", body) == (
            status, {"error": reason},
        )  # fmt: skip
    assert desk.monitor.watch.absences == {}
    assert all(h.last is None for h in desk.monitor.watch.households.values())
    assert all(a["outcome"] != "executed" for a in desk.audits if a["name"] != "sign-in")


async def test_a_post_without_the_session_s_csrf_token_is_refused_and_audited(
    desk: Desk,
) -> None:
    await desk.quiet_for_an_hour()
    async with await signed_in(desk.url, "wang") as http:
        for csrf in ("", "a-token-of-another-session"):
            url = desk.url + "/api/welfare/b7-0304/answer"
            assert await post(http, url, {"note": "ok"}, csrf) == (
                403, {"error": "missing or wrong CSRF token"},
            )  # fmt: skip
            body = {"from": "2026-12-08T13:00", "until": "2026-12-09T13:00", "note": "away"}
            url = desk.url + "/api/welfare/b7-0304/absences"
            assert (await post(http, url, body, csrf))[0] == 403
    assert desk.check("b7-0304") is not None  # still open: nothing changed
    assert desk.monitor.watch.absences == {}
    refused = desk.audited("csrf")
    assert len(refused) == 4
    assert {r[3] for r in refused} == {
        "/api/welfare/b7-0304/answer", "/api/welfare/b7-0304/absences"
    }  # fmt: skip


async def test_the_view_needs_a_session_and_a_role_that_opens_it(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with aiohttp.ClientSession() as anonymous:
        assert await get(anonymous, desk.url + "/api/welfare") == (401, {"error": "sign in first"})
    async with await signed_in(desk.url, "wang") as http:
        me = (await get(http, desk.url + "/api/me"))[1]
        assert ("welfare" in me["areas"], me["welfare"]) == (True, True)
        # a role without the area (the table gives it to every role today)
        monkeypatch.setitem(console_users._AREAS, "guard", frozenset({"duty", "status"}))
        assert await get(http, desk.url + "/api/welfare") == (
            403, {"error": "not open to your account"},
        )  # fmt: skip
        answer = desk.url + "/api/welfare/b7-0304/answer"
        assert (await post(http, answer, {"note": "ok"}))[0] == 403
        assert "welfare" not in (await get(http, desk.url + "/api/me"))[1]["areas"]
    assert all(h.last is None for h in desk.monitor.watch.households.values())


async def test_without_a_welfare_section_the_view_says_so(tmp_path: Path) -> None:
    async for d in start(tmp_path, welfare=False):
        async with await signed_in(d.url, "wang") as http:
            assert (await get(http, d.url + "/api/me"))[1]["welfare"] is False
            assert await get(http, d.url + "/api/welfare") == (
                501, {"error": "welfare checks are not configured on this gateway"},
            )  # fmt: skip
            answer = d.url + "/api/welfare/b7-0304/answer"
            assert (await post(http, answer, {"note": "ok"}))[0] == 501
