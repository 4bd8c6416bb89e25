"""What staff read about an alarm: its title and body, in their language and local time.

Contract:
- The phrases come from ``gateway.core.catalogue``, the one message catalogue of staff-facing
  text (notifications and the console alike).
- ``staff_message(alarm, note, site, language, zone)`` gives ``(title, body)``. Times are the
  alarm's wall time in ``zone`` (an IANA name: the community's own clock, not UTC and never a
  raw epoch), formatted for the language by Babel. The alarm's own ``message`` (English, as the
  platform receives it) is what English staff read; Chinese staff read a phrase built from the
  alarm's kind, rule type and input or point, so a guard needs no English.
- Pure: no I/O, no clock; the same alarm always gives the same text.
"""

from datetime import datetime
from zoneinfo import ZoneInfo

from babel.dates import format_datetime

from gateway.alarms.model import Alarm, Notify
from gateway.alarms.rules import INPUT_UNAVAILABLE
from gateway.config.alarms import AlarmsConfig, ContactRuleConfig
from gateway.core.catalogue import CATALOGUE, Language

WELFARE_CHECK = "welfare_check"  # the alarm kind of welfare checks (gateway.welfare)
STORE_UNAVAILABLE = "store_unavailable"  # the rule of the stand-in store's alarm (runtime)

_BABEL = {"en": "en", "zh-CN": "zh_Hans_CN"}


def text(language: Language, key: str, **values: object) -> str:
    """The catalogue's phrase ``key`` in ``language``, filled in."""
    return CATALOGUE[language][key].format(**values)


def local_time(ts: float, language: Language, zone: str) -> str:
    """Wall time ``ts`` as staff read it: their zone, their language's date and time format."""
    tz = ZoneInfo(zone)
    when = datetime.fromtimestamp(ts, tz)
    return f"{format_datetime(when, 'medium', tzinfo=tz, locale=_BABEL[language])} ({zone})"


def what(alarm: Alarm, language: Language, rule_type: str | None = None, zone: str = "UTC") -> str:
    """The alarm in a few words; English staff read the platform's own message.

    A welfare check is worded from its ``facts`` in both languages, its last sign in ``zone``.
    """
    if alarm.kind == WELFARE_CHECK:
        return _welfare(alarm, language, zone)
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
        if alarm.rule in (INPUT_UNAVAILABLE, STORE_UNAVAILABLE):
            return text(language, alarm.rule)
        return text(language, "offline")
    if alarm.kind in ("threshold", "sensor_fault"):
        return text(language, alarm.kind, point=detail, value=shown)
    return alarm.message


def _welfare(alarm: Alarm, language: Language, zone: str) -> str:
    facts = alarm.facts
    if "last_ts" in facts:
        last = text(
            language,
            "welfare.last",
            kind=text(language, f"welfare.kind.{facts['last_kind']}"),
            source=facts["last_source"],
            time=local_time(float(facts["last_ts"]), language, zone),
        )
    else:
        last = text(language, "welfare.never")
    return text(language, "welfare.quiet", hours=facts.get("quiet_h", "?"), last=last)


def staff_message(
    alarm: Alarm,
    note: Notify,
    site: str,
    language: Language,
    zone: str,
    rule_type: str | None = None,
    link: str | None = None,
) -> tuple[str, str]:
    """``(title, body)`` of a notification about ``alarm`` (see the module docstring).

    ``link``: where staff acknowledge it in the field console; without one the message
    names the ``cgw alarms ack`` command.
    """
    said = what(alarm, language, rule_type, zone)
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
            text(language, "ack.link", link=link) if link else text(language, "ack", id=alarm.id),
        ]
    )
    return title, body


def rule_types(cfg: AlarmsConfig) -> dict[str, str]:
    """Contact rule id -> its type (emergency, fire...), for the staff's wording."""
    return {r.id: r.type for r in cfg.rules if isinstance(r, ContactRuleConfig)}


def test_message(
    site: str, channel: str, language: Language, zone: str, now: float
) -> tuple[str, str]:
    """Title and body of an installer's test message on ``channel`` (``cgw notify test``)."""
    when = local_time(now, language, zone)
    return (
        text(language, "test.title", site=site),
        text(language, "test.body", channel=channel, when=when),
    )
