"""The suite's fault proxy (``tests/support/proxy.MqttProxy``) for ``faults.py``'s rows.

``Link`` runs it on an event loop thread of its own, between the gateway and the upstream
broker (``fault_table.rig(link=True)``), so a row's plain threads can reset every connection
or black-hole the link while the rig's paho clients and the gateway go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from typing import Any

from harness.procs import HOST, REPO

sys.path.insert(0, str(REPO))  # the tests' peers
from tests.support.proxy import MqttProxy


class Link:
    """The fault proxy in front of the upstream broker, on an event loop thread of its own."""

    def __init__(self, upstream_port: int) -> None:
        self.proxy = MqttProxy(HOST, upstream_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="link", daemon=True)

    def __enter__(self) -> Link:
        self._thread.start()
        self._call(self.proxy.__aenter__())
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._call(self.proxy.__aexit__(None, None, None))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def _do(self, fn: Any, *args: Any) -> Any:
        async def now() -> Any:
            return fn(*args)

        return self._call(now())

    @property
    def port(self) -> int:
        """Where the gateway connects."""
        return self.proxy.port

    def reset(self) -> int:
        """Reset every connection; how many client connections it cut."""
        cut: int = self._do(self.proxy.reset_all)
        return cut

    def blackhole(self, on: bool) -> None:
        """Forward nothing on any connection, and black-hole new ones (True); or forward."""
        self._do(self.proxy.stall, on)
        self._do(self.proxy.block, on)
