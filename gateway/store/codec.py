"""How a record's fields are kept in the ``body`` column (schema version 3 and later).

The store's own business: sinks get typed rows. Two forms:

- Telemetry (``Lane.TELEMETRY``): the points as the contract's compact ``points`` array
  (``gateway.core.contract.points_json``): ``[{"name":..,"value":..,"unit":..,"quality":..}]``
  in poll order. The MQTT sink splices it into the payload as it is, so a drain neither parses
  nor re-encodes a point; ``decode_points`` gives the typed points to sinks that want them.
  (Version 2 kept ``[name, value, unit, quality]`` arrays: fewer bytes, but every row was
  parsed and rendered again on its way out, which cost more CPU than the polling that made it.)
- Every other lane: the fields as one compact JSON object, in their order.

Both round-trip exactly: ``decode_*(encode(rec))`` gives back equal values, ints stay ints and
floats floats (``repr`` precision), so a sink renders the same bytes from a stored row as from
the record it was made of. Telemetry has no non-finite floats (``telemetry_record`` refuses
them); in other lanes they are kept as JSON's ``NaN``/``Infinity`` extension, so encoding never
fails inside a write transaction.
"""

import json
import json.scanner
from collections.abc import Mapping
from typing import Any, cast

from gateway.core.contract import points_json
from gateway.core.messages import Json, Lane, Point, Quality, Record

_QUALITY = {q.value: q for q in Quality}
_scan = json.scanner.make_scanner(cast(Any, json.JSONDecoder()))  # the stub asks for a scanner
_point = tuple.__new__  # Point's own __new__ without its argument parsing: the hot path of a drain
compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode(rec: Record) -> str:
    """The ``body`` text of ``rec``."""
    if rec.lane is Lane.TELEMETRY:
        return points_json(rec.points)
    return compact(rec.fields)


def decode_points(text: str) -> tuple[Point, ...]:
    """The points of a telemetry body."""
    quality = _QUALITY
    return tuple(
        [
            _point(Point, (p["name"], p["value"], p["unit"], quality[p["quality"]]))
            for p in _load(text)
        ]
    )


def points_from_v2(text: str) -> str:
    """A version-2 telemetry body (``[name, value, unit, quality]`` arrays) in today's form."""
    quality = _QUALITY
    return points_json(_point(Point, (n, v, u, quality[q])) for n, v, u, q in _load(text))


def decode_fields(text: str) -> Mapping[str, Json]:
    """The fields of any other body."""
    fields: dict[str, Any] = _load(text)
    return fields


def _load(text: str) -> Any:
    """``json.loads`` of text this module wrote, straight to the C scanner (a drain's hot path).

    The text has no surrounding whitespace, so the wrapper's checks are skipped; text that
    does not end where the value does is refused as ``json.loads`` would refuse it.
    """
    try:
        value, end = _scan(text, 0)
    except StopIteration as exc:  # how the scanner says "no JSON value here"
        raise json.JSONDecodeError("Expecting value", text, exc.value) from None
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def points_from_contract(body: Mapping[str, Any]) -> list[list[Any]]:
    """The stored form of the points of a version-1 telemetry body (the contract's JSON)."""
    return [[p["name"], p["value"], p["unit"], p["quality"]] for p in body["points"]]
