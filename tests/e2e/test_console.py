"""The field console in a real headless Chromium, as a guard and an installer use it.

A real gateway process (``cgw run``) with a real Mosquitto (the local broker of the call
button and the upstream broker), a Modbus TCP simulator serving shipped sensor profiles, and
accounts made with ``cgw users add``. Selenium runs in a thread: the simulator lives on this
test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest
from selenium.common.exceptions import (
    ElementNotInteractableException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from gateway.config.loader import BUILTIN_PROFILES
from gateway.demo.sim import SimulatedDevice, Simulator
from tests.support.browser import chromium, shot
from tests.support.daemon import REPO, Daemon, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_ports
from tests.support.sensors import LAYOUT, as_configured, only_they_answer, sensors
from tests.support.socat import PtyPair
from tests.support.subscriber import Recorder

pytestmark = pytest.mark.slow
PASSWORD = "correct horse 42"
ROOT = "cgw/s1/gw1/"


@dataclass
class Site:
    url: str
    broker: int
    daemon: Daemon
    sim: Simulator
    monitor: int


def add_user(users: Path, name: str, role: str, display: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "gateway", "users", "add", name, "--role", role,
         "--display", display, "--file", str(users), "--password-stdin"],
        input=f"{PASSWORD}\n".encode(), check=True, cwd=REPO, capture_output=True,
    )  # fmt: skip


def gateway_with_console(tmp: Path, broker: int, console: int) -> dict[str, Any]:
    """A gateway on ``broker`` (upstream and local) with its console: the sites' common part."""
    return {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(tmp / "buf.db"), "quota": "16MiB", "reserve": "1MiB",
                  "commit_interval": 0.1},
        "upstream": {"mqtt": {"host": "127.0.0.1", "port": broker, "reconnect_max": 1.0}},
        "local_broker": {"host": "127.0.0.1", "port": broker},
        "console": {"host": "127.0.0.1", "port": console, "users_file": str(tmp / "users.yaml"),
                    "language": "auto"},
    }  # fmt: skip


def config(
    tmp: Path, broker: int, modbus: int, console: int, units: dict[str, int]
) -> dict[str, Any]:
    return gateway_with_console(tmp, broker, console) | {
        # the simulator shares the test's process with the browser driving: a timeout as long
        # as the poll interval allows, so a busy machine makes no outage of its own
        "buses": [{"id": "rs485-1", "kind": "modbus_tcp", "host": "127.0.0.1", "port": modbus,
                   "timeout": 0.5, "retries": 0}],
        "alarms": {"rules": [{"kind": "contact", "id": "sos", "device": "lobby-sos",
                              "type": "emergency"}]},
        "devices": [
            {"kind": "mqtt_button", "id": "lobby-sos", "topic": "site/lobby/sos",
             "profile": "sos-state-json"},
            {"kind": "modbus", "id": "th-court", "bus": "rs485-1", "unit_id": units["th"],
             "profile": "th-rs485", "interval": 0.5},
            {"kind": "modbus", "id": "noise-gate", "bus": "rs485-1", "unit_id": units["noise"],
             "profile": "noise-rs485", "interval": 0.5},
        ],
    }  # fmt: skip


async def start_site(tmp: Path, mosquitto: Mosquitto, crossed: bool = False) -> AsyncIterator[Site]:
    users = tmp / "users.yaml"
    add_user(users, "wang", "guard", "王保安")
    add_user(users, "li", "installer", "Li Installer")
    th = SimulatedDevice.from_profile(1, BUILTIN_PROFILES / "th-rs485.yaml")
    # a loud road next to the gate: 105 dB(A) is a plausible noise level, but read by the
    # thermometer-hygrometer through crossed wiring it becomes 105 %RH
    noise = SimulatedDevice.from_profile(
        2, BUILTIN_PROFILES / "noise-rs485.yaml", functions={"noise": lambda n: 105.0 + n % 2}
    )
    units = {"th": 2, "noise": 1} if crossed else {"th": 1, "noise": 2}
    async with Simulator([th, noise], port=0, interval=0.3) as sim:
        console, monitor = free_ports(2)
        doc = config(tmp, mosquitto.port, sim.port, console, units) | {"monitor": {"port": monitor}}
        daemon = Daemon(write_config(tmp / "gw.yaml", doc), tmp / "gw.log")
        daemon.start()
        try:
            await daemon.wait_log("field console on", timeout=30)
            yield Site(f"http://127.0.0.1:{console}", mosquitto.port, daemon, sim, monitor)
        finally:
            daemon.stop()


