"""Config of the platform's command channel (``cmd/<name>``, see docs/commands.md).

Off unless configured: without a ``commands`` section the gateway does not subscribe to
``cmd/+`` at all. The platform's Ed25519 public keys come from files (PEM); several keys are
accepted at once during a key rotation. Commands arrive as JWS; ``accept_legacy`` keeps the
legacy JSON envelope working for one release, so a platform can switch without a flag day.
"""

from pathlib import Path

from pydantic import Field, FilePath, field_validator

from gateway.config.base import Model
from gateway.core.errors import ConfigError


class CommandsConfig(Model):
    """Signed commands from the central platform."""

    public_keys: list[FilePath] = Field(
        min_length=1,
        max_length=8,
        description="PEM files of the platform's Ed25519 public keys (old and new during a"
        " rotation); e.g. /run/credentials/cgw.service/cgw_command-pubkey",
    )
    max_skew: int = Field(
        60, ge=0, le=600, description="Seconds the platform's and the gateway's clocks may differ"
    )
    max_lifetime: int = Field(
        60, ge=1, le=3600, description="Longest validity (exp - iat) a command may claim (s)"
    )
    require_synced_clock: bool = Field(
        True,
        description="Refuse commands while the gateway's clock is not NTP-synchronised: expiry"
        " cannot be judged with a wrong clock",
    )
    accept_legacy: bool = Field(
        True,
        description="Also accept commands in the legacy JSON envelope (sig over its RFC 8785"
        " form) besides JWS. On in this release for the transition; the option and the legacy"
        " form go away in the next (docs/commands.md, Transition)",
    )
    replay_cache: Path | None = Field(
        None, description="Replay cache file; default <store path>.commands.db"
    )
    audit_rate: int = Field(
        60,
        ge=1,
        le=3600,
        description="Rejections of unauthenticated messages audited per minute at most; more"
        " are counted only (a flood of forgeries must not fill the store)",
    )

    @field_validator("public_keys")
    @classmethod
    def _keys_load(cls, paths: list[Path]) -> list[Path]:
        from gateway.config.keys import load_public_keys  # cryptography: only if used

        try:
            load_public_keys(paths)
        except ConfigError as exc:
            raise ValueError("; ".join(exc.errors)) from None
        return paths
