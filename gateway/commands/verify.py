"""Command verification: the bytes of a ``cmd/<name>`` message in, a ``Command`` out.

Pure: no I/O, no logging, no clock (the caller passes ``now``). ``Verifier.verify`` returns a
``Command`` or raises ``Rejected``, and nothing else whatever the bytes (a hypothesis test
holds it to that). Every rejection carries one of ``REASONS`` and, once the form is known, the
``form`` it was read as.

Two wire forms: a JWS in compact serialisation (``gateway.commands.jws``), and, while
``legacy`` is on (the transition, docs/commands.md), the legacy JSON envelope
(``gateway.commands.legacy``). Blanks (JSON whitespace) around the message are ignored; a
message that then starts with ``{`` is read as the legacy envelope, anything else as a JWS.

Checks, cheapest first; nothing that needs the content to be *trusted* is checked before the
signature, and the signature is checked only on a well-formed command:

1. ``too_large``: more than ``max_size`` bytes (4 KiB by default).
2. ``not_utf8``: not valid UTF-8 (the message, or the JWS header or payload it carries).
3. ``malformed``: not three canonical base64url segments; a JWS header that is not exactly
   ``alg`` = EdDSA, ``kid`` and ``typ`` = cgw-cmd+jwt; a legacy envelope while ``legacy`` is
   off.
4. ``not_json``: the command (JWS payload or envelope) or the JWS header is not JSON (``NaN``
   and ``Infinity`` are not JSON).
5. ``malformed``: not an object; a duplicated key anywhere; nesting too deep; a missing or
   unknown member; a member of the wrong type or form (floats are never accepted); ``v``
   other than 1; ``exp`` not after ``iat`` (``gateway.commands.body``).
6. ``unknown_name``: ``name`` is not a command this gateway knows.
7. ``bad_args``: ``args`` does not fit the command's schema (missing, extra, wrong type).
8. ``unknown_key``: ``kid`` is not one of the configured platform keys.
9. ``bad_signature``: the signature is not 86 canonical base64url characters, or does not
   verify under key ``kid``.
10. ``wrong_target``: addressed to another site or gateway, or delivered on the topic of
    another command (when the caller passes ``topic_name``).
11. ``expired``: ``now > exp + max_skew``. A command that expired while the gateway was offline
    ends here: reported, never executed.
12. ``not_yet_valid``: ``iat > now + max_skew``.
13. ``lifetime_too_long``: ``exp - iat > max_lifetime``.
14. ``replayed``: not checked here; ``ReplayCache.claim`` decides it, and the caller raises
    ``Rejected("replayed", ...)`` when the claim fails.

``now`` is trusted: with an unsynchronised clock every freshness decision is meaningless, so
the caller should not accept commands then (RELIABILITY.md §5, "Clock skew").
"""

from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from gateway.commands import jws, legacy
from gateway.commands.body import NAME, Body, parse_json, read_body, well_formed_id
from gateway.commands.model import (
    ARGS,
    DEFAULT_MAX_LIFETIME,
    DEFAULT_MAX_SKEW,
    MAX_SIZE,
    AlarmArgs,
    AwayArgs,
    Command,
    Form,
    NoArgs,
    UnlockArgs,
)
from gateway.commands.rejected import AUTHENTICATED, FORMS, REASONS, Reason, Rejected
from gateway.commands.signing import clip, describe
from gateway.config.keys import key_id

Args = AlarmArgs | UnlockArgs | AwayArgs | NoArgs
_BLANK = " \t\r\n"
__all__ = ["AUTHENTICATED", "FORMS", "REASONS", "Reason", "Rejected", "Verifier"]