@pytest.fixture
async def site(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[Site]:
    async for s in start_site(tmp_path, mosquitto):
        yield s


# -- browser helpers (run in a thread) --------------------------------------------------------


def wait(driver: WebDriver, what: Callable[[WebDriver], Any], timeout: float = 10.0) -> Any:
    """``what``'s first truthy value; an element redrawn meanwhile is simply looked up again."""
    ignored = (
        StaleElementReferenceException,
        NoSuchElementException,
        ElementNotInteractableException,
    )
    return WebDriverWait(driver, timeout, 0.05, ignored_exceptions=ignored).until(what)


def sign_in(driver: WebDriver, url: str, name: str) -> None:
    driver.get(url + "/")
    wait(driver, lambda d: d.find_element(By.ID, "name"))
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "signin").click()
    wait(driver, lambda d: d.find_elements(By.ID, "nav-duty"))


def click(button: WebElement) -> bool:
    button.click()
    return True


def texts(driver: WebDriver, css: str) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def element(driver: WebDriver, css: str) -> WebElement | None:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0] if found else None


async def press(broker: int, event_id: str) -> float:
    """A resident presses the lobby call button; returns when (monotonic)."""
    async with aiomqtt.Client("127.0.0.1", broker, identifier=f"button-{event_id}") as c:
        at = time.monotonic()
        body = {"id": event_id, "evt": "sos", "state": "pressed"}
        await c.publish("site/lobby/sos", json.dumps(body).encode(), qos=1)
    return at


# -- the guard --------------------------------------------------------------------------------


async def test_guard_sees_a_call_within_2_s_and_acknowledges_it_by_name(site: Site) -> None:
    async with Recorder("127.0.0.1", site.broker, ROOT + "#") as upstream:
        with chromium("zh-CN") as driver:
            await asyncio.to_thread(driver.get, site.url + "/")  # redirected to sign in
            assert driver.current_url == site.url + "/login"
            await asyncio.to_thread(shot, driver, "sign-in")
            await asyncio.to_thread(sign_in, driver, site.url, "wang")
            # a guard's console: duty and status, nothing of the devices
            nav = await asyncio.to_thread(texts, driver, "#nav a")
            assert nav == ["值班", "状态"]
            await asyncio.to_thread(driver.get, site.url + "/#commission")  # typed by hand
            assert await asyncio.to_thread(element, driver, "#commission") is None
            await asyncio.to_thread(wait, driver, lambda d: element(d, "#duty"))
            await asyncio.to_thread(
                wait, driver, lambda d: "当前没有未处理的告警" in d.find_element(By.ID, "view").text
            )
            await asyncio.to_thread(shot, driver, "duty-quiet")
            pressed = await press(site.broker, "press-1")

            def alarm_card(d: WebDriver) -> str | None:
                card = element(d, "article.alarm.unacked")
                return None if card is None else card.text

            card = await asyncio.to_thread(wait, driver, alarm_card, 5.0)
            shown = time.monotonic() - pressed
            assert shown < 2.0, f"the alarm took {shown:.2f} s to show"
            assert "紧急呼叫" in card
            assert "lobby-sos" in card
            assert "alarming" in (
                driver.find_element(By.TAG_NAME, "body").get_attribute("class") or ""
            )
            await asyncio.to_thread(shot, driver, "duty-alarm")
            await asyncio.to_thread(
                wait,
                driver,
                lambda d: click(d.find_element(By.CSS_SELECTOR, "button.ack")),
            )
            await asyncio.to_thread(
                wait, driver, lambda d: "王保安 已确认" in d.find_element(By.ID, "view").text
            )
            await asyncio.to_thread(shot, driver, "duty-acknowledged")
            await upstream.wait_for(lambda msgs: any("王保安" in m.payload.decode() for m in msgs))
            # the gateway goes away: the page says so at once, never a quiet page
            stopped = time.monotonic()
            rc, _ = await asyncio.to_thread(site.daemon.terminate)
            assert rc == 0

            def lost(d: WebDriver) -> str | None:
                bar = d.find_element(By.ID, "link")
                return bar.text if bar.is_displayed() else None

            said = await asyncio.to_thread(wait, driver, lost, 20.0)
            assert "与网关的连接已断开" in said
            assert time.monotonic() - stopped < 15
            await asyncio.to_thread(shot, driver, "duty-link-lost")

        def acked(msgs: Any) -> bool:
            return any(
                m.topic.startswith(ROOT + "alarm/")
                and json.loads(m.payload).get("acked_by") == "王保安"
                for m in msgs
            )

        await upstream.wait_for(acked, timeout=10)
        audits = [json.loads(m.payload) for m in upstream.on(ROOT + "audit")]
        acks = [a for a in audits if a.get("kind") == "console" and a["name"] == "acknowledge"]
        assert [(a["by"], a["account"], a["role"], a["outcome"]) for a in acks] == [
            ("王保安", "wang", "guard", "executed")
        ]


