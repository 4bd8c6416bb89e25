"""Signed downlink commands: the platform asks, the gateway checks before it acts.

The platform publishes a command on ``<root>/<site>/<gateway>/cmd/<name>``: a JSON object
signed with the platform's Ed25519 key (docs/commands.md has the format). The gateway holds
only public keys. Before anything runs:

1. ``Verifier.verify(raw, now)`` (pure) checks size, encoding, form, name, arguments, key,
   signature, target and validity window, and returns a ``Command`` or raises ``Rejected``
   with one of ``REASONS``;
2. ``ReplayCache.claim(cmd)`` records the nonce on disk; False means it was seen (a duplicate
   delivery or a replay), so the command is not run again;
3. the caller executes, answers on ``cmd-result/<id>`` and records the answer with
   ``ReplayCache.finish``, so a duplicate delivery is answered again without running twice.

``signing`` holds the canonical form, key ids, key files and ``sign`` (for the platform side,
``cgw sign`` and tests).
"""

from gateway.commands.model import (
    ARGS,
    NAMES,
    AlarmArgs,
    Command,
    CommandName,
    NoArgs,
    UnlockArgs,
    command_topic,
    result_topic,
)
from gateway.commands.replay import Entry, ReplayCache
from gateway.commands.signing import canonical, key_id, load_public_keys, sign
from gateway.commands.verify import REASONS, Reason, Rejected, Verifier

__all__ = [
    "ARGS",
    "NAMES",
    "REASONS",
    "AlarmArgs",
    "Command",
    "CommandName",
    "Entry",
    "NoArgs",
    "Reason",
    "Rejected",
    "ReplayCache",
    "UnlockArgs",
    "Verifier",
    "canonical",
    "command_topic",
    "key_id",
    "load_public_keys",
    "result_topic",
    "sign",
]
