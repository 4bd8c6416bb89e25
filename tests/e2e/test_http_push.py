"""HTTP push devices through the whole daemon, posted to by a real aiohttp client as a vendor's
terminal would: door events answered only once committed (and pseudonymised), a forced door
raising its alarm, readings by HMAC-signed forms, every refusal with its status and count, and
a post cut off by a kill before its commit re-sent and kept once.

The upstream broker is down throughout, so every committed row stays in the store file, where
the tests count them: what the gateway answered 200 to is there, nothing else is."""

import asyncio
import hashlib
import hmac
import json
import secrets
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from tests.support.daemon import Daemon, write_config
from tests.support.ports import free_port

pytestmark = pytest.mark.slow
PREFIX = "cgw/s1/gw1"
RAW_ID = "R-3-1201-RAWID"
TOKEN = "tok-" + "a1b2c3d4" * 4
HMAC_KEY = "key-" + "f0e1d2c3" * 4
API_TOKEN = "0123456789abcdef" * 2
REPLY = '{"result":0,"message":"success"}'


def secret(tmp_path: Path, name: str, value: str) -> str:
    path = tmp_path / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


def config(tmp_path: Path, push_port: int, commit: float = 0.2) -> dict[str, Any]:
    broker = {"host": "127.0.0.1", "reconnect_max": 1}
    return {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(tmp_path / "buf.db"), "commit_interval": commit},
        "upstream": {"mqtt": {**broker, "port": free_port()}},  # down: rows stay in the file
        "privacy": {"key_file": secret(tmp_path, "privacy.key", secrets.token_hex(32))},
        "api": {"port": free_port(), "token_file": secret(tmp_path, "api.token", API_TOKEN)},
        "http_push": {"port": push_port},
        "devices": [
            {
                "kind": "http_push",
                "id": "gate-b",
                "auth": {"token_file": secret(tmp_path, "gate.token", TOKEN)},
                "reply": {"body": REPLY},
                "door": {
                    "profile": "facegate-json",
                    "device_from_path": True,
                    "doors": [{"id": "B-main", "terminal": "FG-B1", "ref": 1}],
                },
            },
            {
                "kind": "http_push",
                "id": "stations",
                "auth": {
                    "hmac_file": secret(tmp_path, "st.key", HMAC_KEY),
                    "hmac_prefix": "sha256=",
                },
                "body": "form",
                "form_field": "data",
                "max_body": 2048,
                "readings": {
                    "profile": "env-station-json",
                    "device_from_path": True,
                    "devices": ["es-01", "es-02"],
                },
            },
        ],
        "alarms": {
            "rules": [
                {
                    "kind": "contact",
                    "id": "forced",
                    "device": "B-main",
                    "input": "forced",
                    "type": "door",
                    "severity": "critical",
                },
            ],
            "ladders": [{"id": "default", "tiers": [{"after": 0, "channels": ["log"]}]}],
        },
    }


def event(kind: str, n: int) -> dict[str, Any]:
    return {"eventId": f"FGB1-{n:06d}", "deviceSn": "FG-B1", "doorNo": 1, "eventType": kind,
            "personId": RAW_ID, "personName": "Wang", "time": "2026-11-28 03:12:05"}  # fmt: skip


