"""Pure checks of one HTTP push: is it the device's, and what document does its body hold.

Contract:
- ``Secrets.of(auth)`` reads an entry's token or HMAC key once (the files were checked when
  the config was loaded); never logged, never in a ``repr``.
- ``authorised(auth, secrets, headers, query, body)``: a token must equal the entry's, from
  its header or query parameter; an HMAC must be the hex digest of the raw body under the
  entry's key, after the configured prefix, in either case of hex. Comparisons take constant
  time (``hmac.compare_digest``). Nothing else is read.
- ``document(entry, content_type, body)`` -> the JSON bytes the mapping reads, or
  ``BodyError(reason)``: ``json`` bodies pass unchanged (the mapping decodes and judges them);
  ``form`` bodies (``application/x-www-form-urlencoded``, UTF-8) become a JSON object of their
  fields (a field given twice keeps the last; values that read as decimal numbers become
  numbers, others stay text), or, with ``form_field``, that field's text is the document.
  A form that is not UTF-8, or lacks its ``form_field``, is ``not_form``.
- No I/O but ``Secrets.of``; no clock, no logging.
"""

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from gateway.config.base import read_secret
from gateway.config.http_push import HttpPushDeviceConfig, PushAuthConfig

NUMBER = re.compile(r"-?(0|[1-9][0-9]{0,15})(\.[0-9]{1,15})?")
MAX_FIELDS = 256


class BodyError(Exception):
    """A body that holds no document: ``reason`` is the counted reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Secrets:
    """An entry's token or HMAC key, as bytes."""

    token: bytes | None = field(default=None, repr=False)
    key: bytes | None = field(default=None, repr=False)

    @classmethod
    def of(cls, auth: PushAuthConfig) -> "Secrets":
        """Read the entry's secret file now."""
        if auth.token_file is not None:
            return cls(token=read_secret(auth.token_file).encode())
        assert auth.hmac_file is not None  # the config insists on one of them
        return cls(key=read_secret(auth.hmac_file).encode())


def authorised(
    auth: PushAuthConfig,
    secrets: Secrets,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
) -> bool:
    """Whether the request proves it comes from the entry's device (see the docstring)."""
    if secrets.token is not None:
        header = auth.header
        given = headers.get(header) if header is not None else query.get(auth.token_query or "")
        return given is not None and hmac.compare_digest(given.encode(), secrets.token)
    assert secrets.key is not None
    given = headers.get(auth.hmac_header)
    if given is None or not given.startswith(auth.hmac_prefix):
        return False
    digest = hmac.new(secrets.key, body, getattr(hashlib, auth.hmac_algorithm)).hexdigest()
    return hmac.compare_digest(given[len(auth.hmac_prefix) :].strip().lower().encode(),
                               digest.encode())  # fmt: skip


def _value(text: str) -> str | int | float:
    if NUMBER.fullmatch(text) is None:
        return text
    return float(text) if "." in text else int(text)


def document(entry: HttpPushDeviceConfig, body: bytes) -> bytes:
    """The JSON document of ``body`` (see the docstring); raises ``BodyError``."""
    if entry.body == "json":
        return body
    try:
        text = body.decode("utf-8")
        fields = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text),
                           max_num_fields=MAX_FIELDS, errors="strict")  # fmt: skip
    except (UnicodeDecodeError, ValueError) as exc:
        raise BodyError("not_form", f"not a UTF-8 form: {type(exc).__name__}") from None
    form = dict(fields)
    if entry.form_field is not None:
        if entry.form_field not in form:
            raise BodyError("not_form", f"no field {entry.form_field!r}")
        return form[entry.form_field].encode()
    return json.dumps({k: _value(v) for k, v in form.items()}).encode()
