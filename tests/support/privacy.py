"""Door messages as the gateway sees them past its pseudonymise stage."""

import dataclasses
from collections.abc import Sequence

from drivers.doors.mapping import Parsed, Terminal, parse
from gateway.core.access import AccessEvent
from gateway.pipeline.privacy import Pseudonymise, Pseudonymiser


def private_parse(
    terminals: Sequence[Terminal], topic: str, payload: bytes, ts: float, names: Pseudonymiser
) -> Parsed:
    """``parse``, then the pipeline's pseudonymise stage on the event; raises ``Reject``.

    ``snapshot_dropped`` is set if either dropped the snapshot reference.
    """
    parsed = parse(terminals, topic, payload, ts)
    if not isinstance(parsed.message, AccessEvent):
        return parsed
    stage = Pseudonymise(names)
    event = stage(parsed.message)
    assert isinstance(event, AccessEvent)
    dropped = parsed.snapshot_dropped or stage.snapshots_dropped > 0
    return dataclasses.replace(parsed, message=event, snapshot_dropped=dropped)
