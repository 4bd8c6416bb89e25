"""The console's Welfare view in a real headless Chromium, on a real gateway process.

``cgw run`` with Mosquitto (the residents' "I am fine" buttons and the upstream broker) and
two households with a 1 h window. ``b7-0304`` has been quiet for 59 min 59 s when the gateway
starts (its saved count, as a gateway restarted after that long keeps it), so its welfare
check opens at the first look; ``b7-0501`` starts its window with the gateway. A guard
reading Chinese opens the view from the check on Duty, enters a planned absence for
``b7-0501`` (listed, the household absent), cancels it (back early), answers ``b7-0304``'s
check with a note and sees it cleared; the alarm and the audit records upstream name the guard.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from gateway.store import Store
from gateway.welfare import saved
from gateway.welfare.watch import Sign
from tests.e2e.test_console import (
    ROOT,
    add_user,
    click,
    element,
    gateway_with_console,
    sign_in,
    texts,
)
from tests.e2e.test_console_reports import Threaded
from tests.support.browser import chromium, shot
from tests.support.daemon import Daemon, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_ports
from tests.support.subscriber import Recorder

pytestmark = pytest.mark.slow
ZONE = "Asia/Shanghai"
TZ = ZoneInfo(ZONE)


@dataclass
class Site:
    url: str
    broker: int
    daemon: Daemon


def config(tmp: Path, broker: int, console: int) -> dict[str, Any]:
    button = {"kind": "mqtt_button", "profile": "sos-state-json"}
    return gateway_with_console(tmp, broker, console) | {
        "alarms": {"timezone": ZONE},
        "devices": [
            button | {"id": "fine-0304", "topic": "site/b7-0304/fine"},
            button | {"id": "fine-0501", "topic": "site/b7-0501/fine"},
        ],
        "welfare": {
            "check_every": 0.2,
            "households": [
                {"id": "b7-0304", "flat": "7号楼3单元0304", "quiet": "1h",
                 "signs": [{"kind": "button", "device": "fine-0304"}]},
                {"id": "b7-0501", "flat": "7号楼5单元0501", "quiet": "1h",
                 "signs": [{"kind": "button", "device": "fine-0501"}]},
            ],
        },
    }  # fmt: skip


async def quiet_since(path: Path, household: str, seconds: float) -> None:
    """A store file whose saved count has ``household`` quiet for ``seconds`` now, its last
    sign (its button) that long ago: what a gateway stopped just now leaves behind."""
    store = await Store.open(path, quota=1 << 24, reserve=1 << 20, sinks=["mqtt"])
    now = time.time()
    last = Sign(household, now - seconds, "button", "fine-0304")
    try:
        await store.transact(lambda conn: saved.save(conn, [(household, seconds, now, last)]))
    finally:
        await store.close()


@pytest.fixture
async def site(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[Site]:
    add_user(tmp_path / "users.yaml", "wang", "guard", "王保安")
    await quiet_since(tmp_path / "buf.db", "b7-0304", 3599.0)
    (console,) = free_ports(1)
    doc = config(tmp_path, mosquitto.port, console)
    daemon = Daemon(write_config(tmp_path / "gw.yaml", doc), tmp_path / "gw.log")
    daemon.start()
    try:
        await daemon.wait_log("field console on", timeout=30)
        yield Site(f"http://127.0.0.1:{console}", mosquitto.port, daemon)
    finally:
        daemon.stop()


def state_of(driver: WebDriver, household: str) -> str | None:
    card = element(driver, f"#household-{household}")
    return None if card is None else card.get_attribute("data-state")


ABSENCE = "#household-b7-0501 ul.absences li"


def typed(driver: WebDriver, field: str, text: str) -> bool:
    """Type ``text`` into the input ``field`` (found again each try: the page redraws)."""
    driver.find_element(By.ID, field).send_keys(text)
    return True


def put(driver: WebDriver, field: str, value: str) -> bool:
    """Set a date or time field as the picker would (typing into one depends on the locale)."""
    script = (
        "const f = arguments[0]; f.value = arguments[1];"
        " f.dispatchEvent(new Event('input', {bubbles: true}));"
    )
    driver.execute_script(script, driver.find_element(By.ID, field), value)
    return True


async def test_a_guard_enters_an_absence_cancels_it_and_answers_a_check(site: Site) -> None:
    async with Recorder("127.0.0.1", site.broker, ROOT + "#") as upstream:
        with chromium("zh-CN") as driver:
            page = Threaded(driver)
            await page.call(sign_in, driver, site.url, "wang")
            assert await page.call(texts, driver, "#nav a") == ["值班", "关爱探访", "状态"]
            # the check is on Duty, with the way to the household's card
            # every read finds its element again: the page redraws as alarms move on
            link = await page.until(
                lambda d: d.find_element(By.CSS_SELECTOR, "article.alarm.unacked a.button").text
            )
            assert link == "去填写探访结果"
            duty = await page.until(lambda d: d.find_element(By.CSS_SELECTOR, "article.alarm").text)
            assert "关爱探访" in duty
            await page.until(lambda d: click(d.find_element(By.CSS_SELECTOR, "article.alarm a")))
            assert await page.until(lambda d: state_of(d, "b7-0304")) == "quiet"
            card = await page.until(lambda d: d.find_element(By.ID, "household-b7-0304").text)
            assert "无活动迹象：待探访" in card
            assert "已 1 小时 无活动（时限 1 小时）" in card
            assert "最后迹象：按钮 fine-0304" in card
            assert state_of(driver, "b7-0501") == "watched"
            await page.call(shot, driver, "welfare-quiet")

            # b7-0501: away until tomorrow evening, entered from the card
            until = (datetime.now(TZ) + timedelta(days=1)).date().isoformat()
            await page.until(
                lambda d: click(d.find_element(By.CSS_SELECTOR, "#household-b7-0501 .away"))
            )
            await page.until(lambda d: put(d, "away-until-date", until))
            await page.call(put, driver, "away-until-time", "18:30")
            await page.until(lambda d: typed(d, "away-note", "探亲"))
            await page.call(shot, driver, "welfare-absence-form")
            await page.until(lambda d: click(d.find_element(By.ID, "away-send")))
            await page.until(lambda d: state_of(d, "b7-0501") == "absent")
            away = await page.until(lambda d: d.find_element(By.CSS_SELECTOR, ABSENCE).text)
            assert f"至 {until} 18:30 · 外出中" in away
            assert "王保安 登记：探亲" in away
            notice = await page.until(lambda d: d.find_element(By.ID, "welfare-notice").text)
            assert "b7-0501：已登记外出。" in notice
            await page.call(shot, driver, "welfare-absent")
            # back early: the absence is gone, the household watched again
            back = ABSENCE + " button.back"
            await page.until(lambda d: click(d.find_element(By.CSS_SELECTOR, back)))
            await page.until(lambda d: state_of(d, "b7-0501") == "watched")
            assert element(driver, "#household-b7-0501 ul.absences") is None

            # b7-0304: someone went round; the answer clears the check
            checked = "#household-b7-0304 .checked"
            await page.until(lambda d: click(d.find_element(By.CSS_SELECTOR, checked)))
            await page.until(lambda d: typed(d, "answer-note", "已上门，一切正常"))
            await page.until(lambda d: click(d.find_element(By.ID, "answer-send")))
            await page.until(lambda d: state_of(d, "b7-0304") == "watched")
            card = await page.until(lambda d: d.find_element(By.ID, "household-b7-0304").text)
            assert "最后迹象：人工确认 王保安" in card
            # no unacknowledged alarm is left: the page stops flashing and beeping
            await page.until(
                lambda d: (
                    "alarming"
                    not in (d.find_element(By.TAG_NAME, "body").get_attribute("class") or "")
                )
            )
            await page.call(shot, driver, "welfare-answered")
            await page.call(driver.get, site.url + "/#duty")
            await page.until(lambda d: "当前没有未处理的告警" in d.find_element(By.ID, "view").text)

        def cleared(msgs: Any) -> bool:
            return any(
                m.topic.startswith(ROOT + "alarm/")
                and (a := json.loads(m.payload)).get("state") == "cleared"
                and a.get("acked_by") == "王保安"
                for m in msgs
            )

        await upstream.wait_for(cleared, timeout=10)
        await upstream.wait_for(
            lambda msgs: sum(m.topic == ROOT + "audit" for m in msgs) >= 4, timeout=10
        )
    audits = [json.loads(m.payload) for m in upstream.on(ROOT + "audit")]
    welfare = [(a["name"], a["target"], a["by"], a["role"], a["outcome"])
               for a in audits if a["name"].startswith("welfare-")]  # fmt: skip
    assert welfare == [
        ("welfare-away", "b7-0501", "王保安", "guard", "executed"),
        ("welfare-back", "b7-0501", "王保安", "guard", "executed"),
        ("welfare-answer", "b7-0304", "王保安", "guard", "executed"),
    ]
    assert not [a for a in audits if "探亲" in json.dumps(a, ensure_ascii=False)]
