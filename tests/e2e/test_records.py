"""Terminal records through the whole daemon: a kiosk posts an elderly-care request with a
resident's (made-up) ID-card number; the platform opens it with its private key, the box keeps
it nowhere in clear (store and WAL files, dedup files, logs, metrics, health, console pages),
the urgent request raises an alarm through an ordinary rule, and undeclared fields and kinds
are refused with their counted reason."""

import json
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.console.users import Users
from gateway.pipeline.sealing import open_sealed, record_aad
from tests.support.accounts import FAST
from tests.support.daemon import Daemon, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port
from tests.support.schemas import validate_message
from tests.support.subscriber import Recorder

pytestmark = pytest.mark.slow
PREFIX = "cgw/s1/gw1"
ID_NUMBER = "110101194003072315"  # made up: a Beijing ID-card number of 7 March 1940
PHONE = "13912345678"
RESIDENT = "R-3-1201-RAWID"
TOKEN = "kiosk-token-" + "9f8e7d6c" * 3
PASSWORD = "guard-password-1"


def secret(tmp_path: Path, name: str, value: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(value.encode() if isinstance(value, str) else value)
    path.chmod(0o600)
    return str(path)


def config(tmp_path: Path, broker: int, platform: X25519PrivateKey) -> dict[str, Any]:
    pem = platform.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    users = Users(hasher=FAST)
    users.add("wang", "guard", PASSWORD)
    users.save(tmp_path / "users.yaml")
    return {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(tmp_path / "buf.db"), "commit_interval": 0.2},
        "upstream": {"mqtt": {"host": "127.0.0.1", "port": broker, "reconnect_max": 1}},
        "privacy": {"key_file": secret(tmp_path, "privacy.key", secrets.token_hex(32))},
        "http_push": {"port": free_port()},
        "monitor": {"port": free_port()},
        "console": {"port": free_port(), "users_file": str(tmp_path / "users.yaml")},
        "records": {
            "public_key_file": secret(tmp_path, "platform.pub", pem),
            "kinds": [
                {
                    "id": "care_request",
                    "retention": "90d",
                    "urgent": "urgent",
                    "fields": [
                        {"name": "flat", "class": "internal", "required": True},
                        {"name": "need", "class": "public"},
                        {"name": "urgent", "class": "public", "type": "bool"},
                        {"name": "resident", "class": "personal"},
                        {"name": "id_number", "class": "sensitive"},
                        {"name": "phone", "class": "sensitive"},
                    ],
                },
                {"id": "complaint", "fields": [{"name": "text", "class": "internal"}]},
            ],
        },
        "devices": [
            {
                "kind": "http_push",
                "id": "hall-kiosk",
                "auth": {"token_file": secret(tmp_path, "kiosk.token", TOKEN)},
                "records": ["care_request"],
            }
        ],
        "alarms": {
            "rules": [
                {
                    "kind": "contact",
                    "id": "care",
                    "device": "hall-kiosk",
                    "input": "care_request",
                    "type": "emergency",
                    "severity": "critical",
                    "latched": True,
                },
            ],
            "ladders": [{"id": "default", "tiers": [{"after": 0, "channels": ["log"]}]}],
        },
    }


