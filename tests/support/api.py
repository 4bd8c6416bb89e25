"""The local API on a real alarm engine and store, served on a free loopback port, with a
client session and a gateway config file pointing at it (for the ``cgw`` verbs)."""

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from gateway.alarms.engine import AlarmEngine
from gateway.config.alarms import AlarmsConfig
from gateway.config.api import ApiConfig
from gateway.core.clock import Clock, SystemClock
from gateway.core.errors import ConfigError
from gateway.core.messages import Lane
from gateway.ops.api import LocalApi
from gateway.ops.report_api import AvailabilitySource
from gateway.store.outbox import Store
from tests.support.ports import free_port

TOKEN = "c0ffee42" * 4
ALARMS: dict[str, Any] = {
    "rules": [{"kind": "contact", "id": "sos", "device": "btn-3f", "type": "emergency"}],
    "ladders": [{"id": "default", "renotify": 0, "tiers": [{"after": 0, "channels": ["log"]}]}],
}


def write_config(folder: Path, api: dict[str, Any] | None) -> Path:
    """A minimal gateway config file (JSON is YAML) with the given ``api`` section."""
    doc: dict[str, Any] = {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(folder / "unused.db")},
        "upstream": {"mqtt": {"host": "127.0.0.1"}},
    }
    if api is not None:
        doc["api"] = api
    path = folder / "gateway.yaml"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


@dataclass
class Harness:
    engine: AlarmEngine
    store: Store
    api: LocalApi
    session: aiohttp.ClientSession
    config: Path  # a gateway config whose api section points at this server

    async def call(
        self, method: str, path: str, token: str | None = TOKEN, **kwargs: Any
    ) -> tuple[int, Any, dict[str, str]]:
        """Status, JSON body and headers of one request (``token=None``: no Authorization)."""
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        async with self.session.request(method, path, headers=headers, **kwargs) as resp:
            return resp.status, await resp.json(), dict(resp.headers)

    async def message(self, **fields: Any) -> dict[str, Any]:
        """Wait for the engine to commit an alarm message with these fields; its body."""
        async with asyncio.timeout(5):
            while True:
                for row in await self.store.fetch("mqtt", 100, lanes=[Lane.ALARM]):
                    body: dict[str, Any] = dict(row.fields)
                    if fields.items() <= body.items():
                        return body
                await self.store.wait_for_rows("mqtt")


@asynccontextmanager
async def running(
    tmp_path: Path,
    clock: Clock | None = None,
    limits: dict[str, Any] | None = None,
    reports: Callable[[Store], AvailabilitySource] | None = None,
    **kw: Any,
) -> AsyncIterator[Harness]:
    """Engine on a store, the API on a free loopback port, a client session; all closed after.

    The store is ``tmp_path/b.db``. ``limits`` go into the api config section, ``kw`` to
    ``LocalApi``; ``reports(store)`` is its availability source, if given.
    """
    token_file = tmp_path / "api.token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    os.chmod(token_file, 0o600)
    store = await Store.open(tmp_path / "b.db", quota=4 * 1024**2, reserve=1024**2, sinks=["mqtt"])
    if reports is not None:
        kw["reports"] = reports(store)
    engine = AlarmEngine(
        AlarmsConfig.model_validate(ALARMS), store, SystemClock(), lambda: True, site="s1"
    )
    try:
        async with asyncio.TaskGroup() as tg, AsyncExitStack() as stack:
            task = tg.create_task(engine.run(), name="alarms")
            await engine.ready.wait()
            for attempt in range(3):  # another process may take the free port first
                api_cfg = {"host": "127.0.0.1", "port": free_port(), "token_file": str(token_file)}
                api_cfg.update(limits or {})
                try:
                    api = await stack.enter_async_context(
                        LocalApi(ApiConfig.model_validate(api_cfg), engine, clock, **kw)
                    )
                    break
                except ConfigError:
                    if attempt == 2:
                        raise
            session = await stack.enter_async_context(
                aiohttp.ClientSession(f"http://127.0.0.1:{api_cfg['port']}")
            )
            yield Harness(engine, store, api, session, write_config(tmp_path, api_cfg))
            task.cancel()
    finally:
        await store.close()
