"""Pure mapping of a terminal record's body: JSON bytes -> ``TerminalRecord``, or ``Refused``.

The body is the gateway's own shape (terminals here are kiosks and staff apps, written for it):

    {"kind": "care_request", "id": "K1-000123", "fields": {"flat": "3-1201", "phone": "..."}}

Contract:
- ``parse`` raises nothing but ``Refused``, whatever the bytes. No I/O, no clock, no logging;
  a ``Refused`` detail names fields and types, never a value (values may be sensitive).
- Reasons: ``not_json`` (not UTF-8 JSON, or not an object), ``unknown_kind`` (a kind the
  config does not declare, or one this terminal may not post), ``missing_field`` (the kind,
  the id, ``fields``, or a required field), ``undeclared_field`` (a field the kind does not
  declare: a terminal cannot smuggle data through), ``wrong_type`` (a value of another JSON
  type than declared, a string over its ``max_length`` or not printable, an id that is not
  1-128 printable characters).
- The public and internal values go to ``fields``; personal and sensitive ones to
  ``private``, for the seal stage. Null values count as absent.
"""

import json

from gateway.config.records import RecordKindConfig, RecordsConfig
from gateway.core.messages import Json
from gateway.core.records import TerminalRecord

MAX_ID = 128


class Refused(Exception):
    """A record body that yields nothing; ``reason`` is counted."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _type(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _check(kind: RecordKindConfig, name: str, value: object) -> Json:
    spec = next(f for f in kind.fields if f.name == name)
    if spec.type == "bool" and isinstance(value, bool):
        return value
    if spec.type == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if spec.type == "string" and isinstance(value, str):
        if len(value) > spec.max_length or not value.replace("\n", " ").isprintable():
            raise Refused("wrong_type", f"{name}: longer than {spec.max_length} or not printable")
        return value
    raise Refused("wrong_type", f"{name} is {_type(value)}, not a {spec.type}")


def parse(
    records: RecordsConfig, allowed: frozenset[str], device: str, body: bytes, ts: float
) -> TerminalRecord:
    """The record ``body`` carries, posted by ``device`` at ``ts``; raises ``Refused``."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Refused("not_json", "not UTF-8 JSON") from None
    if not isinstance(doc, dict):
        raise Refused("not_json", f"a {_type(doc)}, not an object")
    kind_id, record_id, values = doc.get("kind"), doc.get("id"), doc.get("fields")
    if not isinstance(kind_id, str):
        raise Refused("missing_field", f"kind is {_type(kind_id)}, not text")
    kind = records.kind(kind_id) if kind_id in allowed else None
    if kind is None:
        raise Refused("unknown_kind", f"{kind_id[:64]!r} is not a kind this terminal posts")
    if isinstance(record_id, int) and not isinstance(record_id, bool):
        record_id = str(record_id)
    if not isinstance(record_id, str) or not 0 < len(record_id) <= MAX_ID:
        raise Refused("missing_field", "id: 1-128 characters of text or an integer")
    if not record_id.isprintable():
        raise Refused("wrong_type", "id: not printable")
    if not isinstance(values, dict):
        raise Refused("missing_field", f"fields is {_type(values)}, not an object")
    declared = {f.name: f for f in kind.fields}
    extra = sorted(str(k)[:64] for k in values if k not in declared)
    if extra:
        raise Refused("undeclared_field", f"{kind.id} declares no field {extra[0]!r}")
    public: list[tuple[str, Json]] = []
    private: list[tuple[str, Json]] = []
    classes: list[tuple[str, str]] = []
    for spec in kind.fields:
        value = values.get(spec.name)
        if value is None:
            if spec.required:
                raise Refused("missing_field", f"{spec.name} is required")
            continue
        checked = _check(kind, spec.name, value)
        classes.append((spec.name, spec.data_class))
        if spec.data_class in ("public", "internal"):
            public.append((spec.name, checked))
        else:
            private.append((spec.name, checked))
    urgent = kind.urgent is not None and values.get(kind.urgent) is True
    return TerminalRecord(device, kind.id, record_id, ts, tuple(public), tuple(classes),
                          kind.retention, urgent, tuple(private))  # fmt: skip
