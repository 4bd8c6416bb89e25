"""Fault F08 (the other way): a broker that refuses a publish by closing the connection.

MQTT 3.1.1 §3.3.5 lets a broker that does not authorise a PUBLISH "close the Network
Connection" instead of acknowledging it (mosquitto 2.0 acknowledges: test_publish_denied.py).
Here the proxy in front of the real mosquitto does so for one alarm message: the ``raised``
message of the alarm of one button (``REFUSED``), every time it is published. Before the fix
the gateway published it again on every connection, for ever, and every alarm behind it waited.

The real daemon gets ``PRESSES`` button presses (two alarm messages each: raised, then
notified) among readings. What is held, exactly: every alarm message is either at the
platform or named by a ``publish-refused`` event there, never both, and together they are
every seq of the alarm lane; the one named is the refused one; every later alarm arrives, and
every reading, the later alarms within ``HELD`` s of their press; the broker saw the refused
message at most ``NARROW_AFTER + LIMIT`` times, the gateway connected at most once more than
that; the dead letter is counted on ``/metrics`` in its lane and logged once at CRITICAL; the
alarm is raised locally all the same.
"""

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from gateway.sinks.mqtt import RECONNECT_BASE
from gateway.sinks.refusals import LIMIT, NARROW_AFTER
from tests.e2e.test_operate import metric, wait_metrics
from tests.faults.link import BUTTONS, PREFIX, Tally, brokers, config, proxy, running
from tests.support.daemon import Daemon
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port
from tests.support.proxy import MqttProxy
from tests.support.subscriber import Received

pytestmark = pytest.mark.slow
__all__ = ["brokers", "proxy"]  # the fixtures
PRESSES, RATE, SECONDS = 5, 20.0, 3.0
REFUSED = "sos-1"  # the second press: alarms before and after it
# press -> platform of an alarm behind the refused one: one reconnect pause (at most
# RECONNECT_BASE while the connections come up) per refused publish, and some slack
HELD = (NARROW_AFTER + LIMIT) * RECONNECT_BASE + 2.0


def refused(_topic: str, payload: bytes) -> bool:
    """The raised message of ``REFUSED``'s alarm."""
    doc = json.loads(payload)
    return bool(doc.get("device") == REFUSED and doc.get("state") == "raised")


def complete(expected: int) -> Callable[[Sequence[Received]], bool]:
    """Every alarm message arrived or was reported refused, and telemetry flows."""

    def done(messages: Sequence[Received]) -> bool:
        tally = Tally.of(messages)
        return len(tally.alarm_seqs) + len(tally.refused) >= expected and tally.telemetry > 0

    return done


async def test_a_refused_alarm_is_dead_lettered_reported_and_the_alarms_behind_it_flow(
    tmp_path: Path, daemon: Daemon, brokers: tuple[Mosquitto, Mosquitto], proxy: MqttProxy
) -> None:
    up, local = brokers
    port = free_port()
    proxy.refuse_publish(refused)
    doc = config(tmp_path / "buf.db", proxy.port, local.port) | {"monitor": {"port": port}}
    async with running(daemon, doc, up, local) as (rec, feed):
        await feed.run(SECONDS, RATE, PRESSES)
        await rec.wait_for(complete(2 * PRESSES), timeout=20)
        await rec.wait_for(lambda m: Tally.of(m).telemetry >= feed.readings, timeout=10)
        text = await wait_metrics(
            f"http://127.0.0.1:{port}",
            lambda t: metric(t, "cgw_sink_backlog_rows", sink="mqtt") == 0,
        )
        logs = daemon.logs()
        rc, _ = daemon.terminate()
    assert rc == 0
    tally = Tally.of(rec.messages)
    named = {d["refused_seq"] for d in tally.refused}
    dead = [e for e in logs if "dead-lettered" in e["msg"]]
    latency = {
        b: round(tally.raised[b] - at, 2)
        for b, at in zip(BUTTONS, feed.pressed_at, strict=False)
        if b in tally.raised
    }
    print(
        f"{PRESSES} presses: {len(tally.alarm_seqs)} alarm messages arrived, {len(named)}"
        f" reported refused; the refused one published {proxy.refused} times,"
        f" {proxy.connections} connections; {feed.readings} readings, {tally.telemetry} arrived;"
        f" duplicates {dict(tally.duplicates)}; press -> platform {latency} s;"
        f" dead-letter log: {[e['msg'] for e in dead]}"
    )
    # every alarm message accounted for: arrived, or reported refused, never both
    assert tally.alarm_seqs.isdisjoint(named)
    assert tally.alarm_seqs | named == set(range(1, 2 * PRESSES + 1))
    [report] = tally.refused
    assert report["refused_lane"] == "alarm"
    assert report["refused_topic"].startswith(f"{PREFIX}/alarm/")
    assert report["attempts"] == LIMIT
    # the one reported is the refused one; every other alarm arrived, the later ones too
    assert sorted(tally.raised) == sorted(f"sos-{n}" for n in range(PRESSES) if n != 1)
    assert tally.missing(feed.sent) == 0
    assert tally.telemetry == feed.readings
    # a bounded search: never the hot loop of a resend per connection
    assert LIMIT <= proxy.refused <= NARROW_AFTER + LIMIT
    assert proxy.connections <= proxy.refused + 1
    assert max(latency.values()) < HELD
    # the exposition sorts the labels
    assert metric(text, "cgw_sink_dead_lettered_total", lane="alarm", sink="mqtt") == 1
    assert metric(text, "cgw_sink_dead_lettered_total", lane="event", sink="mqtt") == 0
    assert [e["level"] for e in dead] == ["CRITICAL"]
    assert len([e for e in logs if e["msg"].startswith("ALARM ")]) == PRESSES  # raised locally
