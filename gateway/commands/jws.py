"""Reading and verifying a command in JWS compact serialisation (RFC 7515 §7.1, EdDSA).

Pure functions for ``Verifier``; each returns a value or raises ``Rejected``.

``split`` checks the form: three segments, each the canonical base64url of its bytes (no
padding, no stray characters, so one token has one spelling). ``read_header`` checks the
protected header strictly, before any key is chosen:

- it is a JSON object without duplicate keys, holding exactly ``alg``, ``kid`` and ``typ``;
  any other parameter is refused, so ``crit`` is never understood and refused, and no key is
  ever taken from the message (``jwk``, ``jku``, ``x5u``, ``x5c`` ...): keys come only from the
  gateway's configuration, by ``kid``;
- ``alg`` is ``EdDSA`` exactly (never ``none``, HS*, RS* or anything else);
- ``typ`` is ``cgw-cmd+jwt`` (compared without case, ``application/`` optional, RFC 7515
  §4.1.9), so a token signed by the platform for another purpose is not a command.

``check_signature`` has PyJWT verify the token under the configured key with EdDSA as the only
algorithm, and confirms that the payload it verified is the one that was read.
"""

from dataclasses import dataclass
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.commands.body import KID, parse_json
from gateway.commands.model import ALG, TYP
from gateway.commands.rejected import Rejected
from gateway.commands.signing import SIGNATURE_CHARS, b64url_decode, clip

HEADER_MEMBERS: Final = frozenset({"alg", "kid", "typ"})
_JWS = jwt.PyJWS(algorithms=[ALG])  # no algorithm but EdDSA is even registered


@dataclass(frozen=True, slots=True)
class Parts:
    """The three segments of a compact JWS: header and payload decoded, the signature as sent."""

    header: bytes
    payload: bytes
    signature: str


def split(token: str) -> Parts:
    """The segments of ``token``; ``Rejected`` (malformed) if it is not a compact JWS."""
    segments = token.split(".")
    if len(segments) != 3:
        raise Rejected(
            "malformed", "neither a JWS (three base64url parts joined by '.') nor a JSON object"
        )
    header, payload, signature = segments
    decoded = {}
    for what, segment in (("header", header), ("payload", payload)):
        try:
            decoded[what] = b64url_decode(segment)
        except ValueError as exc:
            raise Rejected("malformed", f"JWS {what}: {exc}") from exc
    return Parts(decoded["header"], decoded["payload"], signature)


def read_header(parts: Parts, cid: str | None) -> str:
    """The ``kid`` of a valid protected header (module docstring); ``Rejected`` if not."""
    try:
        text = parts.header.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected("not_utf8", f"JWS header: invalid UTF-8 at byte {exc.start}", cid) from exc
    header = parse_json(text, "JWS header", cid)
    extra = header.keys() - HEADER_MEMBERS
    if extra:
        refused = clip(sorted(extra)[0])
        raise Rejected("malformed", f"JWS header parameter {refused!r} is not accepted", cid)
    missing = HEADER_MEMBERS - header.keys()
    if missing:
        raise Rejected("malformed", f"JWS header lacks {', '.join(sorted(missing))}", cid)
    alg, typ, kid = header["alg"], header["typ"], header["kid"]
    if alg != ALG:
        raise Rejected("malformed", f"JWS alg {_quote(alg)}: only {ALG} is accepted", cid)
    if not isinstance(typ, str) or typ.lower().removeprefix("application/") != TYP:
        raise Rejected("malformed", f"JWS typ {_quote(typ)}: a command is {TYP}", cid)
    if not isinstance(kid, str) or not KID.fullmatch(kid):
        raise Rejected("malformed", f"JWS kid must be a string matching {KID.pattern}", cid)
    return kid


def _quote(value: Any) -> str:
    return repr(clip(value)) if isinstance(value, str) else f"of type {type(value).__name__}"


def check_signature(key: Ed25519PublicKey, token: str, parts: Parts, cid: str | None) -> None:
    """Return if ``token`` verifies under ``key``; ``Rejected`` (bad_signature) if not."""
    try:
        if len(parts.signature) != SIGNATURE_CHARS:
            raise ValueError(f"not {SIGNATURE_CHARS} characters")
        b64url_decode(parts.signature)
    except ValueError as exc:
        raise Rejected("bad_signature", f"JWS signature: {exc}", cid) from exc
    try:
        verified = _JWS.decode_complete(token, key, algorithms=[ALG])
    except jwt.InvalidSignatureError as exc:
        raise Rejected("bad_signature", "signature does not verify", cid) from exc
    except jwt.PyJWTError as exc:  # refused for a reason the checks above should rule out
        raise Rejected("bad_signature", f"JWS refused: {clip(str(exc), 80)}", cid) from exc
    if verified["payload"] != parts.payload:  # the bytes verified are the bytes read
        raise Rejected("bad_signature", "the verified payload is not the one read", cid)
