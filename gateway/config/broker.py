"""How to reach an MQTT broker (upstream or local): address, TLS, credentials, reconnects.

``reconnect_max`` caps the pause between two connect attempts, so it bounds how long an
alarm raised during an outage waits once the broker is back (one pause, plus the connect).
The default keeps that under the 5 s the alarm path promises, for both brokers; an attempt
against a broker that is down costs one refused TCP connect.
"""

import ssl
from typing import Self

from pydantic import Field, FilePath, model_validator

from gateway.config.base import Model, SecretFile

RECONNECT_MAX = 2.0  # seconds: the longest pause between connect attempts, by default


class TlsConfig(Model):
    """TLS towards a broker. Verification of its certificate and host name is always on."""

    ca_file: FilePath = Field(description="CA bundle that signed the broker's certificate")
    cert_file: FilePath | None = Field(None, description="Client certificate (mutual TLS)")
    key_file: SecretFile | None = Field(None, description="Client private key (mode 0600)")

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self

    def client_context(self) -> ssl.SSLContext:
        """Verification always on, TLS 1.2 at least; mutual TLS when a client cert is given."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None and self.key_file is not None:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx


class BrokerConfig(Model):
    """Port, TLS, credentials and reconnects, shared by the upstream and the local broker."""

    port: int | None = Field(None, ge=1, le=65535, description="Default 1883, or 8883 with TLS")
    tls: TlsConfig | None = Field(None, description="TLS settings; omit for plain TCP")
    username: str | None = Field(None, min_length=1, description="User name")
    password_file: SecretFile | None = Field(None, description="File holding the password")
    reconnect_max: float = Field(
        RECONNECT_MAX,
        ge=1,
        le=3600,
        description="Longest reconnect pause (s); an alarm raised while the broker is away "
        "goes out at most this long (plus the connect) after it is back",
    )

    @model_validator(mode="after")
    def _auth(self) -> Self:
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs a username")
        return self

    @property
    def effective_port(self) -> int:
        """The port to connect to."""
        if self.port is not None:
            return self.port
        return 8883 if self.tls is not None else 1883
