"""The command object: strict JSON parsing and the members every wire form carries.

Pure functions for ``Verifier``; each returns a value or raises ``Rejected``.

``parse_json`` is stricter than ``json.loads``: a duplicated key anywhere is refused (RFC 8259
leaves its meaning open, so it could mean one thing to the platform and another here), and so
are ``NaN``/``Infinity`` and nesting deep enough to exhaust the parser. ``read_body`` checks the
members of a command (``MEMBERS``: v, id, name, target, args, iat, exp, nonce; plus kid and sig
in the legacy envelope) and their forms: every member required, no other member, integers
only (a float is never accepted), ``v`` = 1, ``exp`` after ``iat``, a known ``name``. It does
not look at ``args`` beyond "an object": the command's schema does (reason ``bad_args``).
"""

import json
import re
from dataclasses import dataclass
from typing import Any, Final, NoReturn, cast

from gateway.commands.model import (
    ID_PATTERN,
    KID_PATTERN,
    MAX_INT,
    NAME_PATTERN,
    NAMES,
    NONCE_PATTERN,
    VERSION,
    CommandName,
)
from gateway.commands.rejected import Reason, Rejected
from gateway.commands.signing import clip

MEMBERS: Final = frozenset({"v", "id", "name", "target", "args", "iat", "exp", "nonce"})
LEGACY_MEMBERS: Final = MEMBERS | {"kid", "sig"}
TARGET_MEMBERS: Final = frozenset({"site_id", "gateway_id"})

ID: Final = re.compile(ID_PATTERN)
NAME: Final = re.compile(NAME_PATTERN)
KID: Final = re.compile(KID_PATTERN)
_NONCE = re.compile(NONCE_PATTERN)


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


def parse_json(text: str, what: str | None = None, cid: str | None = None) -> dict[str, Any]:
    """The JSON object in ``text``.

    Raises:
        Rejected: ``not_json`` (not JSON), ``malformed`` (a duplicate key, too deep, not an
            object); the detail starts with ``what``, if given (the part being read).
    """
    reason: Reason = "malformed"
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except _Duplicate as exc:
        detail = str(exc)
    except RecursionError:
        detail = "nested too deeply"
    except ValueError as exc:  # json.JSONDecodeError, NaN/Infinity, an integer too long
        reason, detail = "not_json", clip(str(exc), 80)
    else:
        if isinstance(obj, dict):
            return obj
        detail = f"a JSON {type(obj).__name__}, not an object"
    raise Rejected(reason, f"{what}: {detail}" if what else detail, cid)


def well_formed_id(obj: dict[str, Any]) -> str | None:
    """``obj["id"]`` if it is a well-formed command id (for answers), else None."""
    cid = obj.get("id")
    return cid if isinstance(cid, str) and ID.fullmatch(cid) else None


@dataclass(frozen=True, slots=True)
class Body:
    """The members of a well-formed command, flattened and typed."""

    id: str
    name: CommandName
    site_id: str
    gateway_id: str
    args: dict[str, Any]
    iat: int
    exp: int
    nonce: str


def read_body(obj: dict[str, Any], cid: str | None, *, legacy: bool = False) -> Body:
    """``obj`` as a ``Body``; ``Rejected`` (malformed, unknown_name) if it is not one.

    ``legacy``: ``obj`` is the legacy envelope, which also carries ``kid`` and ``sig``
    (checked here for form: ``kid`` a key id, ``sig`` a string).
    """

    def bad(detail: str) -> NoReturn:
        raise Rejected("malformed", detail, cid)

    fields = LEGACY_MEMBERS if legacy else MEMBERS
    missing = fields - obj.keys()
    if missing:
        bad(f"missing {', '.join(sorted(missing))}")
    extra = obj.keys() - fields
    if extra:
        bad(f"unknown member {clip(sorted(extra)[0])!r}")
    if type(obj["v"]) is not int or obj["v"] != VERSION:
        bad(f"v must be {VERSION}")
    patterns = [("id", ID), ("nonce", _NONCE)] + ([("kid", KID)] if legacy else [])
    for member, pattern in patterns:
        value = obj[member]
        if not isinstance(value, str) or not pattern.fullmatch(value):
            bad(f"{member} must be a string matching {pattern.pattern}")
    for member in ("name", "sig") if legacy else ("name",):
        if not isinstance(obj[member], str):
            bad(f"{member} must be a string")
    target = obj["target"]
    if not isinstance(target, dict) or target.keys() != TARGET_MEMBERS:
        bad("target must be an object with exactly site_id and gateway_id")
    for member in sorted(TARGET_MEMBERS):
        value = target[member]
        if not isinstance(value, str) or not NAME.fullmatch(value):
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
    return Body(
        id=obj["id"],
        name=cast(CommandName, name),
        site_id=target["site_id"],
        gateway_id=target["gateway_id"],
        args=obj["args"],
        iat=obj["iat"],
        exp=obj["exp"],
        nonce=obj["nonce"],
    )
