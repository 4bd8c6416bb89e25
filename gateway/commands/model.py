"""Downlink command values: the verified ``Command``, the command names and their arguments.

A command reaches the gateway as a JWS whose payload is the command's JSON object (or, during
the transition, as the legacy signed JSON envelope; docs/commands.md has both).
``gateway.commands.verify`` is the only code that turns bytes into a ``Command``; everything
downstream may rely on these invariants of a ``Command``:

- its signature was valid under a configured platform key (``kid``), in wire form ``form``;
- it is addressed to this gateway (``site_id``, ``gateway_id``);
- it was within its validity window when verified (``iat - skew <= now <= exp + skew``) and
  its lifetime ``exp - iat`` was at most the configured maximum;
- ``args`` is the argument model of ``name``, validated strictly (no coercion, no extra keys).

Whether it was seen before is not a property of the command: the replay cache decides that.

The argument schemas are pydantic models in strict mode: ``"5"`` is not an int, ``5.0`` is not
an int, ``true`` is not an int, and unknown keys are errors.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, ConfigDict, Field

from gateway.config.base import Model, Name

CommandName = Literal["ack", "reset", "unlock", "silence", "status", "away"]
Form = Literal["jws", "legacy"]  # wire forms: a JWS, or the legacy envelope of the transition
NAMES: Final[tuple[CommandName, ...]] = ("ack", "reset", "unlock", "silence", "status", "away")

VERSION: Final = 1  # the "v" field; changes only for an incompatible format change
ALG: Final = "EdDSA"  # the only JWS "alg" accepted (RFC 8037: Ed25519 here)
TYP: Final = "cgw-cmd+jwt"  # the JWS "typ": names this use, so no other signed token passes
MAX_SIZE: Final = 4096  # bytes of one command on the wire (RELIABILITY.md §5: commands ≤ 4 KiB)
DEFAULT_MAX_SKEW: Final = 60  # seconds of clock difference tolerated on iat and exp
DEFAULT_MAX_LIFETIME: Final = 60  # seconds a command may be valid for: exp - iat
MAX_INT: Final = 2**53 - 1  # I-JSON (RFC 7493 §2.2): integers every JSON parser reads exactly

# Regular expressions for the envelope's strings, used with ``re.fullmatch``.
ID_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"  # a uuid fits; safe in an MQTT topic
NONCE_PATTERN: Final = r"[A-Za-z0-9_-]{16,64}"  # base64url or hex; 128 random bits advised
KID_PATTERN: Final = r"[A-Za-z0-9_.-]{1,64}"  # our key ids are 16 lowercase hex digits
NAME_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"  # same as the config's ``Name``


def _printable(text: str) -> str:
    if not text.isprintable() or not text.strip():
        raise ValueError("must be printable and not blank")
    return text


Operator = Annotated[
    str,
    Field(min_length=1, max_length=64, description="Who asked for it, as the platform names them"),
    AfterValidator(_printable),
]


class Args(Model):
    """Arguments of a command: strict types, unknown keys are errors, immutable."""

    model_config = ConfigDict(strict=True)


class AlarmArgs(Args):
    """``ack`` and ``reset``: which alarm, and who did it (recorded on the alarm)."""

    alarm_id: Name = Field(description="The alarm, as in the alarm/<alarm_id> topic")
    by: Operator


class UnlockArgs(Args):
    """``unlock``: release a door for a bounded time."""

    door: Name = Field(description="The door's device id")
    seconds: int = Field(ge=1, le=300, description="How long the door stays released")


class AwayArgs(Args):
    """``away``: a planned absence of a household watched by welfare checks (docs/welfare.md)."""

    household: Name = Field(description="The household, as welfare.households[].id names it")
    start: int = Field(ge=0, le=MAX_INT, description="Unix seconds the absence starts")
    end: int = Field(ge=0, le=MAX_INT, description="Unix seconds it ends (exclusive)")
    note: str = Field(min_length=1, max_length=200, description="Why, as staff will read it")
    by: Operator


class NoArgs(Args):
    """``silence`` and ``status`` take no arguments: ``args`` must be ``{}``."""


ARGS: Final[Mapping[CommandName, type[AlarmArgs | UnlockArgs | AwayArgs | NoArgs]]] = {
    "ack": AlarmArgs,
    "reset": AlarmArgs,
    "unlock": UnlockArgs,
    "silence": NoArgs,
    "status": NoArgs,
    "away": AwayArgs,
}


@dataclass(frozen=True, slots=True)
class Command:
    """A verified command (see the module docstring for what "verified" guarantees)."""

    id: str  # answered on cmd-result/<id>; unique per command
    name: CommandName
    site_id: str
    gateway_id: str
    args: AlarmArgs | UnlockArgs | AwayArgs | NoArgs
    iat: int  # issued at, Unix seconds (platform clock)
    exp: int  # expires at, Unix seconds (platform clock)
    nonce: str  # unique per command; the replay cache key
    kid: str  # the key that signed it
    form: Form = "jws"  # the wire form it arrived in

    def arguments(self) -> dict[str, Any]:
        """``args`` as the JSON object it came from."""
        return self.args.model_dump()


def command_topic(root: str, site_id: str, gateway_id: str, name: str) -> str:
    """Where the platform publishes command ``name`` for one gateway."""
    return f"{root}/{site_id}/{gateway_id}/cmd/{name}"


def result_topic(root: str, site_id: str, gateway_id: str, command_id: str) -> str:
    """Where the gateway answers command ``command_id``."""
    return f"{root}/{site_id}/{gateway_id}/cmd-result/{command_id}"
