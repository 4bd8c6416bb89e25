"""Config of the local alarm API (``gateway.ops.api``): where it listens and its bearer token.

Contract:
- The API listens on loopback by default. Any other address (a LAN address, ``0.0.0.0``,
  ``::``, a host name other than ``localhost``) is refused unless ``allow_remote: true`` is
  set explicitly (RELIABILITY.md S6: minimal surface).
- The token lives in ``token_file`` (mode 0600, never inline): at least 16 printable ASCII
  characters without spaces, so it survives an HTTP header unchanged. Loading the config
  checks it (so ``cgw check-config`` catches a bad one) and ``read_token`` checks it again
  when the token is used. Errors name the file, never the token (S12).
- ``ListenerLimits`` (shared with the monitor) bounds what idle or slow clients can hold:
  a connection cap (by default sized from the file descriptor budget, see
  ``gateway.transport.listener``), a header-read timeout and an idle keep-alive timeout.
"""

import ipaddress
from pathlib import Path
from typing import Self

from pydantic import Field, field_validator, model_validator

from gateway.config.base import Model, SecretFile, read_secret
from gateway.core.errors import ConfigError

MIN_TOKEN = 16  # characters; e.g. `openssl rand -hex 32` gives 64


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: where it resolves to is not known here


_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def local_url(host: str, port: int) -> str:
    """Where a server listening on ``host:port`` answers a client on this machine."""
    host = _WILDCARDS.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ListenerLimits(Model):
    """What one HTTP listener lets clients hold (RELIABILITY.md, fault 9)."""

    max_connections: int | None = Field(
        None,
        ge=1,
        le=65536,
        description="Connections open at once; at the cap the oldest idle one is closed."
        " Default: what the file descriptor limit leaves after the store and brokers",
    )
    header_timeout: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Seconds a new connection has to send complete request headers",
    )
    idle_timeout: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Seconds an idle keep-alive connection stays open between requests",
    )


class ApiConfig(ListenerLimits):
    """The local alarm API used by the staff console and ``cgw alarms``."""

    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address to listen on; loopback unless allow_remote is true",
    )
    port: int = Field(8181, ge=1, le=65535, description="TCP port to listen on")
    token_file: SecretFile = Field(
        description="File holding the bearer token (mode 0600; at least 16 printable ASCII"
        " characters, no spaces); read once at start"
    )
    allow_remote: bool = Field(
        False,
        description="Allow a non-loopback listen address. The token then crosses the network"
        " in clear text: use only on a trusted building VLAN",
    )

    @model_validator(mode="after")
    def _loopback_only(self) -> Self:
        if not self.allow_remote and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is not a loopback address; the alarm API listens on"
                " loopback only unless 'allow_remote: true' is set"
            )
        return self

    @field_validator("token_file")
    @classmethod
    def _token_fits(cls, path: Path) -> Path:
        problem = token_problem(path)
        if problem:
            raise ValueError(problem)
        return path

    def read_token(self) -> str:
        """The bearer token, read now; raises ``ConfigError`` if unreadable or unfit.

        The file was checked when the config was loaded; it is checked again here since it
        may have changed since. Never log the result.
        """
        problem = token_problem(self.token_file)
        if problem:
            raise ConfigError([f"api.token_file: {problem}"])
        return read_secret(self.token_file)


def token_problem(path: Path) -> str:
    """Why the token in ``path`` is unusable, or ``""``; never quotes the token."""
    try:
        token = read_secret(path)
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot read {path}: {exc.strerror if isinstance(exc, OSError) else 'not UTF-8'}"
    if len(token) < MIN_TOKEN:
        return (
            f"the token in {path} has {len(token)} characters; at least {MIN_TOKEN} are needed"
            " (e.g. openssl rand -hex 32)"
        )
    if not (token.isascii() and token.isprintable()) or " " in token:
        return f"the token in {path} must be printable ASCII without spaces"
    return ""
