"""Signed downlink commands: the platform asks, the gateway checks before it acts.

The platform publishes a command on ``<root>/<site>/<gateway>/cmd/<name>``: a JWS (compact,
EdDSA) whose payload is the command's JSON object, signed with the platform's Ed25519 key with
any JOSE library (docs/commands.md has the format; the legacy JSON envelope is still accepted
while ``commands.accept_legacy`` is on). The gateway holds only public keys. Before anything
runs:

1. ``Verifier.verify(raw, now)`` (pure) checks size, encoding, form, name, arguments, key,
   signature, target and validity window, and returns a ``Command`` or raises ``Rejected``
   with one of ``REASONS``;
2. ``ReplayCache.claim(cmd)`` records the nonce on disk; False means it was seen (a duplicate
   delivery or a replay), so the command is not run again;
3. the caller executes, answers on ``cmd-result/<id>`` and records the answer with
   ``ReplayCache.finish``, so a duplicate delivery is answered again without running twice.

``signing`` holds key ids, key files, ``make_command`` and ``sign`` (the platform side, for
``cgw sign`` and tests); ``legacy`` the legacy envelope's canonical form and ``sign_legacy``.
"""

from gateway.commands.legacy import sign_legacy
from gateway.commands.model import (
    ALG,
    ARGS,
    NAMES,
    TYP,
    AlarmArgs,
    Command,
    CommandName,
    Form,
    NoArgs,
    UnlockArgs,
    command_topic,
    result_topic,
)
from gateway.commands.rejected import FORMS, REASONS, Reason, Rejected
from gateway.commands.replay import Entry, ReplayCache
from gateway.commands.signing import key_id, load_public_keys, sign
from gateway.commands.verify import Verifier

__all__ = [
    "ALG",
    "ARGS",
    "FORMS",
    "NAMES",
    "REASONS",
    "TYP",
    "AlarmArgs",
    "Command",
    "CommandName",
    "Entry",
    "Form",
    "NoArgs",
    "Reason",
    "Rejected",
    "ReplayCache",
    "UnlockArgs",
    "Verifier",
    "command_topic",
    "key_id",
    "load_public_keys",
    "result_topic",
    "sign",
    "sign_legacy",
]
