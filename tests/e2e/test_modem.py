"""The case the modem channel exists for: an emergency button while the internet is down.

The daemon runs as a process. The upstream broker is unreachable (a closed port) and so is
the guard room's internet channel (a JSON webhook on a closed port); only the community's local
broker (a real mosquitto, where the MQTT call button publishes) and the 4G modem (emulated on a
socat pty) work. The guard's SMS is a fallback channel: it goes because the webhook failed.
Nobody acknowledges, so the ladder's next rung rings the duty manager.
"""

import json
import sqlite3
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.alarms.lifecycle import from_dict
from gateway.alarms.model import Notify
from gateway.alarms.wording import staff_message
from gateway.core.catalogue import Language
from tests.support.daemon import Daemon, write_config
from tests.support.modem import EmulatedModem
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port

pytestmark = pytest.mark.slow
GUARD = "+8613800000001"
MANAGER = "+8613900000002"


def config(tmp_path: Path, broker: int, modem: Path, language: str) -> dict[str, Any]:
    urls = tmp_path / "guard-room.urls"
    urls.write_text(f"json://127.0.0.1:{free_port()}/hook\n")  # nothing listens: internet down
    urls.chmod(0o600)
    at = {"kind": "modem", "port": str(modem), "command_timeout": 3.0, "max_parts": 10}
    return {
        "gateway": {"site_id": "sunny-garden", "gateway_id": "gw1"},
        "store": {"path": str(tmp_path / "buffer.db")},
        "upstream": {"mqtt": {"host": "127.0.0.1", "port": free_port(), "reconnect_max": 2.0}},
        "local_broker": {"host": "127.0.0.1", "port": broker},
        "devices": [
            {"kind": "mqtt_button", "id": "lobby-sos", "topic": "lobby/sos",
             "profile": "sos-state-json"},
        ],
        "alarms": {
            "language": language,
            "timezone": "Asia/Shanghai",
            "rules": [{"kind": "contact", "id": "sos", "device": "lobby-sos", "type": "emergency"}],
            "ladders": [
                {
                    "id": "default",
                    "renotify": 0,
                    "tiers": [
                        {"after": 0, "channels": ["guard-room", "guard-sms"]},
                        {"after": 3, "channels": ["duty-call"]},
                    ],
                }
            ],
        },
        "channels": [
            {"id": "guard-room", "url_file": str(urls), "retries": 0, "timeout": 2},
            {**at, "id": "guard-sms", "fallback": True,
             "recipients": [{"name": "guard", "phone": GUARD}]},
            {**at, "id": "duty-call",
             "recipients": [{"name": "duty manager", "phone": MANAGER, "sms": False,
                             "call": True}]},
        ],
    }  # fmt: skip


def stored_alarm(db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(db)
    try:
        (body,) = conn.execute("SELECT body FROM alarms WHERE open=1").fetchone()
    finally:
        conn.close()
    doc: dict[str, Any] = json.loads(body)
    return doc


TITLES = {
    "zh-CN": ("【紧急】紧急呼叫：输入 sos 已触发 - lobby-sos", "告警编号 {id}"),
    "en": ("[CRITICAL] emergency input sos pressed - lobby-sos", "Alarm {id}"),
}


@pytest.mark.parametrize("language", ["zh-CN", "en"])
async def test_a_button_with_the_internet_down_reaches_the_guard_by_sms_and_the_manager_by_call(
    tmp_path: Path,
    mosquitto: Mosquitto,
    daemon: Daemon,
    emulated_modem: EmulatedModem,
    language: Language,
) -> None:
    cfg = config(tmp_path, mosquitto.port, emulated_modem.port, language)
    write_config(daemon.config, cfg)
    daemon.start()
    await daemon.wait_log("subscribed to 1 button topics")
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="vendor-button") as client:
        payload = {"id": "e-1", "evt": "sos", "state": "pressed"}
        await client.publish("lobby/sos", json.dumps(payload).encode(), qos=1)

    await emulated_modem.wait(lambda m: len(m.sms) == 1, timeout=30)
    alarm = from_dict(stored_alarm(tmp_path / "buffer.db"))
    title, body = staff_message(
        alarm, Notify(alarm, 0, ("guard-sms",), False), "sunny-garden", language,
        "Asia/Shanghai", "emergency",
    )  # fmt: skip
    assert emulated_modem.sms == [(GUARD, f"{title}\n{body}")]
    assert title == TITLES[language][0]
    assert TITLES[language][1].format(id=alarm.id) in body

    # nobody acknowledges: three seconds on, the duty manager's phone rings until answered
    await emulated_modem.wait(lambda m: (MANAGER, "hung up") in m.dialled, timeout=30)
    log = await daemon.wait_log("notify guard-room: not delivered after 1 tries")
    assert "line 1 (JSON)" in log["msg"]
    rc, _ = daemon.terminate()
    assert rc == 0
    history = [entry[2] for entry in stored_alarm(tmp_path / "buffer.db")["history"]]
    assert "guard-room: failed: " in " ".join(history)
    assert "guard-sms: ok" in history
    assert emulated_modem.dialled == [(MANAGER, "hung up")]  # rung 2 rang once, was answered
    assert emulated_modem.sms == [(GUARD, f"{title}\n{body}")]  # the SMS went once
