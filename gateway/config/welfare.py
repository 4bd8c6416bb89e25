"""Config models of welfare checks: households that opted in, their signs of life, their window.

A household is named by an id of the installer's choosing (a flat, e.g. ``b7-1203``); a
resident may also be named, but only by the pseudonym the gateway makes of their id
(``p1:<key id>:<32 hex>``, docs/privacy.md; ``cgw welfare pseudonym`` prints it). Anything
else in a ``person`` key is refused: a raw resident id must never be written into a config.
Cross-references (doors, devices, ladders, the privacy key) are checked by the loader
(``gateway.config.loader.check_references``).
"""

import re
from datetime import time
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from gateway.config.alarms import Severity
from gateway.config.base import Model, Name
from gateway.config.doors import Duration

PSEUDONYM = re.compile(r"p1:[0-9a-f]{4}:[0-9a-f]{32}")


def _pseudonym(value: str) -> str:
    if not PSEUDONYM.fullmatch(value):
        raise ValueError(
            "not a pseudonym (p1:<key id>:<32 hex digits>): a raw resident id must never be"
            " written into the config; name the resident by the pseudonym that"
            " 'cgw welfare pseudonym' prints"
        )
    return value


Pseudonym = Annotated[
    str,
    AfterValidator(_pseudonym),
    Field(description="A resident's pseudonym (p1:<key id>:<hex>), never a raw id"),
]
QuietSeconds = Annotated[Duration, Field(ge=3600, le=14 * 86400)]


class DoorSignConfig(Model):
    """Use of a door: a grant, an opening or a closing; with a ``person``, their grants only."""

    kind: Literal["door"] = Field(description="Sign of life: a door terminal's access events")
    door: Name = Field(description="The door's id (devices[].doors[].id of a door_terminal)")
    person: Pseudonym | None = Field(
        None, description="Only grants to this pseudonym count; default the household's person"
    )


class ButtonSignConfig(Model):
    """A button's message: an "I am fine" press, or a heartbeat its payload mapping reports."""

    kind: Literal["button"] = Field(description="Sign of life: a button's contact events")
    device: Name = Field(description="The button's device id")
    inputs: list[Name] = Field(
        default_factory=list,
        max_length=16,
        description="Inputs that count (e.g. fine, heartbeat); empty: any input",
    )


class PointSignConfig(Model):
    """A device point that moves when someone is home (a water meter's flow)."""

    kind: Literal["point"] = Field(description="Sign of life: a reading of a device's point")
    device: Name = Field(description="The device id (Modbus or mqtt_json)")
    point: Name = Field(description="The point's name, e.g. flow")
    above: float | None = Field(
        None, description="A good reading above this counts; default: a change of value counts"
    )


SignConfig = Annotated[
    DoorSignConfig | ButtonSignConfig | PointSignConfig, Field(discriminator="kind")
]


class QuietWindowConfig(Model):
    """A time of day (local, may wrap midnight) with its own quiet limit, e.g. the night."""

    start: time = Field(description="Local time the window starts, e.g. '22:00'")
    end: time = Field(description="Local time the window ends (exclusive), e.g. '08:00'")
    quiet: QuietSeconds = Field(description="Quiet limit inside the window, e.g. '12h'")


class HouseholdConfig(Model):
    """One household that opted in."""

    id: Name = Field(description="Household id (e.g. the flat): the alarm's device")
    flat: str = Field("", max_length=64, description="Flat or address as staff know it")
    person: Pseudonym | None = Field(
        None, description="The resident watched, by pseudonym: door signs count only theirs"
    )
    signs: list[SignConfig] = Field(min_length=1, max_length=16, description="Signs of life")
    quiet: QuietSeconds = Field(
        86400, description="No sign for this long raises a welfare check (e.g. '24h')"
    )
    windows: list[QuietWindowConfig] = Field(
        default_factory=list,
        max_length=4,
        description="Times of day with another limit (first match wins), e.g. 12 h at night",
    )
    ladder: Name | None = Field(
        None, description="Escalation ladder (its family contact); default welfare.ladder"
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if any(w.start == w.end for w in self.windows):
            raise ValueError("a quiet window must not start and end at the same time")
        return self

    def person_of(self, sign: DoorSignConfig) -> str | None:
        """The pseudonym whose grants count for ``sign``, or None for any use of the door."""
        return sign.person or self.person


class WelfareConfig(Model):
    """Welfare checks: households that opted in, watched for signs of life."""

    households: list[HouseholdConfig] = Field(
        min_length=1, max_length=2000, description="Households that opted in"
    )
    ladder: Name = Field("default", description="Escalation ladder of welfare checks")
    severity: Severity = Field("warning", description="Severity of a welfare check")
    check_every: float = Field(
        60.0, ge=0.05, le=600, description="Seconds between two looks at the quiet households"
    )

    @model_validator(mode="after")
    def _unique(self) -> Self:
        seen: set[str] = set()
        for h in self.households:
            if h.id in seen:
                raise ValueError(f"duplicate household id {h.id!r}")
            seen.add(h.id)
        return self


def check_references(
    cfg: WelfareConfig, doors: set[str], devices: set[str], ladders: set[str], privacy: bool
) -> list[str]:
    """Problems with what the households name: doors, devices, ladders, the privacy key."""
    problems: list[str] = []
    if cfg.ladder not in ladders:
        problems.append(f"welfare: unknown ladder {cfg.ladder!r} (alarms.ladders)")
    for i, h in enumerate(cfg.households):
        where = f"welfare.households[{i}]"
        if h.ladder is not None and h.ladder not in ladders:
            problems.append(f"{where}.ladder: unknown ladder {h.ladder!r}")
        for k, sign in enumerate(h.signs):
            at = f"{where}.signs[{k}]"
            if isinstance(sign, DoorSignConfig):
                if sign.door not in doors:
                    problems.append(f"{at}.door: no door_terminal has a door {sign.door!r}")
                if h.person_of(sign) is not None and not privacy:
                    problems.append(f"{at}: a person's door signs need the 'privacy' section")
            elif sign.device not in devices:
                problems.append(f"{at}.device: unknown device {sign.device!r}")
    return problems
