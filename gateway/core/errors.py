"""The gateway's error taxonomy: one root, then the classes that decide what happens next.

- ``ConfigError``: fatal at start (or a rejected reload); the message names the key.
- ``TransientError``: a device or an upstream is unavailable; the supervisor retries with backoff.
- ``PermanentError``: a point or a record can never succeed; disable or dead-letter it.
- ``StoreError``: the local buffer failed in a way that makes acknowledging sources unsafe;
  the daemon exits non-zero and systemd restarts it.

Third-party exceptions are translated at the driver/sink boundary with ``raise ... from exc``.
"""


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration is invalid; ``errors`` lists every problem as ``path: reason``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class TransientError(GatewayError):
    """Worth retrying later: a peer is unreachable, busy or timed out."""


class PermanentError(GatewayError):
    """Retrying will not help: a misconfigured point, a record the upstream rejects."""


class StoreError(GatewayError):
    """The local store cannot guarantee durability any more (I/O error, disk gone)."""
