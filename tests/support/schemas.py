"""Validate what the gateway published against the JSON Schemas it ships (gateway/schemas/).

The schema is picked by the topic below ``<root>/<site>/<gateway>/``:

=========================  ============================
``status``                 ``status.json``
``telemetry/<dev>``        ``telemetry.json``
``device/<dev>/status``    ``device-status.json``
``gap``                    ``gap.json``
``store-replaced``         ``store-replaced.json``
``publish-refused``        ``publish-refused.json``
``alarm/<id>``             ``alarm.json``
``alarm-provisional/<id>`` ``alarm-provisional.json``
``cmd-result/<id>``        ``cmd-result.json``
``audit``                  ``audit.json``
``event/<dev>``            ``access-event.json``
``record/<kind>``          ``record.json``
``report/availability``    ``report-availability.json``
``report/response``        ``report-response.json``
=========================  ============================

``validate_message`` also checks that a ``<dev>`` in the topic is the payload's ``device``.

The shipped schemas are the consumers' (docs/mqtt-api.md: a consumer ignores fields it does not
know, so they accept any). The tests hold the gateway to more: ``validator`` makes every object
that lists its properties closed, so a field the contract does not document fails here first.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

__all__ = [
    "SCHEMA_FILES",
    "consumer_schema",
    "schema_name",
    "strict",
    "validate_message",
    "validator",
]

SCHEMA_FILES = (
    "status.json",
    "telemetry.json",
    "device-status.json",
    "gap.json",
    "store-replaced.json",
    "publish-refused.json",
    "alarm.json",
    "alarm-provisional.json",
    "cmd-result.json",
    "audit.json",
    "access-event.json",
    "report-availability.json",
    "report-response.json",
    "record.json",
)


def consumer_schema(name: str) -> dict[str, Any]:
    """``gateway/schemas/<name>`` as shipped: what a platform validates against."""
    text = resources.files("gateway").joinpath("schemas", name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return schema


def strict(schema: Any) -> Any:
    """A copy of ``schema`` in which every object with ``properties`` allows no others."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


@functools.cache
def validator(name: str) -> Any:
    """A strict Draft 2020-12 validator for ``gateway/schemas/<name>`` (see the docstring)."""
    schema = strict(consumer_schema(name))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_name(suffix: str) -> str | None:
    """The schema file for a topic ``suffix`` (below the gateway prefix), or None if it has none."""
    parts = suffix.split("/")
    if parts == ["status"]:
        return "status.json"
    if parts == ["gap"]:
        return "gap.json"
    if parts in (["store-replaced"], ["publish-refused"]):
        return f"{parts[0]}.json"
    if parts == ["audit"]:
        return "audit.json"
    if parts in (["report", "availability"], ["report", "response"]):
        return f"report-{parts[1]}.json"
    if len(parts) == 2 and parts[0] == "event" and parts[1]:
        return "access-event.json"
    if len(parts) == 2 and parts[0] == "record" and parts[1]:
        return "record.json"
    if len(parts) == 2 and parts[0] == "cmd-result" and parts[1]:
        return "cmd-result.json"
    if len(parts) == 2 and parts[0] == "telemetry" and parts[1]:
        return "telemetry.json"
    if len(parts) == 2 and parts[0] == "alarm" and parts[1]:
        return "alarm.json"
    if len(parts) == 2 and parts[0] == "alarm-provisional" and parts[1]:
        return "alarm-provisional.json"
    if len(parts) == 3 and parts[0] == "device" and parts[1] and parts[2] == "status":
        return "device-status.json"
    return None


def validate_message(prefix: str, topic: str, payload: bytes) -> dict[str, Any]:
    """Parse ``payload`` and validate it by ``topic``; return the decoded object.

    ``prefix`` is ``<root>/<site>/<gateway>`` (with or without the trailing slash). Raises
    ``AssertionError`` for a topic outside the prefix or without a schema, and
    ``jsonschema.ValidationError`` for a payload that does not match its schema.
    """
    head = prefix.rstrip("/") + "/"
    assert topic.startswith(head), f"topic {topic!r} is not below {head!r}"
    suffix = topic[len(head) :]
    name = schema_name(suffix)
    assert name is not None, f"no schema for topic {topic!r}"
    obj = json.loads(payload)
    assert isinstance(obj, dict), f"{topic}: payload is not a JSON object: {payload!r}"
    validator(name).validate(obj)
    parts = suffix.split("/")
    if name in ("telemetry.json", "device-status.json"):
        assert obj["device"] == parts[1], f"{topic}: payload device is {obj['device']!r}"
    if name == "record.json":
        assert obj["kind"] == parts[1], f"{topic}: payload kind is {obj['kind']!r}"
    return obj
