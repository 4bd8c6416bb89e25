"""What staff read: one catalogue in zh-CN and en, local times, no raw epochs."""

from __future__ import annotations

import re
import string

import pytest

from gateway.alarms.model import Alarm, Notify, State
from gateway.alarms.wording import local_time, staff_message
from gateway.core.catalogue import CATALOGUE, LANGUAGES, Language

RAISED = 1796614240.0  # 2026-12-07 03:30:40 UTC, 11:30:40 in Shanghai


def _fields(phrase: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(phrase) if f}


def test_every_phrase_exists_in_every_language_with_the_same_placeholders() -> None:
    keys = {lang: set(CATALOGUE[lang]) for lang in LANGUAGES}
    assert keys["zh-CN"] == keys["en"]
    for key in CATALOGUE["en"]:
        assert _fields(CATALOGUE["zh-CN"][key]) == _fields(CATALOGUE["en"][key]), key


def alarm(kind: str = "contact", cause: str = "sos/hall/sos", **more: object) -> Alarm:
    fields: dict[str, object] = {
        "id": "4be1c0d2a9f04e11",
        "cause": cause,
        "rule": cause.split("/")[0],
        "kind": kind,
        "device": "hall",
        "severity": "critical",
        "latched": True,
        "ladder": "default",
        "message": "emergency input sos pressed",
        "state": State.RAISED,
        "active": True,
        "raised_at": RAISED,
        "raised_mono": 1.0,
    }
    fields.update(more)
    return Alarm(**fields)  # type: ignore[arg-type]


def note(a: Alarm, repeat: bool = False) -> Notify:
    return Notify(a, 1, ("guard",), repeat)


def test_a_chinese_guard_reads_the_alarm_in_chinese_with_the_local_time() -> None:
    title, body = staff_message(
        alarm(), note(alarm()), "huayuan-b7", "zh-CN", "Asia/Shanghai", "emergency"
    )
    assert title == "【紧急】紧急呼叫：输入 sos 已触发 - hall"
    assert "站点 huayuan-b7，设备 hall：紧急呼叫：输入 sos 已触发。" in body
    assert "2026年12月7日 11:30:40 (Asia/Shanghai)" in body
    assert "第 2 级通知" in body
    assert "cgw alarms ack 4be1c0d2a9f04e11" in body
    assert str(int(RAISED)) not in body  # never a raw epoch


def test_english_staff_read_the_platform_message_and_their_local_time() -> None:
    title, body = staff_message(alarm(), note(alarm(), repeat=True), "s1", "en", "Asia/Shanghai")
    assert title == "[CRITICAL] emergency input sos pressed - hall"
    assert "Dec 7, 2026, 11:30:40\u202fAM (Asia/Shanghai)" in body  # CLDR: a narrow no-break space
    assert ", repeated; escalation step 2." in body
    assert str(int(RAISED)) not in body


@pytest.mark.parametrize(
    ("kind", "cause", "extra", "said"),
    [
        (
            "threshold",
            "pm/gate/pm25",
            {"value": 80.5, "message": "pm25 80.5 > 75"},
            "pm25 超出限值：80.5",
        ),
        ("sensor_fault", "f/th-1/humidity", {"value": 140.0}, "humidity 读数异常：140"),
        ("offline", "off/th-1", {"message": "device offline: timeout"}, "设备离线"),
        ("offline", "input_unavailable/hall", {}, "报警输入未运行"),
        (
            "offline",
            "store_unavailable/gw1",
            {},
            "网关存储不可写：报警仍然有效，数据暂存内存；请联系安装人员",
        ),
    ],
)
def test_every_kind_has_its_chinese_wording(
    kind: str, cause: str, extra: dict[str, object], said: str
) -> None:
    a = alarm(kind, cause, **extra)
    title, _ = staff_message(a, note(a), "s1", "zh-CN", "Asia/Shanghai")
    assert title == f"【紧急】{said} - hall"


@pytest.mark.parametrize("language", LANGUAGES)
def test_times_follow_the_configured_zone(language: Language) -> None:
    shown = local_time(RAISED, language, "Europe/Berlin")
    assert re.search(r"4:30:40|04:30:40", shown)
    assert shown.endswith("(Europe/Berlin)")


def test_a_forced_door_reads_as_a_door_not_as_a_pressed_input() -> None:
    from gateway.alarms.rules import contact_message

    assert contact_message("door", "forced", True) == "door forced open"
    assert contact_message("door", "held_open", True) == "door held open"
    assert contact_message("door", "forced", False) == "door closed (forced over)"
    assert contact_message("emergency", "sos", True) == "emergency input sos pressed"
    a = alarm(cause="forced/gate-east/forced", message="door forced open")
    title, _ = staff_message(a, note(a), "s1", "zh-CN", "Asia/Shanghai", "door")
    assert title == "【紧急】门被强行打开 - hall"


@pytest.mark.parametrize(
    ("news", "zh", "en"),
    [
        ("acknowledged", "【提示】已由 guard-wang 确认：紧急呼叫：输入 sos 已触发 - hall",
         "[INFO] acknowledged by guard-wang: emergency input sos pressed - hall"),
        ("cleared", "【提示】已恢复：紧急呼叫：输入 sos 已触发 - hall",
         "[INFO] cleared: emergency input sos pressed - hall"),
    ],
)  # fmt: skip
def test_news_of_an_alarm_reads_as_news(news: str, zh: str, en: str) -> None:
    a = alarm(acked_by="guard-wang")
    told = Notify(a, 1, ("guard", "manager"), False, news=news)
    assert staff_message(a, told, "s1", "zh-CN", "Asia/Shanghai", "emergency")[0] == zh
    assert staff_message(a, told, "s1", "en", "Asia/Shanghai", "emergency")[0] == en


@pytest.mark.parametrize(("language", "phrase"), [("en", "Acknowledge: "), ("zh-CN", "确认告警：")])
def test_with_a_console_the_message_links_to_the_alarm_instead_of_a_shell_command(
    language: Language, phrase: str
) -> None:
    link = "https://192.168.10.2:8443/#alarm/4be1c0d2a9f04e11"
    _, body = staff_message(alarm(), note(alarm()), "s1", language, "Asia/Shanghai", None, link)
    assert body.endswith(phrase + link)
    assert "cgw alarms ack" not in body
