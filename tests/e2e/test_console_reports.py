"""The console's Reports view in a real headless Chromium, on a real gateway process.

The site of ``tests/e2e/test_console.py`` (``cgw run``, Mosquitto, a Modbus TCP simulator):
the test answers one call from the lobby button, silences the thermometer-hygrometer until
the gateway marks it offline and lets it answer again, then an installer opens Reports and
must see exactly that: one outage for ``th-court``, none for ``noise-gate``, the call button
not counted, one alarm acknowledged within its target; in Chinese after the language button;
and the CSV behind the download link says the same.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from tests.e2e.test_console import Site, click, element, press, sign_in, start_site, wait
from tests.support.browser import chromium, shot
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.slow
TH_UNIT = 1  # th-court's unit id on the simulator (the site wired straight)


@pytest.fixture
async def site(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[Site]:
    async for s in start_site(tmp_path, mosquitto):
        yield s


def figure(driver: WebDriver, row: str, name: str) -> str | None:
    """The text of figure ``name`` in the report row ``row`` (a CSS attribute selector)."""
    cell = element(driver, f"#report-availability {row} td[data-figure='{name}']")
    return None if cell is None else cell.text


def row_state(driver: WebDriver, device: str) -> str | None:
    """``online`` or ``offline`` as the devices page shows ``device``; None before either."""
    cell = element(driver, f"#device-{device} td.state")
    text = "" if cell is None else cell.text
    return next((s for s in ("offline", "online") if text.startswith(s)), None)


def csv_of(driver: WebDriver, href: str) -> str:
    """The download behind ``href``, fetched by the page with its own session."""
    script = "fetch(arguments[0]).then(r => r.text()).then(arguments[arguments.length - 1])"
    text: Any = driver.execute_async_script(script, href)
    return str(text)


async def test_an_installer_sees_the_outage_the_test_caused_in_both_languages_and_as_csv(
    site: Site,
) -> None:
    with chromium("en-US") as driver:
        page = Threaded(driver)
        await page.call(sign_in, driver, site.url, "li")
        # a call from the lobby, acknowledged at once: within the 8 minutes
        await press(site.broker, "report-call")
        await page.until(lambda d: click(d.find_element(By.CSS_SELECTOR, "button.ack")))
        await page.until(
            lambda d: "acknowledged by Li Installer" in d.find_element(By.ID, "view").text
        )
        # th-court answers, goes silent until the gateway marks it offline, answers again
        await page.call(driver.get, site.url + "/#devices")
        await page.until(lambda d: row_state(d, "th-court") == "online", 20.0)
        site.sim.silent = {TH_UNIT}
        await page.until(lambda d: row_state(d, "th-court") == "offline", 20.0)
        site.sim.silent = set()  # its next poll comes after the offline device's backoff
        await page.until(lambda d: row_state(d, "th-court") == "online", 30.0)

        await page.call(driver.get, site.url + "/#reports")
        assert await page.until(lambda d: figure(d, "tr[data-device='th-court']", "outages")) == "1"
        assert figure(driver, "tr[data-device='noise-gate']", "outages") == "0"
        assert figure(driver, "tr[data-device='noise-gate']", "uptime") == "100.000 %"
        assert figure(driver, "tr[data-device='th-court']", "gateway") == "0 s"
        assert figure(driver, "tr[data-device='lobby-sos']", "uptime") == "not counted"
        assert figure(driver, "tr[data-group='kind:modbus']", "outages") == "1"
        assert figure(driver, "tr[data-group='all']", "outages") == "1"
        response = driver.find_element(By.CSS_SELECTOR, "#report-response tr[data-severity='all']")
        cells = {
            c.get_attribute("data-figure"): c.text
            for c in response.find_elements(By.TAG_NAME, "td")
        }
        assert (cells["alarms"], cells["acknowledged"], cells["within"]) == (
            "1",
            "1",
            "1 (100.0 %)",
        )
        assert "No alarm missed its target." in driver.find_element(By.ID, "report-response").text
        nav = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "#nav a")]
        assert nav == ["Duty", "Devices", "Commission", "Reports", "Status"]
        await page.call(shot_long, driver, "reports")
        await page.call(shot_long, driver, "reports-wide", 1280)  # the guard-room PC

        # the CSV behind the link is the CLI's, with the same figures
        link = driver.find_element(By.ID, "report-csv")
        href = link.get_attribute("href") or ""
        assert link.text == "Download CSV"
        assert "/api/reports/availability.csv?from=" in href
        rows = list(csv.DictReader(io.StringIO(await page.call(csv_of, driver, href))))
        th = next(r for r in rows if r["group"] == "device" and r["name"] == "th-court")
        assert (th["kind"], th["outages"], th["gateway_downtime_s"]) == ("modbus", "1", "0.0")

        # another language: the same figures, every word in Chinese
        await page.until(lambda d: click(d.find_element(By.ID, "lang")))
        await page.until(
            lambda d: "报表" in [a.text for a in d.find_elements(By.CSS_SELECTOR, "#nav a")]
        )
        assert await page.until(lambda d: figure(d, "tr[data-device='th-court']", "outages")) == "1"
        assert figure(driver, "tr[data-device='lobby-sos']", "uptime") == "不统计"
        assert driver.find_element(By.ID, "report-csv").text == "下载 CSV"
        assert "没有超时确认的告警。" in driver.find_element(By.ID, "report-response").text
        await page.call(shot_long, driver, "reports-zh")
        # the period picker: last month holds nothing of this gateway's first run
        await page.call(pick, driver, "report-period", "last_month")
        await page.until(lambda d: click(d.find_element(By.ID, "report-show")))
        await page.until(
            lambda d: (
                element(d, "#report-availability tr[data-device='th-court']")
                and figure(d, "tr[data-device='th-court']", "outages") == "–"
            )
        )


def pick(driver: WebDriver, select: str, value: str) -> None:
    Select(driver.find_element(By.ID, select)).select_by_value(value)


def shot_long(driver: Chrome, name: str, width: int = 412) -> None:
    """The whole report in one picture: the window as tall as the page (a phone's width by
    default); and nothing wider than the window, which would make a phone scroll sideways."""
    driver.set_window_size(width, 900)
    wide = driver.execute_script("return document.documentElement.scrollWidth")
    assert wide <= driver.execute_script("return window.innerWidth"), f"{wide} px wide"
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(int(height) + 140, 4000))
    shot(driver, name)
    driver.set_window_size(412, 900)


class Threaded:
    """Selenium's blocking calls, run in a thread so the simulator's loop goes on."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def until(self, what: Callable[[WebDriver], Any], timeout: float = 10.0) -> Any:  # noqa: ASYNC109
        return await asyncio.to_thread(wait, self.driver, what, timeout)