def files(folder: Path) -> list[tuple[Path, bytes]]:
    """Every file the gateway left in ``folder`` (store, WAL, dedup files, logs), read whole."""
    return [(p, p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()]


async def console_pages(url: str) -> str:
    """Every console page and API answer a signed-in guard can fetch, concatenated."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(url + "/login") as r:
            token = (await r.text()).split('name="token" value="')[1].split('"')[0]
        form = {"name": "wang", "password": PASSWORD, "token": token}
        async with http.post(url + "/login", data=form, allow_redirects=False) as r:
            assert r.status == 303
        texts = []
        for path in ("/", "/api/duty", "/api/devices", "/api/devices/hall-kiosk", "/api/status"):
            async with http.get(url + path) as r:
                texts.append(await r.text())
        return "\n".join(texts)


async def test_a_sensitive_value_is_opened_by_the_platform_and_kept_nowhere_on_the_box(
    tmp_path: Path, mosquitto: Mosquitto, daemon: Daemon
) -> None:
    platform = X25519PrivateKey.generate()
    doc = config(tmp_path, mosquitto.port, platform)
    write_config(daemon.config, doc)
    push = f"http://127.0.0.1:{doc['http_push']['port']}/push/hall-kiosk"
    auth = {"X-Auth-Token": TOKEN}
    record: dict[str, Any] = {"kind": "care_request", "id": "K1-000123",
              "fields": {"flat": "3-1201", "need": "fell, cannot get up", "urgent": True,
                         "resident": RESIDENT, "id_number": ID_NUMBER, "phone": PHONE}}  # fmt: skip
    async with (
        Recorder(mosquitto.host, mosquitto.port, f"{PREFIX}/#") as rec,
        aiohttp.ClientSession() as http,
    ):
        daemon.start()
        await daemon.wait_log("http_push listening on")
        async with http.post(push, json=record, headers=auth) as r:
            assert r.status == 200
        refused = [
            ({**record, "fields": {**record["fields"], "religion": "x"}}, "undeclared_field"),
            ({**record, "kind": "complaint"}, "unknown_kind"),  # declared, not this terminal's
            ({**record, "fields": {"need": "x"}}, "missing_field"),  # no flat
            ({**record, "fields": {**record["fields"], "urgent": "yes"}}, "wrong_type"),
        ]
        for bad, reason in refused:
            async with http.post(push, json=bad, headers=auth) as r:
                assert (r.status, await r.json()) == (400, {"code": 1, "msg": reason})
        got = await rec.wait_for(
            lambda m: (
                any(x.topic == f"{PREFIX}/record/care_request" for x in m)
                and any("/alarm/" in x.topic for x in m)
            ),
            timeout=15,
        )
        base = f"http://127.0.0.1:{doc['monitor']['port']}"
        async with http.get(base + "/metrics") as r:
            metrics = await r.text()
        async with http.get(base + "/health") as r:
            health = await r.text()
        pages = await console_pages(f"http://127.0.0.1:{doc['console']['port']}")
        running = files(tmp_path)  # the WAL is there while it runs
        assert any(p.name == "buf.db-wal" for p, _ in running)
        rc, _ = daemon.terminate()
        assert rc == 0
        everything = list(rec.messages)

    (message,) = [m for m in got if m.topic == f"{PREFIX}/record/care_request"]
    body = validate_message(PREFIX, message.topic, message.payload)
    assert body["fields"] == {"flat": "3-1201", "need": "fell, cannot get up", "urgent": True}
    assert body["persons"]["resident"].startswith("p1:")
    assert body["classes"]["id_number"] == "sensitive"
    aad = record_aad("s1", "gw1", "hall-kiosk", "care_request", "K1-000123")
    opened = json.loads(open_sealed(platform, body["sealed"], aad))
    assert opened == {"id_number": ID_NUMBER, "phone": PHONE}  # the platform reads it
    with pytest.raises(ValueError, match="does not open"):  # bound to its record
        open_sealed(platform, body["sealed"], record_aad("s1", "gw1", "x", "care_request", "1"))
    (alarm,) = [json.loads(m.payload) for m in everything if "/alarm/" in m.topic][:1]
    assert (alarm["rule"], alarm["device"]) == ("care", "hall-kiosk")
    assert "undeclared_field" in metrics

    secrets_on_box = (ID_NUMBER, PHONE, RESIDENT)
    for path, data in running + files(tmp_path):
        for value in secrets_on_box:
            assert value.encode() not in data, f"{value} in {path}"
    for text in (metrics, health, pages):
        for value in secrets_on_box:
            assert value not in text
    for m in everything:
        for value in secrets_on_box:
            assert value.encode() not in m.payload