async def test_a_guard_cannot_reach_devices_and_a_post_without_csrf_changes_nothing(
    site: Site,
) -> None:
    await press(site.broker, "press-2")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(
            site.url + "/login", data={"name": "wang", "password": PASSWORD, "token": "x"}
        ) as r:
            assert r.status == 403  # the form's own token is missing (no cookie)
        async with http.get(site.url + "/login") as r:
            page = await r.text()
        token = page.split('name="token" value="')[1].split('"')[0]
        async with http.post(site.url + "/login", data={"name": "wang", "password": "wrong-one",
                             "token": token}) as r:  # fmt: skip
            assert r.status == 401
            assert "Wrong account or password." in await r.text()
            page = await r.text()
        token = page.split('name="token" value="')[1].split('"')[0]
        async with http.post(
            site.url + "/login",
            data={"name": "wang", "password": PASSWORD, "token": token},
            allow_redirects=False,
        ) as r:
            assert r.status == 303
        async with http.get(site.url + "/api/devices") as r:
            assert r.status == 403
        async with http.post(site.url + "/api/buses/rs485-1/scan", json={"units": "1"}) as r:
            assert r.status == 403
        for _ in range(100):
            async with http.get(site.url + "/api/duty") as r:
                duty = await r.json()
            if duty["alarms"]:
                break
            await asyncio.sleep(0.05)  # the press travels broker -> gateway
        (alarm,) = duty["alarms"]
        async with http.post(site.url + f"/api/alarms/{alarm['id']}/ack") as r:
            assert r.status == 403
            assert "CSRF" in (await r.json())["error"]
        async with http.get(site.url + "/api/duty") as r:
            assert (await r.json())["alarms"][0]["acked_at"] is None  # nothing changed
        async with http.get(site.url + "/api/me") as r:
            csrf = (await r.json())["csrf"]
        async with http.post(
            site.url + f"/api/alarms/{alarm['id']}/ack", headers={"X-CSRF-Token": csrf}
        ) as r:
            assert r.status == 200
            assert (await r.json())["alarms"][0]["acked_by"] == "王保安"
        async with http.get(f"http://127.0.0.1:{site.monitor}/metrics") as r:
            metrics = await r.text()
    assert 'cgw_console_logins_total{result="ok"} 1.0' in metrics
    assert 'cgw_console_logins_total{result="failed"} 1.0' in metrics
    assert "cgw_console_sessions 1.0" in metrics


async def test_a_new_password_ends_an_open_page_s_session_at_once(
    site: Site, tmp_path: Path
) -> None:
    with chromium("en-US") as driver:
        await asyncio.to_thread(sign_in, driver, site.url, "li")
        await asyncio.to_thread(wait, driver, lambda d: element(d, "#duty"))
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "gateway", "users", "passwd", "li",
             "--file", str(tmp_path / "users.yaml"), "--password-stdin"],
            input=b"another password 7\n", check=True, cwd=REPO, capture_output=True,
        )  # fmt: skip
        # the stream ends at its next event; the page finds its session gone and signs out
        await asyncio.to_thread(wait, driver, lambda d: d.current_url.endswith("/login"), 20.0)


# -- the installer ----------------------------------------------------------------------------


