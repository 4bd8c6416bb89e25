"""A real HTTP server standing in for a staff channel (the SMS gateway, an IM bot)."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.support.ports import free_port


class Webhook:
    """Keeps every JSON body it is sent; ``arrived`` is set at each."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self._taken = 0  # bodies ``next_body`` returned

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        self.arrived.set()
        return web.json_response({"ok": True})

    async def next_body(self, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The first body ``next_body`` has not returned yet, once it has arrived."""
        async with asyncio.timeout(timeout):
            while len(self.bodies) <= self._taken:
                self.arrived.clear()
                await self.arrived.wait()
        self._taken += 1
        return self.bodies[self._taken - 1]


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[Webhook, int]]:
    """The webhook on a free loopback port, and that port."""
    hook = Webhook()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield hook, port
    finally:
        await runner.cleanup()
