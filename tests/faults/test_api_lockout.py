"""Fault 8: bad logins from the guard's own address never lock the right token out.

Every local client is 127.0.0.1. On main, five bad requests made the real token get 429
for 60 s. Here a storm of bad logins from 127.0.0.1 runs against the real daemon while the
guard presses nothing but the right token: it is answered every time, an SOS pressed during
the storm is listed and acknowledged, and no request is refused 429 (four concurrent bad
clients stay below the failures the API lets wait for their answer).
"""

import asyncio
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from gateway.ops.api import MAX_WAITING
from tests.faults.local_api import call as api_call
from tests.faults.local_api import config, press
from tests.support.daemon import Daemon, write_config
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.slow
STORM = 4  # concurrent bad clients, each one request after another
assert STORM < MAX_WAITING


async def test_bad_logins_from_the_same_address_never_block_the_right_token(
    tmp_path: Path, mosquitto: Mosquitto, daemon: Daemon
) -> None:
    doc = config(tmp_path, mosquitto.port)
    write_config(daemon.config, doc)
    daemon.start()
    await daemon.wait_log("local alarm API on")
    await daemon.wait_log("subscribed to 1 button topics")
    base = f"http://127.0.0.1:{doc['api']['port']}/v1"
    bad: Counter[int] = Counter()
    stop = asyncio.Event()

    async def bad_client(session: aiohttp.ClientSession, n: int) -> None:
        while not stop.is_set():
            status, _ = await api_call(session, "GET", f"{base}/alarms", token=f"guess-{n:012d}")
            bad[status] += 1

    right: list[int] = []
    async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as tg:
        storm = [tg.create_task(bad_client(session, n)) for n in range(STORM)]
        while sum(bad.values()) < 10:  # the storm is under way: more than five failures
            status, alarms = await api_call(session, "GET", f"{base}/alarms")
            right.append(status)
        await press(mosquitto.port, "e-1")
        async with asyncio.timeout(15):
            while not alarms:
                status, alarms = await api_call(session, "GET", f"{base}/alarms")
                right.append(status)
        (alarm,) = alarms
        status, body = await api_call(session, "POST", f"{base}/alarms/{alarm['id']}/ack")
        right.append(status)
        assert body["changed"] is True
        assert body["alarm"]["acked_by"] == "guard-li"
        stop.set()
    assert all(t.done() for t in storm)
    assert right == [200] * len(right)
    assert sum(bad.values()) >= 10
    assert bad == Counter({401: sum(bad.values())})  # exactly no 429, only slowed 401s
    rc, _ = daemon.terminate()
    assert rc == 0
    assert [e for e in daemon.logs() if e["level"] == "ERROR" or "exc" in e] == []