class Verifier:
    """Decides whether bytes are a command this gateway must carry out.

    Args:
        keys: the platform's public keys by key id (``signing.load_public_keys``); during a
            rotation both the old and the new key.
        site_id, gateway_id: this gateway's identity; commands must name both.
        max_skew: seconds of clock difference tolerated on ``iat`` and ``exp``.
        max_lifetime: longest ``exp - iat`` accepted, in seconds.
        max_size: largest command accepted, in bytes.
        legacy: also accept the legacy JSON envelope (the transition; off, only JWS passes).

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
        *,
        legacy: bool = False,
    ) -> None:
        if not keys:
            raise ValueError("no platform public key: every command would be rejected")
        for kid, key in keys.items():
            if kid != key_id(key):
                raise ValueError(f"key filed under id {kid!r} has id {key_id(key)!r}")
        for label, value in (("site id", site_id), ("gateway id", gateway_id)):
            if not NAME.fullmatch(value):
                raise ValueError(f"{label} {value!r} is not a valid name")
        if max_skew < 0 or max_lifetime <= 0 or max_size <= 0:
            raise ValueError("max_skew must be ≥ 0, max_lifetime and max_size > 0")
        self._keys = dict(keys)
        self.site_id = site_id
        self.gateway_id = gateway_id
        self.max_skew = max_skew
        self.max_lifetime = max_lifetime
        self.max_size = max_size
        self.legacy = legacy

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
        text = text.strip(_BLANK)  # JSON whitespace: a trailing newline is not an attack
        form: Form = "legacy" if text.startswith("{") else "jws"
        try:
            if form == "jws":
                body, args, kid = self._jws(text)
            else:
                body, args, kid = self._legacy(text)
            return self._admit(body, args, kid, form, now, topic_name)
        except Rejected as rej:
            rej.form = form
            raise

    def _jws(self, token: str) -> tuple[Body, Args, str]:
        parts = jws.split(token)
        try:
            text = parts.payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Rejected("not_utf8", f"JWS payload: invalid UTF-8 at byte {exc.start}") from exc
        obj = parse_json(text)
        cid = well_formed_id(obj)
        kid = jws.read_header(parts, cid)
        body = read_body(obj, cid)
        args = _arguments(body, cid)
        jws.check_signature(self._key(kid, cid), token, parts, cid)
        return body, args, kid

    def _legacy(self, text: str) -> tuple[Body, Args, str]:
        if not self.legacy:
            raise Rejected(
                "malformed",
                "a JSON envelope: the legacy form is no longer accepted here"
                " (commands.accept_legacy); send the command as a JWS",
            )
        obj = parse_json(text)
        cid = well_formed_id(obj)
        body = read_body(obj, cid, legacy=True)
        args = _arguments(body, cid)
        kid: str = obj["kid"]
        legacy.check_signature(self._key(kid, cid), obj, obj["sig"], cid)
        return body, args, kid

    def _key(self, kid: str, cid: str | None) -> Ed25519PublicKey:
        key = self._keys.get(kid)
        if key is None:
            raise Rejected("unknown_key", f"key id {kid!r} is not configured", cid)
        return key

    def _admit(
        self, body: Body, args: Args, kid: str, form: Form, now: float, topic_name: str | None
    ) -> Command:
        """The checks after the signature: target, topic and validity window."""
        name, cid = body.name, body.id
        site, gateway = body.site_id, body.gateway_id
        if (site, gateway) != (self.site_id, self.gateway_id):
            raise Rejected("wrong_target", f"addressed to {site}/{gateway}", cid)
        if topic_name is not None and topic_name != name:
            raise Rejected(
                "wrong_target", f"a signed {name} command delivered on cmd/{clip(topic_name)}", cid
            )
        iat, exp = body.iat, body.exp
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
            id=cid,
            name=name,
            site_id=site,
            gateway_id=gateway,
            args=args,
            iat=iat,
            exp=exp,
            nonce=body.nonce,
            kid=kid,
            form=form,
        )


def _arguments(body: Body, cid: str | None) -> Args:
    try:
        return ARGS[body.name].model_validate(body.args, strict=True)
    except ValidationError as exc:
        raise Rejected("bad_args", f"{body.name}: {describe(exc)}", cid) from exc
