"""Config of staff notification channels: where a message goes, how fast, how persistently.

Two kinds, told apart by ``kind``: ``apprise`` (the default when ``kind`` is left out: internet
services such as WeCom, DingTalk, e-mail, webhooks) and ``modem`` (SMS and voice calls through a
local 4G modem, which works while the community's internet is down).

An apprise URL carries the channel's token or key, so URLs never appear in the YAML: ``url_file``
names a file that only its owner may read (mode 0600) with one URL per line. Likewise a modem's
SIM PIN lives in ``pin_file``. Files are read when the channel is built (``gateway.notify``);
their contents are never logged.

Several modem channels may name the same ``port`` (an SMS rung for the guards, a call rung for
the duty manager): they then share one modem, so their port settings must agree
(``gateway.config.loader`` checks it).
"""

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from gateway.config.base import Model, Name, SecretFile

_FALLBACK = (
    "Use this channel only while the gateway's internet channels fail: for a message, only when"
    " its other channels did not deliver it (at once when they are down); a rung of fallback"
    " channels alone only while an internet channel is down"
)


class ChannelConfig(Model):
    """One staff notification channel, e.g. the guard room's WeCom group bot."""

    kind: Literal["apprise"] = Field("apprise", description="An internet channel through apprise")
    id: Name = Field(description="Channel id; escalation tiers refer to it")
    fallback: bool = Field(False, description=_FALLBACK)
    url_file: SecretFile = Field(
        description="File (mode 0600) with one apprise URL per line, e.g. 'wecombot://<key>';"
        " blank lines and lines starting with '#' are ignored; with several URLs every message"
        " goes to each of them"
    )
    rate: float = Field(
        20.0,
        gt=0,
        le=600,
        description="Messages per minute at most, retries included; sends are spaced 60/rate s"
        " apart (a WeCom group bot allows 20 per minute)",
    )
    retries: int = Field(
        3,
        ge=0,
        le=10,
        description="Tries after a failed one, with capped exponential backoff (1 + retries"
        " tries in all)",
    )
    timeout: float = Field(
        10.0,
        gt=0,
        le=120,
        description="Seconds one try may take; also the connect and read timeout of each URL",
    )
    verify_errcode: bool = Field(
        True,
        description="Count an HTTP 200 whose JSON body holds a non-zero 'errcode' as a failure"
        " (WeCom group bot and DingTalk, which apprise alone reports as delivered); see"
        " docs/notifications.md for what is verified",
    )
    title_prefix: str = Field(
        "",
        max_length=64,
        description="Text put before every title, e.g. '[阳光花园] ' to name the community",
    )


class RecipientConfig(Model):
    """One person a modem channel reaches: by SMS, by a voice call, or both."""

    name: str = Field(
        min_length=1, max_length=64, description="Who this is (shown in logs and attempts)"
    )
    phone: str = Field(
        pattern=r"^\+?[0-9]{3,20}$", description="Phone number, e.g. '+8613800000000'"
    )
    sms: bool = Field(True, description="Send the message as an SMS")
    call: bool = Field(
        False,
        description="Ring the phone until answered or 'ring' seconds pass (a sleeping guard"
        " wakes to a call, not to an SMS); the call carries no speech",
    )

    @model_validator(mode="after")
    def _something(self) -> "RecipientConfig":
        if not (self.sms or self.call):
            raise ValueError(f"recipient {self.name!r}: neither sms nor call is set")
        return self


class ModemChannelConfig(Model):
    """A staff channel over a local 4G modem (Quectel EC20/EC25, SIMCom SIM7600): SMS, calls."""

    kind: Literal["modem"] = Field(description="SMS and voice calls through a local modem")
    id: Name = Field(description="Channel id; escalation tiers refer to it")
    fallback: bool = Field(False, description=_FALLBACK)
    port: Path = Field(
        description="Serial port of the modem's AT interface, e.g. /dev/ttyUSB2 (Quectel) or a"
        " udev link such as /dev/modem-at"
    )
    baudrate: int = Field(115200, ge=1200, le=921600, description="Baud rate of the AT port")
    pin_file: SecretFile | None = Field(
        None, description="File (mode 0600) holding the SIM PIN; omit for a SIM without PIN"
    )
    recipients: list[RecipientConfig] = Field(
        min_length=1, description="Who is reached, and how; every message goes to each"
    )
    ring: float = Field(
        45.0, gt=0, le=180, description="Seconds a call rings before it counts as not answered"
    )
    command_timeout: float = Field(
        10.0,
        gt=0,
        le=60,
        description="Seconds the modem may take to answer one AT command; a modem that does not"
        " answer in time is reset (port closed and reopened) and reported",
    )
    sms_timeout: float = Field(
        40.0, gt=0, le=180, description="Seconds the network may take to accept one SMS part"
    )
    max_parts: int = Field(
        4,
        ge=1,
        le=10,
        description="SMS parts per message at most (67 Chinese or 153 Latin characters each);"
        " longer text is cut",
    )
    poll: float = Field(
        30.0, ge=1, le=600, description="Seconds between two checks of SIM, registration, signal"
    )
    retries: int = Field(
        2, ge=0, le=10, description="Tries after a failed one, only to recipients not reached"
    )
    rate: float = Field(
        10.0, gt=0, le=60, description="Messages per minute at most, retries included"
    )
    title_prefix: str = Field(
        "", max_length=32, description="Text put before every title, e.g. '[阳光花园] '"
    )


def _kind(value: Any) -> str:
    """The ``kind`` of a channel; channels written before modems existed have none."""
    kind = value.get("kind", "apprise") if isinstance(value, dict) else value.kind
    return str(kind)


AnyChannelConfig = Annotated[
    Annotated[ChannelConfig, Tag("apprise")] | Annotated[ModemChannelConfig, Tag("modem")],
    Discriminator(_kind),
]


def check_modem_ports(channels: list[ChannelConfig | ModemChannelConfig]) -> list[str]:
    """Modem channels on one port share the modem: their port settings must agree."""
    problems: list[str] = []
    first: dict[Path, tuple[int, ModemChannelConfig]] = {}
    for i, ch in enumerate(channels):
        if not isinstance(ch, ModemChannelConfig):
            continue
        seen = first.setdefault(ch.port, (i, ch))
        j, other = seen
        for key in ("baudrate", "pin_file", "command_timeout", "poll"):
            if getattr(ch, key) != getattr(other, key):
                problems.append(
                    f"channels[{i}].{key}: channels[{j}] uses the same modem ({ch.port}) with"
                    f" another {key}; channels on one port share its settings"
                )
    return problems
