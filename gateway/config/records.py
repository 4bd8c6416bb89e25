"""Config of terminal records: what data-collection terminals may post, field by field, classed.

A data-collection terminal (a kiosk in the service hall, a staff phone app) posts *records*:
service requests (repair, an elderly-care visit, a complaint) and resident-information updates.
Each record kind is declared under ``records.kinds`` with every field it may carry, and every
field has a class (``docs/privacy.md``, "Data classification"):

- ``public``: may be shown anywhere (a category, a building);
- ``internal``: the property company's own (a flat number, a free-text note): sent upstream in
  clear, never shown to the public;
- ``personal``: identifies a person (a resident id): pseudonymised at the pipeline boundary
  with the site's privacy key, as door events are;
- ``sensitive``: health, ID-card and phone numbers, addresses: sealed at the boundary to the
  platform's public key (X25519 + ChaCha20-Poly1305), so neither the gateway nor anyone who
  takes its SD card can read it back.

A field not declared is refused (a terminal cannot smuggle data through); a kind has its
retention (rows past it are purged, delivered or not). ``urgent``, if set, names a ``bool``
field: a record with it true is also a pulse of the terminal's contact input named after the
kind, which an ordinary latched contact rule turns into an alarm.
"""

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from gateway.config.base import Model, Name
from gateway.config.doors import Duration

FieldClass = Literal["public", "internal", "personal", "sensitive"]
MAX_TEXT = 2000  # characters of one text value


class RecordFieldConfig(Model):
    """One field a record kind may carry."""

    name: Name = Field(description="Field name, as the terminal posts it")
    data_class: FieldClass = Field(
        alias="class",
        description="public, internal, personal (pseudonymised) or sensitive (sealed to the"
        " platform's key)",
    )
    type: Literal["string", "number", "bool"] = Field("string", description="JSON type")
    required: bool = Field(False, description="A record without it is refused")
    max_length: int = Field(256, ge=1, le=MAX_TEXT, description="Characters of a string")


class RecordKindConfig(Model):
    """One kind of record, with every field it may carry."""

    id: Name = Field(description="Kind id; the upstream topic is record/<id>")
    description: str = Field("", max_length=200, description="Free text")
    fields: list[RecordFieldConfig] = Field(min_length=1, max_length=64, description="Fields")
    retention: Duration = Field(
        180 * 86400, ge=3600, le=3 * 366 * 86400, description="Kept at most, e.g. '180d'"
    )
    urgent: Name | None = Field(
        None, description="A bool field; true raises the terminal's contact input <kind id>"
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        names = [f.name for f in self.fields]
        dup = next((n for k, n in enumerate(names) if n in names[:k]), None)
        if dup is not None:
            raise ValueError(f"fields: {dup!r} is declared twice")
        if self.urgent is not None:
            found = next((f for f in self.fields if f.name == self.urgent), None)
            if found is None or found.type != "bool" or found.data_class == "sensitive":
                raise ValueError(f"urgent: {self.urgent!r} must be a bool field, not sensitive")
        return self


class RecordsConfig(Model):
    """Record kinds terminals may post, and the key sensitive fields are sealed to."""

    public_key_file: Path | None = Field(
        None,
        description="The platform's X25519 public key for sensitive fields (PEM, or 32 bytes"
        " as base64 or hex); needed when any field is sensitive",
    )
    kinds: list[RecordKindConfig] = Field(min_length=1, max_length=64, description="Kinds")

    @model_validator(mode="after")
    def _check(self) -> Self:
        ids = [k.id for k in self.kinds]
        dup = next((n for k, n in enumerate(ids) if n in ids[:k]), None)
        if dup is not None:
            raise ValueError(f"kinds: {dup!r} is declared twice")
        sensitive = any(f.data_class == "sensitive" for k in self.kinds for f in k.fields)
        if sensitive and self.public_key_file is None:
            raise ValueError("public_key_file: sensitive fields need the platform's public key")
        return self

    @field_validator("public_key_file")
    @classmethod
    def _readable(cls, path: Path | None) -> Path | None:
        if path is not None:
            from gateway.config.sealing_key import load_public_key  # cryptography: lazily

            load_public_key(path)
        return path

    def kind(self, kind_id: str) -> RecordKindConfig | None:
        """The kind named ``kind_id``, if declared."""
        return next((k for k in self.kinds if k.id == kind_id), None)
