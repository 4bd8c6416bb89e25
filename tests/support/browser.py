"""A real headless Chromium from Debian (``chromium``, ``chromium-driver``), driven by selenium.

Selenium calls block: async tests run them in a thread (``await asyncio.to_thread(...)``) so
the event loop (the simulators, the brokers' clients) goes on meanwhile.

``shot(driver, name)`` saves a screenshot under ``docs/console/`` when ``CGW_SCREENSHOTS`` is
set (``make screenshots``), so the docs show what the tests saw.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# what the machine's closed network needs: no background connections, no first-run dialogs
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--autoplay-policy=no-user-gesture-required",
]


@contextmanager
def chromium(
    language: str = "en-US", width: int = 412, height: int = 900
) -> Iterator[webdriver.Chrome]:
    """A fresh browser (a phone-sized window by default), quit at the end."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.add_argument(f"--lang={language}")
    options.add_experimental_option("prefs", {"intl.accept_languages": language})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        driver.set_page_load_timeout(20)
        yield driver
    finally:
        driver.quit()


def shot(driver: webdriver.Chrome, name: str) -> None:
    """Save a screenshot as docs/console/<name>.png when CGW_SCREENSHOTS is set."""
    if os.environ.get("CGW_SCREENSHOTS"):
        folder = REPO / "docs" / "console"
        folder.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(folder / f"{name}.png"))
