"""What the local API's routes share: refusals, JSON replies, request bodies, who asks.

Contract:
- A handler refuses a request by raising ``Refused(status, message)``; the API's guard
  (``gateway.ops.api``) answers it as ``{"error": message}`` with that status and headers.
- ``json_object`` parses a request body into a JSON object with only the keys a route knows
  (400 otherwise, the message naming an example body); an empty body is ``{}`` where the
  route allows it.
- ``operator`` checks a ``by`` (who does it, recorded in the log and audit): 1 to 64
  printable characters, surrounding blanks dropped.
- aiohttp is imported only when a reply is made (the API imports it lazily).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

BY_RULE = '"by" must be a name of 1 to 64 printable characters'


class Refused(Exception):
    """Answer the request with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response."""
    from aiohttp import web

    return web.json_response(payload, status=status, headers=headers)


def parse_json(raw: bytes, example: str) -> Any:
    """The JSON document in ``raw``; 400 naming ``example`` if it is none."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise Refused(400, f"the body must be JSON like {example}") from None


def json_object(raw: bytes, keys: Collection[str], example: str) -> dict[str, Any]:
    """A JSON object of at most ``keys`` (``{}`` for an empty body); 400 otherwise."""
    if not raw.strip():
        return {}
    body = parse_json(raw, example)
    if not isinstance(body, dict) or not set(body) <= set(keys):
        raise Refused(400, f"the body must be a JSON object like {example}")
    return body


def operator(by: object) -> str:
    """``by`` as a name to record; 400 if it is not 1 to 64 printable characters."""
    if not isinstance(by, str) or not 1 <= len(by.strip()) <= 64 or not by.isprintable():
        raise Refused(400, BY_RULE)
    return by.strip()
