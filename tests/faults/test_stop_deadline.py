"""A SIGTERM is obeyed within systemd's TimeoutStopSec even when a component ignores its cancel.

The real daemon with one more input component that swallows every cancel
(``tests.support.faulty``, fault ``stubborn``): the stop names it, goes on without it, closes
the store cleanly and exits 1 within the stop deadline, well inside the unit's
``TimeoutStopSec=10``.
"""

import sqlite3
from pathlib import Path

import pytest

from gateway.runtime.components import STAGE_GRACE_MIN, STOP_DEADLINE
from tests.support.daemon import Daemon, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port

pytestmark = pytest.mark.slow
TIMEOUT_STOP_SEC = 10.0  # systemd/cgw.service


async def test_a_component_that_ignores_its_cancel_does_not_hold_the_stop(
    tmp_path: Path, mosquitto: Mosquitto, daemon: Daemon
) -> None:
    db = tmp_path / "buf.db"
    write_config(
        daemon.config,
        {
            "gateway": {"site_id": "s1", "gateway_id": "gw1"},
            "store": {"path": str(db)},
            "upstream": {"mqtt": {"host": "127.0.0.1", "port": mosquitto.port}},
            "monitor": {"host": "127.0.0.1", "port": free_port()},
        },
    )
    daemon.fault = "stubborn"
    daemon.start()
    await daemon.wait_log("stubborn component running")
    await daemon.wait_log("connected to upstream broker")
    rc, took = daemon.terminate(timeout=TIMEOUT_STOP_SEC + 5)
    print(f"stopped in {took:.2f} s with a component that swallows its cancel")
    # the deadline, the minimum of each later stage (alarms, sinks), the store closing
    assert took < STOP_DEADLINE + 2 * STAGE_GRACE_MIN + 1.0 < TIMEOUT_STOP_SEC
    assert rc == 1  # it did stop, but something was wrong: say so
    text = [e["msg"] for e in daemon.logs()]
    assert any(m.startswith("stubborn did not stop within") for m in text), text
    assert "stopped, the store closed cleanly; left running: stubborn" in text
    assert any("offline" in m or "exiting without waiting for stubborn" in m for m in text)
    with sqlite3.connect(db) as conn:  # marked clean: the next start skips quick_check
        assert conn.execute("SELECT value FROM meta WHERE key='clean'").fetchone() == ("1",)
