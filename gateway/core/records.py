"""Terminal records as the pipeline carries them, and as they go upstream (``record/<kind>``).

A ``TerminalRecord`` leaves the driver with every value it was posted with: the public and
internal ones in ``fields``, the personal and sensitive ones in ``private`` (never in a
``repr``). The pipeline's seal stage (``gateway.pipeline.sealing``) turns it, before any
other stage sees it, into one whose ``private`` is empty, whose personal values are
pseudonyms in ``persons`` and whose sensitive values are one sealed envelope in ``sealed``.
``record_record`` refuses a record still holding private values: a pipeline without the seal
stage is a bug, never a leak.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.core.contract import iso
from gateway.core.messages import Json, Lane, Record

RECORD_SCHEMA = "record/1"


@dataclass(frozen=True, slots=True)
class TerminalRecord:
    """One record a data-collection terminal posted."""

    device: str  # the terminal
    kind: str
    record_id: str  # the terminal's own id of the record: the platform's dedup key with device
    ts: float  # the gateway's wall time at arrival
    fields: tuple[tuple[str, Json], ...]  # public and internal values, in clear
    classes: tuple[tuple[str, str], ...]  # every posted field's class
    retention: int  # seconds
    urgent: bool = False
    private: tuple[tuple[str, Json], ...] = field(default=(), repr=False)  # before sealing
    persons: tuple[tuple[str, str], ...] = ()  # personal fields, pseudonymised
    sealed: Mapping[str, str] | None = None  # the sensitive fields' envelope


def record_record(rec: TerminalRecord, synced: bool) -> Record:
    """A terminal record on ``record/<kind>`` in the event lane, purged after its retention."""
    if rec.private:
        raise ValueError("a terminal record reached the store before the seal stage")
    fields: dict[str, Json] = {
        "device": rec.device,
        "kind": rec.kind,
        "record_id": rec.record_id,
        "gateway_ts": iso(rec.ts),
        "fields": dict(rec.fields),
        "persons": dict(rec.persons),
        "sealed": None if rec.sealed is None else dict(rec.sealed),
        "classes": dict(rec.classes),
        "urgent": rec.urgent,
        "retention_s": rec.retention,
    }
    return Record(
        Lane.EVENT,
        f"record/{rec.kind}",
        rec.ts,
        synced,
        rec.device,
        expires=rec.ts + rec.retention,
        fields=fields,
    )
