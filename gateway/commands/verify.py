"""Command verification: the bytes of a ``cmd/<name>`` message in, a ``Command`` out.

Pure: no I/O, no logging, no clock (the caller passes ``now``). ``Verifier.verify`` returns a
``Command`` or raises ``Rejected``, and nothing else whatever the bytes (a hypothesis test
holds it to that). Every rejection carries one of ``REASONS``, for the audit log and the
``rejected_total{reason}`` counter.

Checks, cheapest first; nothing that needs the content to be *trusted* is checked before the
signature, and the signature is checked only on a well-formed command:

1. ``too_large``: more than ``max_size`` bytes (4 KiB by default).
2. ``not_utf8``: not valid UTF-8.
3. ``not_json``: not JSON (``NaN`` and ``Infinity`` are not JSON).
4. ``malformed``: not an object; a duplicated key anywhere (RFC 8259 leaves its meaning open,
   so it could mean one thing to the platform and another here); nesting too deep; a missing
   or unknown member; a member of the wrong type or form (floats are never accepted); ``v``
   other than 1; ``exp`` not after ``iat``.
5. ``unknown_name``: ``name`` is not a command this gateway knows.
6. ``bad_args``: ``args`` does not fit the command's schema (missing, extra, wrong type).
7. ``unknown_key``: ``kid`` is not one of the configured platform keys.
8. ``bad_signature``: ``sig`` is not 86 base64url characters of canonical encoding, or does
   not verify over the canonical bytes under key ``kid``.
9. ``wrong_target``: addressed to another site or gateway, or delivered on the topic of
   another command (when the caller passes ``topic_name``).
10. ``expired``: ``now > exp + max_skew``. A command that expired while the gateway was offline
    ends here: reported, never executed.
11. ``not_yet_valid``: ``iat > now + max_skew``.
12. ``lifetime_too_long``: ``exp - iat > max_lifetime``.
13. ``replayed``: not checked here; ``ReplayCache.claim`` decides it, and the caller raises
    ``Rejected("replayed", ...)`` when the claim fails.

``now`` is trusted: with an unsynchronised clock every freshness decision is meaningless, so
the caller should not accept commands then (RELIABILITY.md §5, "Clock skew").
"""

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, NoReturn, cast, get_args

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from gateway.commands.model import (
    ARGS,
    DEFAULT_MAX_LIFETIME,
    DEFAULT_MAX_SKEW,
    ID_PATTERN,
    KID_PATTERN,
    MAX_INT,
    MAX_SIZE,
    NAME_PATTERN,
    NAMES,
    NONCE_PATTERN,
    VERSION,
    Command,
    CommandName,
)
from gateway.commands.signing import SIGNATURE_CHARS, canonical, clip, describe, key_id
from gateway.core.errors import PermanentError

Reason = Literal[
    "too_large",
    "not_utf8",
    "not_json",
    "malformed",
    "unknown_name",
    "bad_args",
    "unknown_key",
    "bad_signature",
    "wrong_target",
    "expired",
    "not_yet_valid",
    "lifetime_too_long",
    "replayed",
]
REASONS: Final[tuple[Reason, ...]] = get_args(Reason)
# Reasons found only after the signature verified: the command really came from the platform.
AUTHENTICATED: Final[frozenset[Reason]] = frozenset(
    {"wrong_target", "expired", "not_yet_valid", "lifetime_too_long", "replayed"}
)
FIELDS: Final = frozenset(
    {"v", "id", "name", "target", "args", "iat", "exp", "nonce", "kid", "sig"}
)
TARGET_FIELDS: Final = frozenset({"site_id", "gateway_id"})

_ID = re.compile(ID_PATTERN)
_NONCE = re.compile(NONCE_PATTERN)
_KID = re.compile(KID_PATTERN)
_NAME = re.compile(NAME_PATTERN)
_SIG = re.compile(f"[A-Za-z0-9_-]{{{SIGNATURE_CHARS}}}")


