"""Shared building blocks of the config models: strictness, names, secret files, topic
filters, and the merge of a profile's points into a device's."""

import os
import stat
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, FilePath


class Model(BaseModel):
    """Every config model: unknown keys are errors, the model is immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Name = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        description="Identifier: letters, digits, '_', '.', '-'; used in MQTT topics",
    ),
]

# Every device kind's ``supplier``: free text, no control characters (it is printed in tables)
Supplier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]
SUPPLIER = "Who supplies and maintains the device (free text); the availability report groups by it"


def _is_credential(path: Path) -> bool:
    """A systemd credential: its manager, not the mode bits, keeps it private (0440 + ACL)."""
    folders = [os.environ.get("CREDENTIALS_DIRECTORY", ""), "/run/credentials"]
    resolved = path.resolve()
    return any(folder and resolved.is_relative_to(Path(folder).resolve()) for folder in folders)


def private_file(path: Path) -> Path:
    """``path`` itself if only its owner may read it (or it is a systemd credential).

    Raises:
        ValueError: readable by group or others; the message names the file and the fix.
        OSError: it cannot be looked at.
    """
    if _is_credential(path):
        return path
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(
            f"secret file {path} is readable by group or others (mode {stat.S_IMODE(mode):o});"
            f" run: chmod 600 {path}"
        )
    return path


SecretFile = Annotated[
    FilePath,
    AfterValidator(private_file),
    Field(description="A file holding a secret; must not be readable by group or others"),
]


def read_secret(path: Path) -> str:
    """The secret in ``path`` without its trailing newline. Never log the result."""
    return path.read_text(encoding="utf-8").rstrip("\r\n")


def check_topic_text(topic: str) -> str:
    """No control characters and no surrounding blanks in a topic; raises ``ValueError``.

    MQTT allows them (3.1.1 §1.5.3 forbids only U+0000), but a topic is also written into the
    local broker's ACL file, one per line: a newline there would add a rule of its own.
    """
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in topic) or topic != topic.strip():
        raise ValueError(f"{topic!r}: no control characters or surrounding blanks in a topic")
    return topic


def check_filter(topic: str) -> str:
    """A ``+``-only topic filter (MQTT 3.1.1 §4.7); raises ``ValueError``.

    '+' fills a whole level; '$' topics are the broker's own (§4.7.2); '#' would subscribe to
    everything below, so the levels are named instead.
    """
    check_topic_text(topic)
    if "#" in topic or "\0" in topic:
        raise ValueError(f"{topic!r}: '#' and NUL are not allowed; use '+' per level")
    if topic.startswith("$"):
        raise ValueError(f"{topic!r}: '$' topics belong to the broker")
    if any("+" in level and level != "+" for level in topic.split("/")):
        raise ValueError(f"{topic!r}: '+' must fill a whole topic level")
    return topic


def merge_points(base: list[dict[str, Any]], overrides: list[Any]) -> list[Any]:
    """A profile's points, each overridden by the device's point of the same name; new ones
    added at the end (Modbus and mqtt_json profiles merge alike)."""
    merged: list[Any] = [dict(p) for p in base]
    index = {p.get("name"): i for i, p in enumerate(merged)}
    for item in overrides:
        name = item.get("name") if isinstance(item, dict) else None
        if name in index:
            merged[index[name]] = {**merged[index[name]], **item}
        else:
            merged.append(item)
    return merged
