"""Fault F08: the broker refuses a publish. Under MQTT 3.1.1 the gateway cannot know, and
does not loop.

A real mosquitto whose ACL denies the gateway the alarm topics (``topic deny``), with the
proxy in between. MQTT 3.1.1 has no negative acknowledgement: mosquitto answers a denied
QoS 1 PUBLISH with an ordinary PUBACK (§3.4: the packet id and nothing else; mosquitto 2.0.11
logs "Denied PUBLISH" at debug level) and drops the message. So each alarm message is
published once, acknowledged, counted as delivered and never reaches the platform: the
gateway sees a broker that works. What is held, exactly: every alarm message is published
upstream exactly once (no retry, no hot loop: the proxy never sees a message twice and the
broker logs one denial per alarm message), no PUBACK the gateway got carried a reason code
it could have read, the telemetry beside it arrives whole, the gateway's backlog goes to 0
and its one connection stays up, and the alarm is still raised locally (siren and staff).
docs/reliability.md (F08) says what MQTT 5 would change.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_operate import metric, wait_metrics
from tests.faults.link import PREFIX, Tally, config, dead_letters, running
from tests.support.daemon import Daemon
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port
from tests.support.proxy import MqttProxy
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow
PRESSES, RATE, SECONDS = 3, 20.0, 3.0
ACL = f"""\
topic readwrite cgw/#
topic deny {PREFIX}/alarm/#

user platform
topic read #
"""


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[tuple[Mosquitto, Mosquitto]]:
    """The platform's broker with the ACL (and its debug log, which names each denial), and
    the local broker."""
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    extra = f"acl_file {acl}\nlog_type debug"
    with (
        Mosquitto(tmp_path / "upstream", extra_config=extra) as up,
        Mosquitto(tmp_path / "local") as local,
    ):
        yield up, local


async def test_a_denied_alarm_is_published_once_and_the_rest_flows(
    tmp_path: Path, daemon: Daemon, brokers: tuple[Mosquitto, Mosquitto]
) -> None:
    up, local = brokers
    port = free_port()
    async with MqttProxy(up.host, up.port) as proxy:
        doc = config(tmp_path / "buf.db", proxy.port, local.port) | {"monitor": {"port": port}}
        async with running(daemon, doc, up, local, user="platform") as (rec, feed):
            await feed.run(SECONDS, RATE, PRESSES)

            def denials() -> int:
                return up.log_text().count("Denied PUBLISH from cgw-s1-gw1")

            await wait_until(lambda: denials() >= 2 * PRESSES, "raised and notified denied", 10)
            await rec.wait_for(lambda m: Tally.of(m).telemetry >= feed.readings, timeout=10)
            url = f"http://127.0.0.1:{port}"
            text = await wait_metrics(
                url, lambda t: metric(t, "cgw_sink_backlog_rows", sink="mqtt") == 0
            )
            local_alarms = [e for e in daemon.logs() if e["msg"].startswith("ALARM ")]
            rc, _ = daemon.terminate()
    assert rc == 0
    tally = Tally.of(rec.messages)
    alarms = {t: n for t, n in proxy.topics.items() if t.startswith(f"{PREFIX}/alarm/")}
    delivered = metric(text, "cgw_sink_delivered_total", sink="mqtt")
    print(
        f"{PRESSES} presses: {len(alarms)} alarms, {sum(alarms.values())} alarm PUBLISH "
        f"({sorted(alarms.values())} per alarm: raised, then notified), {denials()} denied by "
        f"the broker, {len(tally.raised)} at the platform; {proxy.pubacks} PUBACKs, "
        f"{proxy.pubacks_with_reason} with a reason code, {delivered:g} counted delivered; "
        f"{feed.readings} readings, {tally.telemetry} arrived"
    )
    assert len(alarms) == PRESSES
    assert proxy.resent_count == 0  # no message published twice: no retry, no loop
    assert denials() == sum(alarms.values())  # every alarm message denied, once
    assert tally.raised == {}  # the broker dropped them: the platform never had them
    assert proxy.pubacks_with_reason == 0  # nothing on the wire said so
    assert len(local_alarms) == PRESSES  # raised locally all the same
    assert tally.missing(feed.sent) == 0
    assert tally.telemetry == feed.readings
    assert proxy.connections == 1
    assert dead_letters(daemon) == []  # acknowledged, so never taken for a refusal
    assert not [e for e in daemon.logs() if "unreachable" in e["msg"]]
