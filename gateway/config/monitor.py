"""Config of the monitoring endpoint (``gateway.ops.monitor``): ``/health`` and ``/metrics``.

Contract:
- Off unless configured. It listens on loopback by default; any other address needs
  ``allow_remote: true`` (RELIABILITY.md S6), like the alarm API.
- No token: health and metrics carry counts and device ids, never secrets or personal data.
- Connection cap and timeouts as for the alarm API (``ListenerLimits``).
"""

from typing import Self

from pydantic import Field, model_validator

from gateway.config.api import ListenerLimits, is_loopback, local_url


class MonitorConfig(ListenerLimits):
    """Health and Prometheus metrics for installers and the property's monitoring."""

    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address to listen on; loopback unless allow_remote is true",
    )
    port: int = Field(9181, ge=1, le=65535, description="TCP port to listen on")
    allow_remote: bool = Field(
        False,
        description="Allow a non-loopback listen address, e.g. for a Prometheus server on the"
        " building VLAN; the endpoints have no authentication",
    )

    @model_validator(mode="after")
    def _loopback_only(self) -> Self:
        if not self.allow_remote and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is not a loopback address; the monitor listens on"
                " loopback only unless 'allow_remote: true' is set"
            )
        return self

    @property
    def url(self) -> str:
        """Base URL a local client uses."""
        return local_url(self.host, self.port)
