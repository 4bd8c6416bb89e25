"""A real gateway daemon with its local alarm API and monitor, for faults 8 and 9.

One MQTT call button in the lobby (the local and upstream broker coincide), the API with
a bearer token, the monitor; ``LimitedDaemon`` runs it under a file descriptor limit as
the systemd unit's ``LimitNOFILE`` does.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt

from tests.e2e.test_alarms import config as button_gateway
from tests.support.daemon import REPO, Daemon
from tests.support.ports import free_ports

TOKEN = "5a1ad0c5" * 4
PREFIX = "cgw/s1/gw1"


def config(tmp_path: Path, broker_port: int, **limits: Any) -> dict[str, Any]:
    """The daemon's config; ``limits`` go into both the api and the monitor section."""
    token_file = tmp_path / "api.token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    os.chmod(token_file, 0o600)
    api, monitor = free_ports(2)
    return {
        **button_gateway(tmp_path / "gw.db", broker_port),
        "api": {"port": api, "token_file": str(token_file), **limits},
        "monitor": {"port": monitor, **limits},
    }


class LimitedDaemon(Daemon):
    """``cgw run`` with soft and hard ``RLIMIT_NOFILE`` set to ``nofile`` in the child."""

    def __init__(self, config: Path, log_path: Path, nofile: int) -> None:
        super().__init__(config, log_path)
        self.nofile = nofile

    def start(self) -> None:
        limit = (self.nofile, self.nofile)
        argv = [sys.executable, "-m", "gateway", "run", "-c", str(self.config)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*argv, "--log-format", "json"],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                cwd=REPO,
                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limit),
            )


async def press(port: int, event_id: str) -> None:
    """The lobby button's vendor message for one press."""
    async with aiomqtt.Client("127.0.0.1", port, identifier="vendor-button") as client:
        payload = {"id": event_id, "evt": "sos", "state": "pressed"}
        await client.publish("lobby/sos", json.dumps(payload).encode(), qos=1)


async def call(
    session: aiohttp.ClientSession, method: str, url: str, token: str | None = TOKEN
) -> tuple[int, Any]:
    """Status and JSON body of one request to the daemon."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    kwargs: dict[str, Any] = {"json": {"by": "guard-li"}} if method == "POST" else {}
    async with session.request(method, url, headers=headers, **kwargs) as resp:
        return resp.status, await resp.json()
