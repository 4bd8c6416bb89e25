"""What staff read about an alarm: its title and body, in their language and local time.

Contract:
- ``CATALOGUE`` is the one message catalogue of staff-facing text: every phrase in ``en`` and
  ``zh-CN`` under the same key (a test keeps the two languages' keys and placeholders equal).
  The console is to read its phrases from here too.
- ``staff_message(alarm, note, site, language, zone)`` gives ``(title, body)``. Times are the
  alarm's wall time in ``zone`` (an IANA name: the community's own clock, not UTC and never a
  raw epoch), formatted for the language by Babel. The alarm's own ``message`` (English, as the
  platform receives it) is what English staff read; Chinese staff read a phrase built from the
  alarm's kind, rule type and input or point, so a guard needs no English.
- Pure: no I/O, no clock; the same alarm always gives the same text.
"""

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from babel.dates import format_datetime

from gateway.alarms.model import Alarm, Notify
from gateway.alarms.rules import INPUT_UNAVAILABLE

Language = Literal["zh-CN", "en"]
LANGUAGES: tuple[Language, ...] = ("zh-CN", "en")

CATALOGUE: dict[str, dict[str, str]] = {
    "en": {
        "severity.critical": "CRITICAL",
        "severity.warning": "WARNING",
        "severity.info": "INFO",
        "title": "[{severity}] {what} - {device}",
        "where": "Site {site}, device {device}: {what}.",
        "when": "Alarm {id}, raised {raised}{repeated}; escalation step {step}.",
        "repeated": ", repeated",
        "ack": "Acknowledge: cgw alarms ack {id}",
        "type.emergency": "emergency call",
        "type.fire": "fire alarm",
        "type.tamper": "tamper",
        "type.door": "door alarm",
        "type.other": "alarm input",
        "contact.on": "{type}: input {input} pressed",
        "contact.off": "{type}: input {input} released",
        "door.forced": "door forced open",
        "door.held_open": "door held open",
        "offline": "device offline",
        "input_unavailable": "alarm input not running",
        "threshold": "{point} out of range: {value}",
        "sensor_fault": "{point} reads an implausible value: {value}",
        "news.acknowledged": "acknowledged by {by}: {what}",
        "news.cleared": "cleared: {what}",
    },
    "zh-CN": {
        "severity.critical": "紧急",
        "severity.warning": "警告",
        "severity.info": "提示",
        "title": "【{severity}】{what} - {device}",
        "where": "站点 {site}，设备 {device}：{what}。",
        "when": "告警编号 {id}，发生时间 {raised}{repeated}；第 {step} 级通知。",
        "repeated": "（再次提醒）",
        "ack": "确认告警：cgw alarms ack {id}",
        "type.emergency": "紧急呼叫",
        "type.fire": "火警",
        "type.tamper": "防拆报警",
        "type.door": "门禁报警",
        "type.other": "报警输入",
        "contact.on": "{type}：输入 {input} 已触发",
        "contact.off": "{type}：输入 {input} 已复位",
        "door.forced": "门被强行打开",
        "door.held_open": "门长时间未关",
        "offline": "设备离线",
        "input_unavailable": "报警输入未运行",
        "threshold": "{point} 超出限值：{value}",
        "sensor_fault": "{point} 读数异常：{value}",
        "news.acknowledged": "已由 {by} 确认：{what}",
        "news.cleared": "已恢复：{what}",
    },
}
_BABEL = {"en": "en", "zh-CN": "zh_Hans_CN"}


def text(language: Language, key: str, **values: object) -> str:
    """The catalogue's phrase ``key`` in ``language``, filled in."""
    return CATALOGUE[language][key].format(**values)


def local_time(ts: float, language: Language, zone: str) -> str:
    """Wall time ``ts`` as staff read it: their zone, their language's date and time format."""
    tz = ZoneInfo(zone)
    when = datetime.fromtimestamp(ts, tz)
    return f"{format_datetime(when, 'medium', tzinfo=tz, locale=_BABEL[language])} ({zone})"


def what(alarm: Alarm, language: Language, rule_type: str | None = None) -> str:
    """The alarm in a few words; English staff read the platform's own message."""
    if language == "en":
        return alarm.message
    detail = alarm.input
    value = alarm.value
    shown = "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
    if alarm.kind == "contact" and rule_type == "door" and f"door.{detail}" in CATALOGUE[language]:
        return text(language, f"door.{detail}")
    if alarm.kind == "contact":
        key = f"type.{rule_type}" if f"type.{rule_type}" in CATALOGUE[language] else "type.other"
        on = "contact.on" if alarm.active else "contact.off"
        return text(language, on, type=text(language, key), input=detail)
    if alarm.kind == "offline":
        return text(language, "input_unavailable" if alarm.rule == INPUT_UNAVAILABLE else "offline")
    if alarm.kind in ("threshold", "sensor_fault"):
        return text(language, alarm.kind, point=detail, value=shown)
    return alarm.message


def staff_message(
    alarm: Alarm,
    note: Notify,
    site: str,
    language: Language,
    zone: str,
    rule_type: str | None = None,
) -> tuple[str, str]:
    """``(title, body)`` of a notification about ``alarm`` (see the module docstring)."""
    said = what(alarm, language, rule_type)
    if note.news:  # telling those notified before: someone took it on, or it is over
        said = text(language, f"news.{note.news}", by=alarm.acked_by or "-", what=said)
    severity = text(language, f"severity.{'info' if note.news else alarm.severity}")
    title = text(language, "title", severity=severity, what=said, device=alarm.device)
    body = "\n".join(
        [
            text(language, "where", site=site, device=alarm.device, what=said),
            text(
                language,
                "when",
                id=alarm.id,
                raised=local_time(alarm.raised_at, language, zone),
                repeated=text(language, "repeated") if note.repeat else "",
                step=note.tier + 1,
            ),
            text(language, "ack", id=alarm.id),
        ]
    )
    return title, body
