"""A welfare check through the whole gateway in this process, against real peers.

A door terminal publishes on a real mosquitto; the gateway pseudonymises the resident, sees
the watched resident pass, and once the household has been quiet for its window (on a fake
clock) its welfare check reaches the guard's webhook, a real local HTTP server. The guard
answers it through the local API (a real HTTP request with the token), which clears it, then
enters a planned absence; health counts the household as absent.
"""

import asyncio
import io
import json
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import aiomqtt
import pytest

from gateway.cli.main import main
from gateway.config import validate
from gateway.core.clock import ManualClock
from gateway.ops.health import health
from gateway.pipeline.privacy import Pseudonymiser
from gateway.runtime.root import Runtime
from gateway.welfare.monitor import WelfareMonitor
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port
from tests.support.waiting import wait_until
from tests.support.webhook import Webhook, webhook

__all__ = ["webhook"]  # the fixture
RAW_ID = "R-7-0304-RAWID"  # the resident as the terminal knows them
TOKEN = "c0ffee42" * 4
T0 = 1_800_000_000.0
STEP = 300.0  # fake seconds between two looks of the monitor


def site(tmp_path: Path, broker_port: int, hook_port: int, person: str) -> dict[str, Any]:
    secret_files = {}
    for name, text in (
        ("privacy.key", secrets.token_hex(32)),
        ("guard-url", f"json://127.0.0.1:{hook_port}/guard"),
        ("api-token", TOKEN),
    ):
        path = tmp_path / name
        path.write_text(text + "\n")
        path.chmod(0o600)
        secret_files[name] = str(path)
    broker = {"host": "127.0.0.1", "port": broker_port, "reconnect_max": 1}
    return {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(tmp_path / "buf.db"), "commit_interval": 0.1},
        "upstream": {"mqtt": broker},
        "local_broker": broker,
        "privacy": {"key_file": secret_files["privacy.key"]},
        "api": {"port": free_port(), "token_file": secret_files["api-token"]},
        "devices": [
            {
                "kind": "door_terminal",
                "id": "facegate",
                "topic": "facegate/+/event",
                "heartbeat_topic": "facegate/+/heartbeat",
                "device_from_topic": 1,
                "profile": "facegate-json",
                "doors": [{"id": "7-0304", "terminal": "FG-7", "ref": 1}],
                "heartbeat_timeout": 86400,
            }
        ],
        "channels": [{"id": "guard", "url_file": secret_files["guard-url"], "retries": 0}],
        "alarms": {
            "timezone": "Asia/Shanghai",
            "ladders": [
                {"id": "default", "tiers": [{"after": 0, "channels": ["log"]}]},
                {"id": "welfare", "renotify": 0, "tiers": [{"after": 0, "channels": ["guard"]}]},
            ],
        },
        "welfare": {
            "ladder": "welfare",
            "check_every": 0.05,
            "households": [
                {
                    "id": "7-0304",
                    "person": person,
                    "quiet": "1h",
                    "signs": [{"kind": "door", "door": "7-0304"}],
                }
            ],
        },
    }


def face_pass(event_id: str, person: str) -> bytes:
    doc = {"eventId": event_id, "deviceSn": "FG-7", "doorNo": 1, "eventType": "FACE_PASS",
           "personId": person, "verifyMode": "face"}  # fmt: skip
    return json.dumps(doc).encode()


