"""Config of the field console (``gateway.console``): where it listens, who may sign in.

Contract:
- The console listens on loopback by default. A LAN address (or ``0.0.0.0``, ``::``) is
  refused unless ``allow_remote: true`` is set, and then only with ``tls_cert`` and
  ``tls_key`` (passwords and session cookies never cross the community LAN in clear);
  ``install.sh --console ADDR`` issues a pair from the site CA and prints its fingerprint.
- ``users_file`` holds the accounts (``cgw users add ...``); the daemon re-reads it when it
  changes, so a removed account or a new password ends that person's sessions at once.
- ``language``: ``auto`` follows each browser's Accept-Language among the catalogue's
  languages (``zh-CN``, ``en``), else the one named.
- ``public_url``: how staff reach the console from their phones (e.g.
  ``https://192.168.10.2:8088``). When set, staff messages link to the alarm there instead
  of naming a shell command.
"""

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator

from gateway.config.api import ListenerLimits, is_loopback
from gateway.config.base import SecretFile

DEFAULT_USERS_FILE = Path("/var/lib/cgw/users.yaml")


class ConsoleConfig(ListenerLimits):
    """The guard-room and installer web console."""

    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address to listen on; loopback unless allow_remote is true",
    )
    port: int = Field(8088, ge=1, le=65535, description="TCP port to listen on")
    allow_remote: bool = Field(
        False,
        description="Allow a non-loopback listen address (the community LAN); needs tls_cert"
        " and tls_key",
    )
    tls_cert: Path | None = Field(None, description="PEM certificate chain served over HTTPS")
    tls_key: SecretFile | None = Field(
        None, description="PEM private key of tls_cert; not readable by group or others"
    )
    users_file: Path = Field(
        DEFAULT_USERS_FILE,
        description="Accounts file managed by 'cgw users add|passwd|remove'",
    )
    language: Literal["auto", "zh-CN", "en"] = Field(
        "auto", description="Console language; auto follows the browser"
    )
    session_idle: float = Field(
        900.0, ge=60, le=86400, description="Seconds without a request before a sign-in ends"
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="The console's address as staff phones reach it; staff messages link"
        " to it when set",
    )

    @model_validator(mode="after")
    def _safe_listener(self) -> Self:
        if not self.allow_remote and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is not a loopback address; the console listens on"
                " loopback only unless 'allow_remote: true' is set (with tls_cert and tls_key)"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        if self.allow_remote and self.tls_cert is None:
            raise ValueError(
                "a console beyond loopback needs tls_cert and tls_key: passwords and session"
                " cookies must not cross the LAN in clear (install.sh makes a pair)"
            )
        for key, path in (("tls_cert", self.tls_cert), ("tls_key", self.tls_key)):
            if path is not None and not path.is_file():
                raise ValueError(f"{key}: {path} is not a readable file")
        return self

    @property
    def tls(self) -> bool:
        """Whether the console serves HTTPS."""
        return self.tls_cert is not None

    @property
    def url(self) -> str:
        """Where a browser on this machine reaches the console."""
        scheme = "https" if self.tls else "http"
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{host}:{self.port}"
