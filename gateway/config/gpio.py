"""Config models of GPIO dry-contact inputs and local outputs (gpiozero, BCM numbering).

An *input* is one contact wired between a GPIO pin and ground (pull ``up``) or 3V3 (pull
``down``), or driven by external electronics (pull ``none``, which must state its
``active_level``). ``active_level`` is the line level while the contact is *closed*;
``contact`` says which state is the alarm: ``no`` (normally open) alarms when the contact
closes, ``nc`` (normally closed: fire-panel relays, tamper loops) alarms when it opens. So::

    active = (level == active_level) != (contact == "nc")

An *output* drives a siren, a strobe or an LED through a transistor or relay stage.

Cross-checks that raise: names unique within the device, no pin used twice (inputs and
outputs together), GPIO2/GPIO3 only as pulled-up inputs (they carry fixed 1.8 kΩ pull-ups on
every Pi), the active level consistent with the pull, the hold time longer than the debounce.
Pins are unique within one device here; uniqueness across devices is the root config's job.
"""

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from gateway.config.base import SUPPLIER, Model, Name, Supplier

Pin = Annotated[int, Field(ge=0, le=27, description="BCM GPIO number (0-27), not a header pin")]
Pull = Literal["up", "down", "none"]
Level = Literal["low", "high"]
Contact = Literal["no", "nc"]
Role = Literal["alarm", "ack", "reset"]
OutputKind = Literal["siren", "strobe", "led"]
PinFactoryKind = Literal["auto", "mock"]

FIXED_PULL_UP = frozenset({2, 3})  # I2C SDA/SCL: 1.8 kΩ pull-ups soldered on the board
_PULL_LEVEL: dict[str, Level] = {"up": "low", "down": "high"}  # a closed contact fights the pull


class GpioInputConfig(Model):
    """One dry-contact input: a button, a relay contact, a tamper switch."""

    name: Name = Field(description="Input name, unique within the device (e.g. call_101)")
    pin: Pin
    pull: Pull = Field(
        "up",
        description="Internal resistor: up (contact to GND), down (contact to 3V3), or none "
        "(an external circuit drives the line; active_level is then required)",
    )
    active_level: Level | None = Field(
        None,
        description="Line level while the contact is closed; default low with pull up, "
        "high with pull down",
    )
    contact: Contact = Field(
        "no",
        description="no: normally open, alarm when it closes; nc: normally closed, alarm "
        "when it opens (a cut wire is then an alarm too)",
    )
    debounce: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Seconds a new level must persist before it is reported (0: no debounce)",
    )
    hold: float | None = Field(
        None,
        gt=0,
        le=60,
        description="Seconds in the alarm state that make a long press (a second event with "
        "held=true); omit for none",
    )
    role: Role = Field(
        "alarm",
        description="alarm: raises an alarm; ack: acknowledges; reset: resets latched alarms",
    )
    description: str = Field("", max_length=200, description="Free text, e.g. the room")

    @property
    def closed_level(self) -> Level:
        """The line level while the contact is closed (``active_level`` with its default)."""
        if self.active_level is not None:
            return self.active_level
        return _PULL_LEVEL[self.pull]  # pull "none" without a level is refused below

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.pull == "none":
            if self.active_level is None:
                raise ValueError("pull 'none' leaves the line floating: set active_level")
        elif self.active_level is not None and self.active_level != _PULL_LEVEL[self.pull]:
            raise ValueError(
                f"active_level {self.active_level!r} with pull {self.pull!r}: a contact on a "
                f"pulled-{self.pull} line reads {_PULL_LEVEL[self.pull]!r} when closed; use "
                "contact 'nc' to alarm on opening, or pull 'none' for a driven line"
            )
        if self.pin in FIXED_PULL_UP and self.pull != "up":
            raise ValueError(f"GPIO{self.pin} has a fixed pull-up on the board: use pull 'up'")
        if self.hold is not None and self.hold <= self.debounce:
            raise ValueError(f"hold ({self.hold} s) must be longer than debounce")
        return self


class GpioOutputConfig(Model):
    """One local output: a siren, a strobe light or an indicator LED."""

    name: Name = Field(description="Output name, unique within the device (e.g. siren_hall)")
    pin: Pin
    kind: OutputKind = Field(description="What it drives; picks the pattern per severity")
    active_high: bool = Field(
        True,
        description="true: pin high switches it on; false for active-low relay boards",
    )
    description: str = Field("", max_length=200, description="Free text, e.g. the location")

    @model_validator(mode="after")
    def _pin_usable(self) -> Self:
        if self.pin in FIXED_PULL_UP and self.active_high:
            raise ValueError(
                f"GPIO{self.pin} has a fixed pull-up: it reads high while the gateway is "
                "down; use active_high false or another pin"
            )
        return self


class GpioDeviceConfig(Model):
    """The Pi's own GPIO header: contact inputs and local outputs."""

    kind: Literal["gpio"] = Field(description="Device kind: the Pi's own GPIO header")
    id: Name = Field(description="Device id, used in topics and in ContactEvent.device")
    pin_factory: PinFactoryKind = Field(
        "auto",
        description="auto: the real GPIO (lgpio on a Pi; GPIOZERO_PIN_FACTORY overrides); "
        "mock: simulated pins for demos and tests",
    )
    inputs: list[GpioInputConfig] = Field(
        default_factory=list, max_length=28, description="Contact inputs"
    )
    outputs: list[GpioOutputConfig] = Field(
        default_factory=list, max_length=28, description="Sirens, strobes and LEDs"
    )
    description: str = Field("", max_length=200, description="Free text")
    supplier: Supplier | None = Field(None, description=SUPPLIER)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if not self.inputs and not self.outputs:
            raise ValueError("a gpio device needs at least one input or output")
        names: set[str] = set()
        pins: dict[int, str] = {}
        lines = [(i.name, i.pin) for i in self.inputs] + [(o.name, o.pin) for o in self.outputs]
        for name, pin in lines:
            if name in names:
                raise ValueError(f"name {name!r} is used twice")
            if pin in pins:
                raise ValueError(f"GPIO{pin} is used by both {pins[pin]!r} and {name!r}")
            names.add(name)
            pins[pin] = name
        return self
