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

Import from the modules (``gateway.commands.verify``, ``.replay``, ``.signing``, ``.model``):
this package's ``__init__`` imports nothing, so a gateway without a command channel never
loads ``cryptography`` and PyJWT (8 MiB of RSS) just to run its dispatcher.
"""
