"""The legacy command envelope: a JSON object with ``kid`` and ``sig`` over its RFC 8785 form.

Accepted only during the transition to JWS (``commands.accept_legacy``, on by default in this
release and going away in the next; docs/commands.md, "Transition"). Kept here only to verify
that form, and to sign it for tests of the transition.

The canonical form is RFC 8785 (JCS) restricted to the values a command can hold: objects with
string keys, arrays, strings (valid Unicode, no lone surrogates), integers within
±(2**53 - 1), ``true``, ``false`` and ``null``; never a float. For that subset JCS is: no
whitespace; object members sorted by their keys as UTF-16 code units; strings as in
``json.dumps(s, ensure_ascii=False)``; integers in plain decimal. The signed bytes are the UTF-8
of the envelope *without* ``sig`` in that form; ``kid`` is inside them, so a signature cannot be
moved to another key id.

Errors: ``canonical`` and ``sign_legacy`` raise ``ValueError`` on a value outside the form;
``check_signature`` raises ``Rejected`` (``bad_signature``).
"""

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.commands.model import MAX_INT
from gateway.commands.rejected import Rejected
from gateway.commands.signing import SIGNATURE_CHARS, b64url, b64url_decode
from gateway.config.keys import key_id

MAX_DEPTH: Final = 16  # nesting the canonical form accepts; a command needs 2
_SURROGATE = re.compile("[\ud800-\udfff]")


def canonical(command: Mapping[str, Any]) -> bytes:
    """The bytes a legacy signature covers: ``command`` without ``sig``, in canonical form.

    Raises:
        ValueError: a value outside the canonical subset (a float, a too large integer, a
            lone surrogate, a non-string key, nesting deeper than ``MAX_DEPTH``).
    """
    return _encode({k: v for k, v in command.items() if k != "sig"}, 0).encode("utf-8")


def _encode(value: object, depth: int) -> str:
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        if not -MAX_INT <= value <= MAX_INT:
            raise ValueError(f"integer {value} is outside ±(2**53 - 1)")
        return str(value)
    if type(value) is str:
        return _string(value)
    if isinstance(value, Mapping):
        for key in value:
            if type(key) is not str:
                raise ValueError(f"object key {key!r} is not a string")
        members = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
        return "{" + ",".join(f"{_string(k)}:{_encode(v, depth + 1)}" for k, v in members) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v, depth + 1) for v in value) + "]"
    if isinstance(value, float):
        raise ValueError(f"{value!r} is a float: commands carry integers only")
    raise ValueError(f"a {type(value).__name__} has no canonical JSON form")


def _string(text: str) -> str:
    if _SURROGATE.search(text):
        raise ValueError("a string holds a lone surrogate (not valid Unicode)")
    return json.dumps(text, ensure_ascii=False)


def sign_legacy(private_key: Ed25519PrivateKey, command: Mapping[str, Any]) -> dict[str, Any]:
    """``command`` as a legacy envelope: ``kid`` (of ``private_key``) and ``sig`` set.

    Raises:
        ValueError: ``command`` names another ``kid``, or holds a value outside the
            canonical form (see ``canonical``).
    """
    kid = key_id(private_key.public_key())
    if command.get("kid", kid) != kid:
        raise ValueError(f"command names key {command['kid']!r}, the signing key is {kid!r}")
    body = {k: v for k, v in command.items() if k != "sig"}
    body["kid"] = kid
    return {**body, "sig": b64url(private_key.sign(canonical(body)))}


def check_signature(
    key: Ed25519PublicKey, envelope: Mapping[str, Any], sig: str, cid: str | None
) -> None:
    """Return if ``sig`` is ``key``'s signature over ``envelope``'s canonical form.

    Raises:
        Rejected: ``bad_signature`` (not 86 canonical base64url characters, or it does not
            verify); ``malformed`` if ``envelope`` has no canonical form (the envelope checks
            rule that out before).
    """
    try:
        if len(sig) != SIGNATURE_CHARS:
            raise ValueError(f"not {SIGNATURE_CHARS} characters")
        signature = b64url_decode(sig)
    except ValueError as exc:
        raise Rejected("bad_signature", f"sig: {exc}", cid) from exc
    try:
        key.verify(signature, canonical(envelope))
    except InvalidSignature as exc:
        raise Rejected("bad_signature", "signature does not verify", cid) from exc
    except ValueError as exc:
        raise Rejected("malformed", str(exc), cid) from exc
