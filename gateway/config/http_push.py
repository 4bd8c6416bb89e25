"""Config of HTTP push devices (``kind: http_push``) and of the listener they post to.

Many door terminals (face/QR, common with Chinese brands) and data-collection terminals push
by HTTP POST instead of publishing on a broker. An *http_push entry* is one URL on the
gateway's push listener (``http_push:`` section): ``POST /push/<id>``, or with
``device_from_path`` ``POST /push/<id>/<device>`` (a door terminal's heartbeat: ``.../heartbeat``
after either). What the body carries is mapped exactly as the broker kinds map it:

- ``readings:`` the fields of an ``mqtt_json`` entry but its topics (``gateway.config.mqtt_json``:
  JMESPath points, records, device ids, device time, a profile from ``profiles/mqtt/``);
- ``door:`` the fields of a ``door_terminal`` but its topics (``gateway.config.doors``: the
  doors, a mapping profile from ``profiles/doors/`` or an inline one; the person id is
  pseudonymised at the boundary as for MQTT).

``as_json()`` / ``as_terminal()`` give that entry as the broker kind's config, on a topic of
its own (``push/<id>``, never subscribed), so the drivers, the checks and the pipeline treat it
as they treat the broker kind's. Per entry: ``auth`` (a token in a header or the query, or an
HMAC of the body), the body's encoding (JSON, or a form, whose ``form_field`` may hold JSON),
``max_body``, ``rate_limit``, and ``reply``: the status and body the vendor expects once the
message is committed to the store.

Contract of the listener section: loopback by default; a LAN address needs
``allow_remote: true`` (terminals sit on the LAN); TLS is optional (``tls_cert`` and
``tls_key`` together), since many terminals cannot speak it: the per-entry secrets are then
the only protection, so an HMAC is preferred to a token where the vendor offers it.
"""

import re
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, ValidationError, model_validator

from gateway.config.api import ListenerLimits, is_loopback, token_problem
from gateway.config.base import SUPPLIER, Model, Name, SecretFile, Supplier
from gateway.config.doors import DoorConfig, DoorPayloadMapConfig, DoorTerminalConfig, Duration
from gateway.config.mqtt_devices import RateLimitConfig
from gateway.config.mqtt_json import JsonMapConfig, JsonPointConfig, MqttJsonDeviceConfig

HEADER = re.compile(r"^[A-Za-z0-9-]{1,64}$")
PUSH_PREFIX = "push"  # the topic level of push entries: never a broker topic


def _header(value: str | None, key: str) -> None:
    if value is not None and HEADER.fullmatch(value) is None:
        raise ValueError(f"{key} {value[:64]!r} is no HTTP header name (letters, digits, '-')")


class PushListenerConfig(ListenerLimits):
    """The listener HTTP push devices post to."""

    host: str = Field(
        "127.0.0.1", min_length=1, description="Address to listen on; loopback unless"
        " allow_remote is true (terminals on the LAN need the LAN address)",
    )  # fmt: skip
    port: int = Field(8090, ge=1, le=65535, description="TCP port to listen on")
    allow_remote: bool = Field(False, description="Allow a non-loopback listen address")
    tls_cert: Path | None = Field(None, description="PEM certificate chain (HTTPS), optional")
    tls_key: SecretFile | None = Field(None, description="PEM private key of tls_cert")

    @model_validator(mode="after")
    def _safe(self) -> Self:
        if not self.allow_remote and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is not a loopback address; set 'allow_remote: true' for"
                " terminals on the LAN"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        if self.tls_cert is not None and not self.tls_cert.is_file():
            raise ValueError(f"tls_cert: {self.tls_cert} is not a readable file")
        return self