async def test_installer_sees_values_change_without_reloading(site: Site) -> None:
    with chromium("en-US") as driver:
        await asyncio.to_thread(sign_in, driver, site.url, "li")
        await asyncio.to_thread(driver.get, site.url + "/#devices")

        def noise_value(d: WebDriver) -> str | None:
            row = element(d, "#device-noise-gate .point b")
            return row.text if row is not None and row.text != "–" else None

        first = await asyncio.to_thread(wait, driver, noise_value)
        # the simulator alternates 105 and 106 dB(A): the page must follow without a reload
        await asyncio.to_thread(wait, driver, lambda d: (v := noise_value(d)) and v != first)
        assert (
            driver.execute_script("return performance.getEntriesByType('navigation').length") == 1
        )
        await asyncio.to_thread(shot, driver, "devices")
        await asyncio.to_thread(driver.get, site.url + "/#device/th-court")
        await asyncio.to_thread(wait, driver, lambda d: element(d, "#device table.points"))
        history = await asyncio.to_thread(
            wait, driver, lambda d: d.find_element(By.CSS_SELECTOR, "ul.history li").text
        )
        assert history.endswith("online")  # it came online after the console started
        await asyncio.to_thread(wait, driver, lambda d: click(d.find_element(By.ID, "read-now")))

        def read_result(d: WebDriver) -> Any:
            text = d.find_element(By.ID, "read-result").text
            return json.loads(text) if text.startswith("{") else None  # else: "Reading..."

        read = await asyncio.to_thread(wait, driver, read_result)
        assert [p["name"] for p in read["points"]] == ["humidity", "temperature"]
        assert read["blocks"][0]["table"] == "holding"  # the raw registers beside the values
        await asyncio.to_thread(shot, driver, "device")
        await asyncio.to_thread(driver.get, site.url + "/#status")
        await asyncio.to_thread(wait, driver, lambda d: element(d, "#status table"))
        await asyncio.to_thread(shot, driver, "status")
        # the checklist: "press the button now" ticks when the press arrives
        await asyncio.to_thread(driver.get, site.url + "/#commission")
        await asyncio.to_thread(
            wait,
            driver,
            lambda d: click(d.find_element(By.CSS_SELECTOR, "#check-lobby-sos .press")),
        )
        await press(site.broker, "checklist-press")
        ticked = await asyncio.to_thread(
            wait,
            driver,
            lambda d: (
                "alarm input tested" in (t := d.find_element(By.ID, "check-lobby-sos").text) and t
            ),
        )
        assert "✔" in ticked
        await asyncio.to_thread(shot, driver, "commission-checklist")


async def test_crossed_wiring_shows_implausible_values(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async for site in start_site(tmp_path, mosquitto, crossed=True):
        with chromium("en-US") as driver:
            await asyncio.to_thread(sign_in, driver, site.url, "li")
            await asyncio.to_thread(driver.get, site.url + "/#devices")
            row = await asyncio.to_thread(
                wait,
                driver,
                lambda d: (
                    d.find_element(By.CSS_SELECTOR, "#device-th-court .point.implausible").text
                ),
            )
            assert "humidity" in row
            assert "implausible" in row
            await asyncio.to_thread(shot, driver, "devices-crossed-wiring")


async def test_an_installer_scans_an_rs485_line_and_finds_every_unit(
    tmp_path: Path, mosquitto: Mosquitto, pty_pair: PtyPair
) -> None:
    users = tmp_path / "users.yaml"
    add_user(users, "li", "installer", "Li Installer")
    (console,) = free_ports(1)
    rtu = {"kind": "modbus_rtu", "id": "rs485-1", "port": str(pty_pair.b), "baudrate": 19200,
           "timeout": 0.3, "retries": 0}  # fmt: skip
    doc = as_configured(
        {
            "gateway": {"site_id": "s1", "gateway_id": "gw1"},
            "store": {"path": str(tmp_path / "b.db"), "quota": "16MiB", "reserve": "1MiB"},
            "upstream": {"mqtt": {"host": "127.0.0.1", "port": mosquitto.port}},
            "buses": [rtu],
            "console": {"port": console, "users_file": str(users)},
        },
        "rs485-1",
    )
    async with Simulator.rtu(sensors(), str(pty_pair.a), 19200, interval=None) as sim:
        only_they_answer(sim)
        daemon = Daemon(write_config(tmp_path / "gw.yaml", doc), tmp_path / "gw.log")
        daemon.start()
        try:
            await daemon.wait_log("field console on", timeout=30)
            url = f"http://127.0.0.1:{console}"
            with chromium("en-US") as driver:
                await asyncio.to_thread(sign_in, driver, url, "li")
                await asyncio.to_thread(driver.get, url + "/#commission")

                def start_scan(d: WebDriver) -> bool:
                    units = d.find_element(By.ID, "units-rs485-1")
                    units.clear()
                    units.send_keys("1-12")
                    return click(d.find_element(By.ID, "scan-rs485-1"))

                await asyncio.to_thread(wait, driver, start_scan)

                def found(d: WebDriver) -> list[str]:
                    items = d.find_elements(By.CSS_SELECTOR, "#scan-result-rs485-1 li.unit")
                    return [i.text for i in items]

                units = await asyncio.to_thread(wait, driver, found, 30.0)
                await asyncio.to_thread(shot, driver, "commission")
            assert units == [
                f"Unit {u} – looks like {profile}" for u, profile in sorted(LAYOUT.items())
            ]
            audits = [e for e in daemon.logs() if e["msg"].startswith("console: scan rs485-1")]
            assert len(audits) == 1
            assert "by Li Installer: executed" in audits[0]["msg"]
        finally:
            daemon.stop()
