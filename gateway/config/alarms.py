"""Config models of alarm rules, contact inputs and the escalation ladder."""

from datetime import time
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from gateway.config.base import Model, Name

Severity = Literal["critical", "warning", "info"]


class WindowConfig(Model):
    """A daily time window (local time) with its own limits; it may wrap past midnight."""

    start: time = Field(description="Local time the window starts, e.g. '22:00'")
    end: time = Field(description="Local time the window ends (exclusive), e.g. '06:00'")
    limit: float = Field(description="Alarm limit inside the window")
    clear: float | None = Field(None, description="Clear bound inside the window (hysteresis)")


class ThresholdRuleConfig(Model):
    """A point beyond a limit for a while raises; back inside the clear bound for a while clears."""

    kind: Literal["threshold"]
    id: Name = Field(description="Rule id; part of the alarm's cause")
    devices: list[Name] | Literal["*"] = Field("*", description="Devices it applies to")
    point: Name = Field(description="Point name, e.g. pm25")
    direction: Literal["above", "below"] = Field("above", description="High or low alarm")
    limit: float = Field(description="Alarm limit (outside any schedule window)")
    clear: float | None = Field(None, description="Clear bound; default the limit (no band)")
    for_s: float = Field(0.0, ge=0, le=86400, description="Seconds beyond the limit to raise")
    clear_for_s: float = Field(0.0, ge=0, le=86400, description="Seconds inside to clear")
    schedule: list[WindowConfig] = Field(
        default_factory=list, description="Time windows with other limits (first match wins)"
    )
    severity: Severity = Field("warning", description="Alarm severity")
    ladder: Name = Field("default", description="Escalation ladder")

    @model_validator(mode="after")
    def _band(self) -> Self:
        pairs = [(self.limit, self.clear, "")] + [
            (w.limit, w.clear, f"schedule window {w.start}-{w.end}: ") for w in self.schedule
        ]
        for limit, clear, where in pairs:
            if clear is None:
                continue
            if (self.direction == "above" and clear > limit) or (
                self.direction == "below" and clear < limit
            ):
                raise ValueError(
                    f"{where}clear {clear} must lie on the normal side of limit {limit}"
                    f" for an '{self.direction}' rule"
                )
        return self


class ContactRuleConfig(Model):
    """A contact input (emergency button, fire-panel relay, tamper switch) raises an alarm."""

    kind: Literal["contact"]
    id: Name = Field(description="Rule id")
    device: Name | Literal["*"] = Field(
        description="Device the input belongs to, or '*' (e.g. buttons named by their topic)"
    )
    input: Name | Literal["*"] = Field("*", description="Input name, or '*' for all inputs")
    type: Literal["emergency", "fire", "tamper", "door", "other"] = Field(
        "emergency", description="What the contact means"
    )
    severity: Severity = Field("critical", description="Alarm severity")
    latched: bool = Field(
        True, description="Stays active after the contact returns, until acknowledged and reset"
    )
    ladder: Name = Field("default", description="Escalation ladder")


class OfflineRuleConfig(Model):
    """A device that stops answering raises an alarm; it clears when the device is back."""

    kind: Literal["offline"]
    id: Name = Field(description="Rule id")
    devices: list[Name] | Literal["*"] = Field("*", description="Devices it applies to")
    severity: Severity = Field("warning", description="Alarm severity")
    ladder: Name = Field("default", description="Escalation ladder")


class SensorFaultRuleConfig(Model):
    """A point outside its physical range (quality 'bad') for a while is a sensor fault."""

    kind: Literal["sensor_fault"]
    id: Name = Field(description="Rule id")
    devices: list[Name] | Literal["*"] = Field("*", description="Devices it applies to")
    for_s: float = Field(60.0, ge=0, le=86400, description="Seconds of bad readings to raise")
    severity: Severity = Field("warning", description="Alarm severity")
    ladder: Name = Field("default", description="Escalation ladder")


RuleConfig = Annotated[
    ThresholdRuleConfig | ContactRuleConfig | OfflineRuleConfig | SensorFaultRuleConfig,
    Field(discriminator="kind"),
]


class TierConfig(Model):
    """One rung of an escalation ladder."""

    after: float = Field(ge=0, le=86400, description="Seconds after raising, if unacknowledged")
    channels: list[Name] = Field(min_length=1, description="Notification channels (and outputs)")


class LadderConfig(Model):
    """Who hears about an unacknowledged alarm, and when."""

    id: Name = Field(description="Ladder id that rules refer to")
    tiers: list[TierConfig] = Field(min_length=1, description="Rungs, in order of 'after'")
    renotify: float = Field(
        300.0, ge=0, le=86400, description="Repeat the current rung every N s while unacked (0: no)"
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        afters = [t.after for t in self.tiers]
        if afters != sorted(afters):
            raise ValueError(f"tiers must be in order of 'after' (got {afters})")
        return self


class StormConfig(Model):
    """Storm control: a chattering device must not bury the others' alarms."""

    per_device: int = Field(10, ge=1, le=1000, description="New alarms per device per window")
    window: float = Field(60.0, gt=0, le=3600, description="Window length (s)")


class AckTargetsConfig(Model):
    """How soon an alarm of each severity should be acknowledged: the response report's target."""

    critical: float = Field(480.0, gt=0, le=86400, description="Seconds (the plan's 8 minutes)")
    warning: float = Field(480.0, gt=0, le=86400, description="Seconds")
    info: float = Field(480.0, gt=0, le=86400, description="Seconds")


class AlarmsConfig(Model):
    """Alarm rules and what happens when nobody answers."""

    timezone: str = Field(
        "Asia/Shanghai",
        description="Time zone of schedule windows and of the times in staff messages (IANA)",
    )
    language: Literal["zh-CN", "en"] = Field(
        "en", description="Language of staff messages: zh-CN or en (gateway/alarms/wording.py)"
    )
    rules: list[RuleConfig] = Field(default_factory=list, description="Alarm rules")
    ladders: list[LadderConfig] = Field(
        default_factory=lambda: [
            LadderConfig(id="default", tiers=[TierConfig(after=0, channels=["log"])])
        ],
        description="Escalation ladders; rules use 'default' unless they name another",
    )
    storm: StormConfig = Field(default_factory=StormConfig, description="Storm control")
    ack_targets: AckTargetsConfig = Field(
        default_factory=AckTargetsConfig,
        description="Seconds within which an alarm of each severity should be acknowledged: the"
        " response report counts and lists the alarms that were not",
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {name!r}") from exc
        return name

    @model_validator(mode="after")
    def _refs(self) -> Self:
        ladders = {ld.id for ld in self.ladders}
        rule_ids: set[str] = set()
        for rule in self.rules:
            if rule.id in rule_ids:
                raise ValueError(f"duplicate rule id {rule.id!r}")
            rule_ids.add(rule.id)
            if rule.ladder not in ladders:
                raise ValueError(f"rule {rule.id!r}: unknown ladder {rule.ladder!r}")
        return self
