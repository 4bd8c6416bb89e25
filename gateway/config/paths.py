"""Path-valued config keys: made absolute relative to the config file's folder.

A config and its secrets can then move together; ``load_config`` calls ``resolve_paths`` on
the raw document before validation, so every model sees absolute paths.
"""

from pathlib import Path
from typing import Any

_PATH_KEYS = {
    ("api", "token_file"),
    ("upstream", "influx", "token_file"),
    ("local_broker", "password_file"),
    ("local_broker", "tls", "ca_file"),
    ("local_broker", "tls", "cert_file"),
    ("local_broker", "tls", "key_file"),
    ("channels", "*", "url_file"),
    ("commands", "public_keys"),
    ("commands", "replay_cache"),
    ("console", "users_file"),
    ("privacy", "key_file"),
    ("privacy", "previous_key_file"),
    ("store", "path"),
    ("upstream", "mqtt", "password_file"),
    ("upstream", "mqtt", "tls", "ca_file"),
    ("upstream", "mqtt", "tls", "cert_file"),
    ("upstream", "mqtt", "tls", "key_file"),
}


def resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Make the path-valued keys absolute, relative to ``base``; ``*`` walks a list."""
    for keys in _PATH_KEYS:
        nodes: list[Any] = [raw]
        for key in keys[:-1]:
            if key == "*":
                nodes = [item for n in nodes if isinstance(n, list) for item in n]
            else:
                nodes = [n.get(key) for n in nodes if isinstance(n, dict)]
        for node in nodes:
            if not isinstance(node, dict):
                continue
            value = node.get(keys[-1])
            if isinstance(value, str):
                node[keys[-1]] = _absolute(value, base)
            elif isinstance(value, list):  # a list of paths (public keys)
                node[keys[-1]] = [_absolute(v, base) if isinstance(v, str) else v for v in value]


def _absolute(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)
