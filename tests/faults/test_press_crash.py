"""A press the gateway dies holding is not lost: it is acknowledged only once committed.

The real daemon, two real mosquitto brokers (upstream and local) and a real MQTT button. The
first start has the fault ``hold-alarm-commit`` (``tests.support.faulty``): the alarm engine
stops just before committing the press's alarm and says so, and the test kills the daemon
with SIGKILL right then, between the local broker handing the press over and its commit. The
press was not acknowledged, so the local broker hands it to the next start (persistent
session), which raises the alarm; the platform sees it raised exactly once. Before, paho
acknowledged on receipt, the press left the broker with the dead process, and no alarm came.
"""

import sqlite3
from pathlib import Path

import pytest

from tests.faults.test_broker_return import PREFIX, brokers, config, press, raised, ready
from tests.support.daemon import Daemon, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.subscriber import Recorder

pytestmark = pytest.mark.slow
__all__ = ["brokers"]  # the fixture


async def test_a_press_held_by_a_gateway_killed_before_its_commit_raises_one_alarm(
    tmp_path: Path, daemon: Daemon, brokers: tuple[Mosquitto, Mosquitto]
) -> None:
    up, local = brokers
    write_config(daemon.config, config(tmp_path / "buf.db", up.port, local.port))

    def platform() -> Recorder:
        return Recorder(up.host, up.port, f"{PREFIX}/alarm/#", identifier="pf", clean_session=False)

    async with platform():  # its persistent session queues what comes while it is away
        daemon.fault = "hold-alarm-commit"
        daemon.start()
        await ready(daemon)
        await press(local.port, "e-1")
        await daemon.wait_log("holding alarm commit")  # received, not committed
        daemon.kill()
    assert not [e for e in daemon.logs() if e["msg"].startswith("alarm ")]  # nothing raised

    daemon.fault = None
    daemon.start()
    async with platform() as rec:
        await rec.wait_for(lambda _: len(raised(rec)) >= 1, timeout=30)
        rc, _ = daemon.terminate()
    assert rc == 0
    ids = {a["alarm_id"] for a in raised(rec)}
    assert len(ids) == 1, raised(rec)  # one press, one alarm (a resent copy has the same id)
    assert raised(rec)[0]["device"] == "flat-12-sos"
    with sqlite3.connect(tmp_path / "buf.db") as conn:  # what the gateway itself raised
        assert conn.execute("SELECT id FROM alarms").fetchall() == [(ids.pop(),)]
