"""How ``cgw`` verbs talk to the gateway on this machine: its local API, found in the config.

Contract:
- ``load`` reads the config a verb names (``config_option``: its ``-c``); on an error it prints
  every problem and returns None (the verb exits 2). ``person`` checks a ``--by`` name as the
  API does.
- ``token`` reads the ``api`` section's token; None (printed why) if there is no ``api``
  section or the token file is unfit. The token is never printed.
- ``call`` makes one request with the bearer token, bypassing any proxy (the token must not
  leave this machine), and returns the JSON answer. Failures raise ``Failed`` with a message
  for the operator: the gateway's own ``error`` on a refusal, ``NotRunning`` when nothing
  listens at the API's address (the daemon is not running), a plain ``Failed`` for a timeout,
  a reset or an answer that is not JSON.
"""

import argparse
import errno
import http.client
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from gateway.config import Config, load_config
from gateway.config.api import ApiConfig, local_url
from gateway.core.errors import ConfigError

# the config the verbs read unless -c names one: $CGW_CONFIG, else the installed box's
DEFAULT_CONFIG = Path(os.environ.get("CGW_CONFIG") or "/etc/cgw/gateway.yaml")
TIMEOUT = 5.0  # seconds per request


class Failed(Exception):
    """The request did not succeed; the message says why, for the operator. ``status`` is the
    HTTP status of a refusal, None when there was no answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotRunning(Failed):
    """Nothing listens at the API's address: the gateway is not running."""


def config_option() -> argparse.ArgumentParser:
    """A parent parser with the ``-c/--config`` option every verb of the local API takes."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c", "--config", type=Path, default=DEFAULT_CONFIG, help=f"default {DEFAULT_CONFIG}"
    )
    return common


def person(text: str) -> str:
    """An argparse type: who does it (``--by``), 1 to 64 printable characters."""
    if not 1 <= len(text.strip()) <= 64 or not text.isprintable():
        raise argparse.ArgumentTypeError("a name of 1 to 64 printable characters")
    return text.strip()


def load(path: Path) -> Config | None:
    """The config at ``path``, or None after printing every problem."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{path}: {len(exc.errors)} error(s) in the configuration:", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return None


def token(path: Path, cfg: Config) -> str | None:
    """The API token of ``cfg``, or None after printing why there is none."""
    if cfg.api is None:
        no_api(path)
        return None
    try:
        return cfg.api.read_token()
    except ConfigError as exc:
        print("\n".join(exc.errors), file=sys.stderr)
        return None


def no_api(path: Path) -> None:
    """Say that the config at ``path`` has no ``api`` section, and how to add one."""
    print(
        f"{path} has no 'api' section, so the gateway runs no local API."
        " Enable it with:\n  api:\n    token_file: <file holding the token, mode 0600>",
        file=sys.stderr,
    )


def base_url(api: ApiConfig) -> str:
    """Where the API of ``api`` answers on this machine."""
    return local_url(api.host, api.port)


def call(
    api: ApiConfig,
    secret: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    timeout: float = TIMEOUT,
) -> Any:
    """One request to the local API; its JSON answer (see the module docstring)."""
    url = base_url(api) + path
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        with exc:
            reason = _error_text(exc.read()) or exc.reason
        raise Failed(f"the gateway refused: {reason} (HTTP {exc.code})", exc.code) from None
    except urllib.error.URLError as exc:
        refused = isinstance(exc.reason, OSError) and exc.reason.errno == errno.ECONNREFUSED
        raise (NotRunning if refused else Failed)(
            f"cannot reach the gateway's local API at {url}: {exc.reason} (is the gateway running?)"
        ) from None
    except (OSError, http.client.HTTPException, ValueError) as exc:  # timeout, reset, bad JSON
        raise Failed(f"no valid answer from the gateway's local API at {url}: {exc}") from None


def _error_text(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return ""
    return str(data.get("error", "")) if isinstance(data, dict) else ""