def signed(doc: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = urlencode({"data": json.dumps(doc)}).encode()
    digest = hmac.new(HMAC_KEY.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"X-Signature": f"sha256={digest}",
                 "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip


def rows(db: Path, topic: str) -> list[Any]:
    """The bodies of the rows on ``topic`` in the store file, read as another process would."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        found = conn.execute("SELECT body FROM outbox WHERE topic = ? ORDER BY id", (topic,))
        return [json.loads(body) for (body,) in found]


async def halves(doc: dict[str, Any]) -> AsyncIterator[bytes]:
    """``doc`` as a chunked body in two parts, the second after the first has gone out."""
    data = json.dumps(doc).encode()
    yield data[: len(data) // 2]
    await asyncio.sleep(0)  # the first chunk is written before the second is made
    yield data[len(data) // 2 :]


def kinds(db: Path) -> list[str]:
    return [e["kind"] for e in rows(db, "event/FG-B1")]


async def test_door_events_are_answered_once_committed_and_refusals_are_counted(
    tmp_path: Path, daemon: Daemon
) -> None:
    push = free_port()
    write_config(daemon.config, config(tmp_path, push))
    db, base, auth = tmp_path / "buf.db", f"http://127.0.0.1:{push}/push", {"X-Auth-Token": TOKEN}
    async with aiohttp.ClientSession() as http:
        daemon.start()
        await daemon.wait_log("http_push listening on")
        async with http.post(f"{base}/gate-b/FG-B1", json=event("FACE_PASS", 1), headers=auth) as r:
            assert (r.status, await r.text()) == (200, REPLY)
            assert kinds(db) == ["terminal_online", "granted"]  # committed before the answer
        async with http.post(f"{base}/gate-b/FG-B1", json=event("FACE_PASS", 1), headers=auth) as r:
            assert r.status == 200  # a re-send is answered, and kept once
        async with http.post(f"{base}/gate-b/FG-B1", json=event("DOOR_FORCED", 2),
                             headers=auth) as r:  # fmt: skip
            assert r.status == 200
            assert kinds(db) == ["terminal_online", "granted", "forced"]
        refusals = [
            (
                f"{base}/gate-b/FG-B9",
                auth,
                json.dumps(event("FACE_PASS", 3)),
                404,
                "unknown_device",
            ),
            (f"{base}/gate-b/FG-B1", {"X-Auth-Token": "wrong" * 4}, "{}", 401, "unauthorized"),
            (f"{base}/gate-b/FG-B1", auth, "{not json", 400, "not_json"),
            (f"{base}/gate-b/FG-B1", auth, "x" * 70_000, 413, "too_large"),
        ]
        for url, headers, text, status, reason in refusals:
            async with http.post(url, data=text.encode(), headers=headers) as r:
                assert (r.status, await r.json()) == (status, {"code": 1, "msg": reason})
        async with http.post(f"{base}/nobody", data=b"{}", headers=auth) as r:
            assert r.status == 404
        async with http.post(f"{base}/gate-b/FG-B1", data=halves(event("DOOR_CLOSE", 4)),
                             headers=auth) as r:  # fmt: skip
            assert r.status == 200  # a body in two chunks is read whole
        await daemon.wait_log("ALARM ")
        rc, _ = daemon.terminate()
        assert rc == 0
    assert kinds(db) == ["terminal_online", "granted", "forced", "door_closed"]  # no repeat
    granted = rows(db, "event/FG-B1")[1]
    assert granted["person"]
    assert RAW_ID not in granted["person"]  # pseudonymised
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        dump = "\n".join(conn.iterdump())
        alarms = [json.loads(b) for (b,) in conn.execute("SELECT body FROM alarms")]
    assert [(a["rule"], a["device"]) for a in alarms] == [("forced", "B-main")]
    assert RAW_ID not in dump
    assert "Wang" not in dump
    warned = [e["msg"] for e in daemon.logs() if "http_push post to" in e["msg"]]
    for reason in ("unknown_entry", "unknown_device", "unauthorized", "not_json", "too_large"):
        assert sum(f"({reason})" in m for m in warned) == 1, warned


async def test_a_reading_cut_off_by_a_kill_before_its_commit_is_resent_and_kept_once(
    tmp_path: Path, daemon: Daemon
) -> None:
    push = free_port()
    write_config(daemon.config, config(tmp_path, push))
    db = tmp_path / "buf.db"
    url = f"http://127.0.0.1:{push}/push/stations/es-01"
    reading: dict[str, Any] = {"dev": "es-01", "ts": 1733551200123, "data": {"pm25": 35,
                               "pm10": 62, "temp": 21.4, "hum": 48.5, "noise": 52.3}}  # fmt: skip
    body, headers = signed(reading)
    async with aiohttp.ClientSession() as http:
        daemon.fault = "hold-telemetry-flush"  # the store stops before committing the reading
        daemon.start()
        await daemon.wait_log("http_push listening on")
        post = asyncio.create_task(http.post(url, data=body, headers=headers))
        await daemon.wait_log("holding store flush")
        assert not post.done()  # not answered: it is not kept yet
        daemon.kill()
        with pytest.raises(aiohttp.ClientError):
            await post
        assert rows(db, "telemetry/es-01") == []

        daemon.fault = None
        daemon.start()  # the station re-sends what was not answered
        async with asyncio.timeout(15):
            while sum("http_push listening on" in e["msg"] for e in daemon.logs()) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        async with http.post(url, data=body, headers=headers) as r:
            assert r.status == 200
            assert len(rows(db, "telemetry/es-01")) == 1  # kept before the answer
        async with http.post(url, data=b"data=%7B%7D", headers=headers) as r:
            assert r.status == 401  # signed for another body
        async with http.post(url.replace("es-01", "es-09"), data=body, headers=headers) as r:
            assert r.status == 404  # not listed
        rc, _ = daemon.terminate()
        assert rc == 0
    (kept,) = rows(db, "telemetry/es-01")
    assert {p["name"]: p["value"] for p in kept}["pm25"] == 35