class PushAuthConfig(Model):
    """How a push is proven to come from the device: a shared token, or an HMAC of the body."""

    token_file: SecretFile | None = Field(
        None, description="File holding the device's token (16+ printable ASCII characters)"
    )
    token_header: str | None = Field(
        None, description="Header carrying the token (default X-Auth-Token unless token_query)"
    )
    token_query: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Query parameter carrying it"
    )
    hmac_file: SecretFile | None = Field(
        None, description="File holding the HMAC key (16+ printable ASCII characters)"
    )
    hmac_header: str = Field("X-Signature", description="Header carrying the body's HMAC")
    hmac_algorithm: Literal["sha256", "sha1"] = Field("sha256", description="HMAC hash")
    hmac_prefix: str = Field(
        "", max_length=16, description="Text before the hex digest in the header, e.g. 'sha256='"
    )

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.token_file is None) == (self.hmac_file is None):
            raise ValueError("give exactly one of token_file or hmac_file")
        if self.token_header is not None and self.token_query is not None:
            raise ValueError("the token comes in token_header or token_query, not both")
        _header(self.token_header, "token_header")
        _header(self.hmac_header, "hmac_header")
        for key in ("token_file", "hmac_file"):
            path = getattr(self, key)
            problem = "" if path is None else token_problem(path)
            if problem:
                raise ValueError(f"{key}: {problem}")
        return self

    @property
    def header(self) -> str | None:
        """The header the token is read from (None: from the query)."""
        if self.token_query is not None:
            return None
        return self.token_header or "X-Auth-Token"


class PushReplyConfig(Model):
    """What the device is answered: its vendor's success shape, and a refusal."""

    status: int = Field(200, ge=200, le=299, description="Status once the message is kept")
    content_type: str = Field("application/json", max_length=100, description="Of both bodies")
    body: str = Field('{"code":0,"msg":"ok"}', max_length=1024, description="Success body")
    refused_body: str = Field(
        '{"code":1,"msg":"{reason}"}',
        max_length=1024,
        description="Body of a refusal (4xx, 503); '{reason}' stands for the reason code",
    )


class PushReadingsConfig(Model):
    """Readings in the body: an mqtt_json entry's mapping (see ``MqttJsonDeviceConfig``)."""

    devices: list[Name] = Field(
        default_factory=list, max_length=10_000, description="Device ids the path or payload"
        " may name; others are refused (unknown_device)",
    )  # fmt: skip
    device_from_path: bool = Field(False, description="The device id is the URL's last level")
    profile: Name | None = Field(None, description="mqtt_json profile (profiles/mqtt/<name>)")
    payload: JsonMapConfig = Field(default_factory=JsonMapConfig, description="The mapping")
    points: list[JsonPointConfig] = Field(min_length=1, description="Points")
    interval: float = Field(60.0, ge=0.1, le=86400, description="Seconds between posts, expected")
    offline_after: int = Field(3, ge=1, le=1000, description="Intervals without data: offline")


class PushDoorConfig(Model):
    """Door events in the body: a door_terminal's mapping (see ``DoorTerminalConfig``)."""

    doors: list[DoorConfig] = Field(min_length=1, max_length=256, description="The doors")
    device_from_path: bool = Field(False, description="The terminal id is the URL's last level")
    profile: Name | None = Field(None, description="Named mapping (profiles/doors/<name>.yaml)")
    payload: DoorPayloadMapConfig | None = Field(None, description="Inline payload mapping")
    heartbeat_timeout: float = Field(90.0, ge=5, le=86400, description="Offline after (s)")
    dedup_window: float = Field(3600.0, gt=0, le=7 * 86400, description="Id memory (s)")
    dedup_size: int = Field(10000, ge=1, le=100_000, description="Event ids remembered at most")
    skew_limit: float = Field(30.0, gt=0, le=86400, description="Clock skew flagged above (s)")
    retention: Duration = Field(
        30 * 86400, ge=3600, le=366 * 86400, description="Personal events kept at most"
    )


