"""The record of an alarm transition: what the alarm lane carries for each state change, and
the alarm's row in the store's ``alarms`` table (committed in the same transaction).

The fields of contract v1's alarm message (docs/mqtt-api.md), in its order; the sinks render
them (``gateway.core.contract.render``).
"""

import json

from gateway.alarms.lifecycle import to_dict
from gateway.alarms.model import Alarm, Transition
from gateway.alarms.wording import WELFARE_CHECK
from gateway.core.contract import iso
from gateway.core.messages import Json, Lane, Record


def alarm_record(t: Transition, synced: bool) -> Record:
    """An alarm transition, in the alarm lane on ``alarm/<alarm_id>``."""
    a = t.alarm
    fields: dict[str, Json] = {
        "alarm_id": a.id,
        "state": a.state.value,
        "previous": None if t.previous is None else t.previous.value,
        "note": t.note,
        "cause": a.cause,
        "rule": a.rule,
        "kind": a.kind,
        "device": a.device,
        "severity": a.severity,
        "latched": a.latched,
        "active": a.active,
        "message": a.message,
        "value": a.value,
        "raised_at": iso(a.raised_at),
        "notified_at": None if a.notified_at is None else iso(a.notified_at),
        "acked_at": None if a.acked_at is None else iso(a.acked_at),
        "acked_by": a.acked_by or None,
        "cleared_at": None if a.cleared_at is None else iso(a.cleared_at),
        "time_to_ack_s": None if a.time_to_ack is None else round(a.time_to_ack, 3),
        "repeats": a.repeats,
        "escalation_step": a.tier + 1,
    }
    ts = a.history[-1][0] if a.history else a.raised_at
    return Record(Lane.ALARM, f"alarm/{a.id}", ts, synced, a.device, fields=fields)


def alarm_row(a: Alarm) -> tuple[str, int, float, str]:
    """The alarm's row of the ``alarms`` table: id, open, raised at, its state as JSON."""
    return a.id, int(a.state.value != "cleared"), a.raised_at, json.dumps(to_dict(a))


def journal_note(t: Transition) -> str:
    """The transition's note as the log may keep it: a welfare answer's free text may be
    personal (docs/privacy.md), so for those the log gets who answered, not what. The alarm
    record upstream keeps the whole note."""
    head, answered, rest = t.note.partition("answered by ")
    if t.alarm.kind != WELFARE_CHECK or not answered:
        return t.note
    return head + answered + rest.split(": ", 1)[0]  # "cleared: answered by <who>"