class Rejected(PermanentError):
    """A command that must not run, and why.

    Attributes:
        reason: one of ``REASONS``: what the counters and the audit log are keyed on.
        detail: a short explanation for people; quotes of the input are clipped.
        command_id: the command's ``id`` if it could be read and is well-formed, else None.
            Authentic only if ``authenticated``: before the signature check anyone on the
            broker could have written it.
    """

    def __init__(self, reason: Reason, detail: str, command_id: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason
        self.detail = detail
        self.command_id = command_id

    @property
    def authenticated(self) -> bool:
        """Whether the signature was verified before this rejection."""
        return self.reason in AUTHENTICATED


class _Duplicate(Exception):
    """A JSON object repeats a key."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _Duplicate(f"duplicate key {clip(key)!r}")
        obj[key] = value
    return obj


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


class Verifier:
    """Decides whether bytes are a command this gateway must carry out.

    Args:
        keys: the platform's public keys by key id (``signing.load_public_keys``); during a
            rotation both the old and the new key.
        site_id, gateway_id: this gateway's identity; commands must name both.
        max_skew: seconds of clock difference tolerated on ``iat`` and ``exp``.
        max_lifetime: longest ``exp - iat`` accepted, in seconds.
        max_size: largest command accepted, in bytes.

    Raises:
        ValueError: no keys, a key filed under another key id, a malformed identity or a
            negative limit.
    """

    def __init__(
        self,
        keys: Mapping[str, Ed25519PublicKey],
        site_id: str,
        gateway_id: str,
        max_skew: float = DEFAULT_MAX_SKEW,
        max_lifetime: float = DEFAULT_MAX_LIFETIME,
        max_size: int = MAX_SIZE,
    ) -> None:
        if not keys:
            raise ValueError("no platform public key: every command would be rejected")
        for kid, key in keys.items():
            if kid != key_id(key):
                raise ValueError(f"key filed under id {kid!r} has id {key_id(key)!r}")
        for label, value in (("site id", site_id), ("gateway id", gateway_id)):
            if not _NAME.fullmatch(value):
                raise ValueError(f"{label} {value!r} is not a valid name")
        if max_skew < 0 or max_lifetime <= 0 or max_size <= 0:
            raise ValueError("max_skew must be ≥ 0, max_lifetime and max_size > 0")
        self._keys = dict(keys)
        self.site_id = site_id
        self.gateway_id = gateway_id
        self.max_skew = max_skew
        self.max_lifetime = max_lifetime
        self.max_size = max_size

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The key ids accepted, sorted."""
        return tuple(sorted(self._keys))

    def verify(self, raw: bytes, now: float, *, topic_name: str | None = None) -> Command:
        """The command in ``raw`` if it must be carried out at wall time ``now``.

        ``topic_name`` is the ``<name>`` of the ``cmd/<name>`` topic it arrived on, if the
        caller wants it to match the signed name (the signed name decides in any case).

        Raises:
            Rejected: with the first failed check (module docstring); nothing else.
        """
        if len(raw) > self.max_size:
            raise Rejected("too_large", f"{len(raw)} bytes, at most {self.max_size}")
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Rejected("not_utf8", f"invalid UTF-8 at byte {exc.start}") from exc
        obj = _parse(text)
        cid = obj.get("id")
        cid = cid if isinstance(cid, str) and _ID.fullmatch(cid) else None
        env = _envelope(obj, cid)
        name = env.name
        try:
            args = ARGS[name].model_validate(env.args, strict=True)
        except ValidationError as exc:
            raise Rejected("bad_args", f"{name}: {describe(exc)}", cid) from exc
        key = self._keys.get(env.kid)
        if key is None:
            raise Rejected("unknown_key", f"key id {env.kid!r} is not configured", cid)
        self._check_signature(key, obj, env.sig, cid)
        site, gateway = env.site_id, env.gateway_id
        if (site, gateway) != (self.site_id, self.gateway_id):
            raise Rejected("wrong_target", f"addressed to {site}/{gateway}", cid)
        if topic_name is not None and topic_name != name:
            raise Rejected(
                "wrong_target", f"a signed {name} command delivered on cmd/{clip(topic_name)}", cid
            )
        iat, exp = env.iat, env.exp
        # written to fail closed: a NaN clock passes neither comparison
        if not now <= exp + self.max_skew:
            raise Rejected("expired", f"expired {now - exp:.0f} s ago", cid)
        if not iat - self.max_skew <= now:
            raise Rejected("not_yet_valid", f"issued {iat - now:.0f} s in the future", cid)
        if exp - iat > self.max_lifetime:
            raise Rejected(
                "lifetime_too_long", f"valid for {exp - iat} s, at most {self.max_lifetime:g}", cid
            )
        return Command(
            id=env.id,
            name=name,
            site_id=site,
            gateway_id=gateway,
            args=args,
            iat=iat,
            exp=exp,
            nonce=env.nonce,
            kid=env.kid,
        )

    @staticmethod
    def _check_signature(
        key: Ed25519PublicKey, obj: dict[str, Any], sig: str, cid: str | None
    ) -> None:
        if not _SIG.fullmatch(sig):
            raise Rejected("bad_signature", f"not {SIGNATURE_CHARS} base64url characters", cid)
        try:
            signature = base64.urlsafe_b64decode(sig + "==")
        except binascii.Error as exc:  # unreachable after the pattern check; kept as a guard
            raise Rejected("bad_signature", "not base64url", cid) from exc
        if base64.urlsafe_b64encode(signature).rstrip(b"=") != sig.encode("ascii"):
            raise Rejected("bad_signature", "not the canonical base64url of 64 bytes", cid)
        try:
            key.verify(signature, canonical(obj))
        except InvalidSignature as exc:
            raise Rejected("bad_signature", "signature does not verify", cid) from exc
        except ValueError as exc:  # no canonical form: unreachable after _envelope; be safe
            raise Rejected("malformed", str(exc), cid) from exc


def _parse(text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except _Duplicate as exc:
        raise Rejected("malformed", str(exc)) from exc
    except RecursionError as exc:
        raise Rejected("malformed", "nested too deeply") from exc
    except ValueError as exc:  # json.JSONDecodeError, NaN/Infinity, an integer too long
        raise Rejected("not_json", clip(str(exc), 80)) from exc
    if not isinstance(obj, dict):
        raise Rejected("malformed", f"a JSON {type(obj).__name__}, not an object")
    return obj


@dataclass(frozen=True, slots=True)
class _Envelope:
    """The members of a well-formed command, flattened and typed."""

    id: str
    name: CommandName
    site_id: str
    gateway_id: str
    args: dict[str, Any]
    iat: int
    exp: int
    nonce: str
    kid: str
    sig: str


def _envelope(obj: dict[str, Any], cid: str | None) -> _Envelope:
    """``obj`` as an ``_Envelope``; ``Rejected`` (malformed, unknown_name) if it is not one."""

    def bad(detail: str) -> NoReturn:
        raise Rejected("malformed", detail, cid)

    missing = FIELDS - obj.keys()
    if missing:
        bad(f"missing {', '.join(sorted(missing))}")
    extra = obj.keys() - FIELDS
    if extra:
        bad(f"unknown member {clip(sorted(extra)[0])!r}")
    if type(obj["v"]) is not int or obj["v"] != VERSION:
        bad(f"v must be {VERSION}")
    for member, pattern in (("id", _ID), ("nonce", _NONCE), ("kid", _KID)):
        value = obj[member]
        if not isinstance(value, str) or not pattern.fullmatch(value):
            bad(f"{member} must be a string matching {pattern.pattern}")
    for member in ("name", "sig"):
        if not isinstance(obj[member], str):
            bad(f"{member} must be a string")
    target = obj["target"]
    if not isinstance(target, dict) or target.keys() != TARGET_FIELDS:
        bad("target must be an object with exactly site_id and gateway_id")
    for member in sorted(TARGET_FIELDS):
        value = target[member]
        if not isinstance(value, str) or not _NAME.fullmatch(value):
            bad(f"target.{member} must be a name (letters, digits, '_', '.', '-')")
    if not isinstance(obj["args"], dict):
        bad("args must be an object")
    for member in ("iat", "exp"):
        value = obj[member]
        if type(value) is not int or not 0 <= value <= MAX_INT:
            bad(f"{member} must be an integer number of seconds since the epoch")
    if obj["exp"] <= obj["iat"]:
        bad("exp must be after iat")
    name = obj["name"]
    if name not in NAMES:
        raise Rejected("unknown_name", f"unknown command {clip(name)!r}", cid)
    return _Envelope(
        id=obj["id"],
        name=cast(CommandName, name),
        site_id=target["site_id"],
        gateway_id=target["gateway_id"],
        args=obj["args"],
        iat=obj["iat"],
        exp=obj["exp"],
        nonce=obj["nonce"],
        kid=obj["kid"],
        sig=obj["sig"],
    )