class HttpPushDeviceConfig(Model):
    """A device, or a fleet of alike devices, that posts to the gateway over HTTP."""

    kind: Literal["http_push"] = Field(description="Device type: posts JSON or forms by HTTP")
    id: Name = Field(description="Entry id: the URL is /push/<id>; also the device id unless"
                     " device_from_path or payload.device")  # fmt: skip
    supplier: Supplier | None = Field(None, description=SUPPLIER)
    auth: PushAuthConfig = Field(description="How each post is authenticated")
    body: Literal["json", "form"] = Field("json", description="Body encoding")
    form_field: str | None = Field(
        None, max_length=64, description="With body: form, the field holding a JSON document;"
        " none: the form's fields are the document (numbers read as numbers)",
    )  # fmt: skip
    max_body: int = Field(65536, ge=64, le=1048576, description="Larger bodies refused (bytes)")
    rate_limit: RateLimitConfig = Field(
        default_factory=lambda: RateLimitConfig(rate=5.0, burst=20),
        description="Per device: posts beyond it are refused (429 rate_limited), but never a"
        " door event that changes what a door did last",
    )
    reply: PushReplyConfig = Field(default_factory=PushReplyConfig, description="Answers")
    readings: PushReadingsConfig | None = Field(None, description="The body carries readings")
    door: PushDoorConfig | None = Field(None, description="The body carries door events")
    records: list[Name] | None = Field(
        None, min_length=1, description="The body carries a record of one of these kinds"
        " (``records.kinds``; docs/records.md)",
    )  # fmt: skip
    description: str = Field("", max_length=200, description="Free text, e.g. the location")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if [self.readings, self.door, self.records].count(None) != 2:
            raise ValueError("give exactly one of readings, door or records")
        if self.form_field is not None and self.body != "form":
            raise ValueError("form_field needs body: form")
        try:
            if self.readings is not None:
                self.as_json()
            elif self.door is not None:
                self.as_terminal()
        except ValidationError as exc:  # the derived config's own checks, by the entry's key
            first = exc.errors(include_url=False)[0]
            key = "readings" if self.readings is not None else "door"
            loc = ".".join(map(str, (key, *first["loc"])))
            why = first["msg"].removeprefix("Value error, ").replace("_topic", "_path")
            raise ValueError(f"{loc}: {why}") from None
        return self

    @property
    def topic(self) -> str:
        """The entry's own topic level (``push/<id>``): what the mapping sees, never a broker's."""
        return f"{PUSH_PREFIX}/{self.id}"

    def as_json(self) -> MqttJsonDeviceConfig:
        """The readings entry as the mqtt_json config its mapping is (raises if ``door``)."""
        r = self.readings
        assert r is not None
        named = r.device_from_path
        return MqttJsonDeviceConfig(
            kind="mqtt_json",
            id=self.id,
            supplier=self.supplier,
            topic=self.topic + ("/+" if named else ""),
            device_from_topic=2 if named else None,
            devices=r.devices,
            payload=r.payload,
            points=r.points,
            interval=r.interval,
            offline_after=r.offline_after,
            max_payload=min(self.max_body, 262144),
            description=self.description,
        )

    def as_terminal(self) -> DoorTerminalConfig:
        """The door entry as the door_terminal config its mapping is (raises if ``readings``)."""
        d = self.door
        assert d is not None
        named = d.device_from_path
        base = self.topic + ("/+" if named else "")
        return DoorTerminalConfig(
            kind="door_terminal",
            id=self.id,
            topic=base,
            heartbeat_topic=base + "/heartbeat",
            device_from_topic=2 if named else None,
            doors=d.doors,
            profile=d.profile,
            payload=d.payload,
            heartbeat_timeout=d.heartbeat_timeout,
            max_payload=max(256, self.max_body),
            rate_limit=self.rate_limit,
            dedup_window=d.dedup_window,
            dedup_size=d.dedup_size,
            skew_limit=d.skew_limit,
            retention=d.retention,
            supplier=self.supplier,
            description=self.description,
        )

    @property
    def device_ids(self) -> list[str]:
        """The devices (or terminals) this entry stands for."""
        if self.readings is not None:
            return self.as_json().device_ids
        if self.door is not None:
            return self.as_terminal().terminals
        return [self.id]  # a data-collection terminal

    @property
    def interval(self) -> float | None:
        """Seconds between a device's posts, expected (readings only)."""
        return None if self.readings is None else self.readings.interval