async def test_a_quiet_household_reaches_the_guard_who_answers_it(
    tmp_path: Path, mosquitto: Mosquitto, webhook: tuple[Webhook, int]
) -> None:
    hook, hook_port = webhook
    doc = site(tmp_path, mosquitto.port, hook_port, "p1:0000:" + "0" * 32)
    names = Pseudonymiser.from_files("s1", Path(doc["privacy"]["key_file"]), None)
    doc["welfare"]["households"][0]["person"] = names.pseudonym(RAW_ID)
    clock = ManualClock(wall=T0)
    runtime = Runtime(validate(doc, tmp_path), clock)
    stop = asyncio.Event()
    api = f"http://127.0.0.1:{doc['api']['port']}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        asyncio.TaskGroup() as tg,
        aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="terminal") as terminal,
        aiohttp.ClientSession(api, headers=auth) as http,
    ):
        tg.create_task(runtime.run(stop))
        await runtime.ready.wait()

        def monitor() -> WelfareMonitor:
            assert runtime.welfare.monitor is not None
            return runtime.welfare.monitor

        await wait_until(lambda: runtime.welfare.monitor is not None, "the monitor runs")
        await monitor().ready.wait()
        await wait_until(lambda: all(runtime.snapshot().inputs.connections.values()), "subscribed")

        async def look(to: float) -> None:  # move the fake clock, wait for the monitor's look
            while clock.wall() < to:
                clock.advance(STEP)
                await wait_until(
                    lambda: monitor().watch.households["7-0304"].as_of == clock.wall(), "a look"
                )

        await terminal.publish("facegate/FG-7/event", face_pass("e-1", "someone-else"), qos=1)
        await terminal.publish("facegate/FG-7/event", face_pass("e-2", RAW_ID), qos=1)
        await wait_until(lambda: monitor().watch.households["7-0304"].last is not None, "the sign")
        assert monitor().watch.households["7-0304"].last.ts == T0  # type: ignore[union-attr]

        await look(T0 + 3600 - STEP)
        assert hook.bodies == []  # quiet, but not yet for an hour
        await look(T0 + 3600)
        body = await hook.next_body()
        assert body["title"] == (
            "[WARNING] welfare check: no sign of life for 1.0 h; last sign: door 7-0304,"
            " Jan 15, 2027, 4:00:00\u202fPM (Asia/Shanghai) - 7-0304"
        )
        (alarm,) = runtime.alarms.open_alarms()
        assert (alarm.kind, alarm.device, alarm.cause) == (
            "welfare_check",
            "7-0304",
            "welfare/7-0304",
        )
        _, doc_health = health(runtime.snapshot())
        assert doc_health["welfare"] == {"watched": 1, "quiet": 1, "absent": 0, "paused": 0}

        answer = {"by": "guard-wang", "note": "visited: all well, phone was off"}
        async with http.post("/v1/welfare/7-0304/answer", json=answer) as resp:
            assert (resp.status, await resp.json()) == (
                200, {"household": "7-0304", "was_open": True}
            )  # fmt: skip
        news = [await hook.next_body(), await hook.next_body()]
        assert [b["title"].split(":")[0] for b in news] == [
            "[INFO] acknowledged by guard-wang",
            "[INFO] cleared",
        ]
        await wait_until(lambda: not runtime.alarms.open_alarms(), "the check is cleared")

        away = {"by": "office", "note": "visiting family", "from": "2027-01-16T08:00+08:00",
                "until": "2027-01-20T18:00+08:00"}  # fmt: skip
        async with http.post("/v1/welfare/7-0304/absences", json=away) as resp:
            assert resp.status == 200, await resp.text()
        clock.advance(86400.0)  # into the absence
        async with http.get("/v1/welfare") as resp:
            (household,) = (await resp.json())["households"]
        assert household["state"] == "absent"
        assert household["last_sign"]["kind"] == "answer"
        _, doc_health = health(runtime.snapshot())
        assert doc_health["welfare"]["absent"] == 1
        stop.set()
    files = await asyncio.to_thread(lambda: [p.read_bytes() for p in tmp_path.glob("buf.db*")])
    assert files  # the store, and its WAL if one is left
    assert all(RAW_ID.encode() not in data for data in files)


def cgw(*argv: str) -> int:
    """``cgw <argv>`` through the real command line of the gateway."""
    return main(list(argv))


async def test_the_cgw_welfare_verbs(
    tmp_path: Path,
    mosquitto: Mosquitto,
    webhook: tuple[Webhook, int],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, hook_port = webhook
    doc = site(tmp_path, mosquitto.port, hook_port, "p1:0000:" + "0" * 32)
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps(doc))
    monkeypatch.setattr("sys.stdin", io.StringIO(RAW_ID + "\n"))  # never on the command line
    assert cgw("welfare", "pseudonym", "-c", str(config)) == 0
    pseudonym = capsys.readouterr().out.strip()
    names = Pseudonymiser.from_files("s1", Path(doc["privacy"]["key_file"]), None)
    assert pseudonym == names.pseudonym(RAW_ID)
    doc["welfare"]["households"][0]["person"] = pseudonym
    config.write_text(json.dumps(doc))

    clock = ManualClock(wall=datetime(2027, 1, 15, 8, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp())
    runtime = Runtime(validate(doc, tmp_path), clock)
    stop = asyncio.Event()
    c = ("-c", str(config))
    async with asyncio.TaskGroup() as tg:
        tg.create_task(runtime.run(stop))
        await runtime.ready.wait()
        await wait_until(lambda: runtime.welfare.monitor is not None, "the monitor runs")
        assert runtime.welfare.monitor is not None
        await runtime.welfare.monitor.ready.wait()

        assert await asyncio.to_thread(cgw, "welfare", "list", *c) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].split() == [
            "HOUSEHOLD",
            "STATE",
            "QUIET",
            "LIMIT",
            "LAST",
            "SIGN",
            "ABSENCES",
        ]
        assert out[1].split()[:2] == ["7-0304", "watched"]

        away = ("--from", "2027-01-20", "--until", "2027-01-25T18:00", "--by", "office")
        assert (
            await asyncio.to_thread(
                cgw, "welfare", "away", "7-0304", *away, "--note", "visiting family", *c
            )
            == 0
        )
        said = capsys.readouterr().out
        assert said.strip() == (
            "7-0304: away from 2027-01-20T00:00:00+08:00 until 2027-01-25T18:00:00+08:00"
            " (absence 1)"
        )
        assert (
            await asyncio.to_thread(
                cgw, "welfare", "answer", "7-0304", "--by", "guard-wang", "--note", "called", *c
            )
            == 0
        )
        assert capsys.readouterr().out.strip() == (
            "7-0304: answered by guard-wang; no check was open; the window restarts"
        )
        assert await asyncio.to_thread(cgw, "welfare", "back", "1", "--by", "office", *c) == 0
        assert "absence 1 cancelled" in capsys.readouterr().out
        assert await asyncio.to_thread(cgw, "welfare", "back", "1", "--by", "office", *c) == 1
        assert "no planned absence '1'" in capsys.readouterr().err
        assert (
            await asyncio.to_thread(
                cgw, "welfare", "answer", "9-9999", "--by", "guard-wang", "--note", "x", *c
            )
            == 1
        )
        assert "no watched household '9-9999'" in capsys.readouterr().err
        stop.set()
