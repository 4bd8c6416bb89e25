"""The reconnecting MQTT session against a real mosquitto, with faults from the MQTT proxy.

What is checked: re-subscription on every connect, birth / will / stop status, log-once
transitions (one WARNING per outage, one INFO per recovery), the backoff cap and its reset,
``last_error``, cancel-safety during a connect that never completes, that an error of
``serve`` that is not an ``MqttError`` ends ``run``, and delivery as paho reads (nothing waits
in aiomqtt's queue, the broker's order, an error of ``deliver`` ends ``run``). The session has
no event for "failed attempt", so ``wait_until`` polls its counters every 10 ms.
"""

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiomqtt
import pytest

from gateway.transport.mqtt import Endpoint, Retry, Session, Status
from tests.support.mosquitto import Mosquitto
from tests.support.proxy import MqttProxy
from tests.support.subscriber import Recorder
from tests.support.wait import wait_until

FAST = Retry(0.05, 0.2)  # quick reconnects: the tests wait for several attempts
STATUS = "site/gw/status"
LOGGER = "gateway.transport.mqtt"


def session(
    port: int,
    *,
    retry: Retry = FAST,
    subscriptions: list[tuple[str, int]] | None = None,
    status: Status | None = None,
) -> Session:
    endpoint = Endpoint("127.0.0.1", port, "session-under-test", keepalive=5, timeout=2.0)
    return Session(
        endpoint,
        retry,
        label="test broker",
        down="testing offline",
        subscriptions=subscriptions or [],
        status=status,
    )


def status() -> Status:
    return Status(STATUS, lambda state: state.encode())


async def idle(client: aiomqtt.Client) -> None:
    """A ``serve`` that only notices the end of the connection."""
    async for _ in client.messages:
        pass


@contextlib.asynccontextmanager
async def running(
    sess: Session, serve: Callable[[aiomqtt.Client], Awaitable[None]] = idle
) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(sess.run(serve), name="test:session")
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.wait({task})


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


async def test_subscribes_again_after_the_broker_forgot_the_session(
    mosquitto: Mosquitto,
) -> None:
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def serve(client: aiomqtt.Client) -> None:
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            got.put_nowait(message.payload)

    sess = session(mosquitto.port, subscriptions=[("in/#", 1)])
    async with running(sess, serve):
        await asyncio.wait_for(sess.connected.wait(), 10)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="dev") as dev:
            await dev.publish("in/a", b"before", qos=1)
        assert await asyncio.wait_for(got.get(), 10) == b"before"
        await mosquitto.restart_async()  # persistence off: the subscription is gone
        await wait_until(lambda: sess.connects >= 2, "second connect")
        assert sess.connected.is_set()
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="dev") as dev:
            await dev.publish("in/a", b"after", qos=1)
        assert await asyncio.wait_for(got.get(), 10) == b"after"
    assert not sess.connected.is_set()
    assert sess.client is None


async def test_one_warning_per_outage_and_one_info_per_recovery(
    mqtt_proxy: MqttProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    await mqtt_proxy.refuse(True)
    sess = session(mqtt_proxy.port)
    async with running(sess):
        await wait_until(lambda: sess.reconnects >= 4, "four refused connects")
        assert not sess.ever_connected.is_set()
        assert sess.last_error
        assert len(records(caplog, logging.WARNING)) == 1
        assert records(caplog, logging.INFO) == []

        await mqtt_proxy.refuse(False)
        await asyncio.wait_for(sess.connected.wait(), 10)
        assert sess.ever_connected.is_set()
        infos = records(caplog, logging.INFO)
        assert len(infos) == 1
        assert "connected to test broker" in infos[0].getMessage()

        before = sess.reconnects
        await mqtt_proxy.refuse(True)
        mqtt_proxy.abort_all()  # the link dies without DISCONNECT; new connects are refused
        await wait_until(lambda: sess.reconnects >= before + 3, "three more failures")
        assert not sess.connected.is_set()
        warnings = records(caplog, logging.WARNING)
        assert len(warnings) == 2
        assert "testing offline" in warnings[1].getMessage()
        await mqtt_proxy.refuse(False)
        await asyncio.wait_for(sess.connected.wait(), 10)
    assert len(records(caplog, logging.INFO)) == 2
    assert len(records(caplog, logging.WARNING)) == 2


async def test_the_cap_bounds_the_wait_after_the_broker_returns(mqtt_proxy: MqttProxy) -> None:
    """Seven failures: uncapped, the next pause would be 0.05 * 2**7 = 6.4 s; the cap is 0.2 s."""
    await mqtt_proxy.refuse(True)
    sess = session(mqtt_proxy.port, retry=Retry(0.05, 0.2, jitter=0.0))
    async with running(sess):
        await wait_until(lambda: sess.reconnects >= 7, "seven refused connects")
        await mqtt_proxy.refuse(False)
        back = time.monotonic()
        await asyncio.wait_for(sess.connected.wait(), 10)
        assert time.monotonic() - back < 1.5

        # The backoff restarted from its base once up: a lost link is retried at once.
        await mqtt_proxy.refuse(True)
        before = sess.reconnects
        mqtt_proxy.abort_all()
        await wait_until(lambda: sess.reconnects >= before + 1, "link lost")
        await mqtt_proxy.refuse(False)
        back = time.monotonic()
        await wait_until(lambda: sess.connects >= 2, "reconnected")
        assert time.monotonic() - back < 1.0


async def test_birth_will_and_offline_on_stop(mosquitto: Mosquitto, mqtt_proxy: MqttProxy) -> None:
    async with Recorder(mosquitto.host, mosquitto.port, STATUS) as rec:
        sess = session(mqtt_proxy.port, status=status())
        async with running(sess):
            await rec.wait_for(lambda msgs: [m.payload for m in msgs] == [b"online"])
            mqtt_proxy.abort_all()  # no DISCONNECT: the broker publishes the will
            await rec.wait_for(
                lambda msgs: [m.payload for m in msgs][:2] == [b"online", b"offline"]
            )
            await rec.wait_for(lambda msgs: [m.payload for m in msgs][-1:] == [b"online"])
            assert sess.connects == 2
        # stopped: "offline" was published before the clean DISCONNECT
        got = await rec.wait_for(lambda msgs: msgs[-1].payload == b"offline")
    assert [m.payload for m in got] == [b"online", b"offline", b"online", b"offline"]
    async with Recorder(mosquitto.host, mosquitto.port, STATUS) as late:
        retained = await late.wait_count(1)
    assert retained[0].retain
    assert retained[0].payload == b"offline"


async def test_a_stop_during_a_connect_that_never_completes(mqtt_proxy: MqttProxy) -> None:
    mqtt_proxy.block(True)  # accepted, never a CONNACK
    sess = session(mqtt_proxy.port)
    async with running(sess) as task:
        await wait_until(lambda: mqtt_proxy.connections >= 1, "a connect under way")
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done, "the stop was swallowed"
        assert task.cancelled()
    assert not sess.connected.is_set()


async def test_an_error_of_serve_that_is_no_mqtt_error_ends_run(mosquitto: Mosquitto) -> None:
    async def broken(client: aiomqtt.Client) -> None:
        raise LookupError("a bug")

    sess = session(mosquitto.port)
    with pytest.raises(LookupError, match="a bug"):
        await asyncio.wait_for(sess.run(broken), 10)
    assert sess.connects == 1
    assert not sess.connected.is_set()


async def test_delivered_messages_never_wait_in_a_queue(mosquitto: Mosquitto) -> None:
    """With ``deliver``, each message is handled as it is read: aiomqtt's queue stays empty, so
    a flood cannot grow the process; the order is the broker's."""
    got: list[bytes] = []
    waiting: list[int] = []
    sess = session(mosquitto.port, subscriptions=[("flood/+", 0)])

    def deliver(topic: str, payload: bytes) -> None:
        assert sess.client is not None
        waiting.append(len(sess.client.messages))
        got.append(payload)

    n = 3000
    task = asyncio.create_task(sess.run(sess.closed, deliver), name="test:session")
    try:
        await wait_until(sess.connected.is_set, "connected")
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="flooder") as pub:
            for i in range(n):
                await pub.publish(f"flood/{i % 7}", str(i).encode(), qos=0)
        await wait_until(lambda: len(got) == n, f"{n} messages delivered")
    finally:
        task.cancel()
        await asyncio.wait({task})
    assert got == [str(i).encode() for i in range(n)]
    assert max(waiting) == 0


async def test_an_error_of_deliver_ends_run_and_is_no_lost_connection(
    mosquitto: Mosquitto,
) -> None:
    def broken(topic: str, payload: bytes) -> None:
        raise LookupError(f"a bug on {topic}")

    sess = session(mosquitto.port, subscriptions=[("bug/+", 1)])
    task = asyncio.create_task(sess.run(sess.closed, broken), name="test:session")
    await wait_until(sess.connected.is_set, "connected")
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="bug-publisher") as pub:
        await pub.publish("bug/1", b"x", qos=1)
    with pytest.raises(LookupError, match="a bug on bug/1"):
        await asyncio.wait_for(task, 10)
    assert (sess.connects, sess.reconnects) == (1, 0)
    assert not sess.connected.is_set()


def open_fds() -> int:
    """File descriptors this process holds now."""
    return len(os.listdir("/proc/self/fd"))


async def test_connects_timed_out_on_a_hung_broker_leave_no_socket_open(
    mosquitto: Mosquitto,
) -> None:
    """aiomqtt 2.5.1 leaves paho's socket open when CONNACK times out; the session closes it."""
    pid = mosquitto.pid
    assert pid is not None
    endpoint = Endpoint("127.0.0.1", mosquitto.port, "session-under-test", timeout=0.2)
    sess = Session(endpoint, Retry(0.01, 0.02), label="test broker", down="testing offline")
    os.kill(pid, signal.SIGSTOP)  # the listening socket stays open; nothing answers
    try:
        async with running(sess):
            await wait_until(lambda: sess.reconnects >= 2, "two timed-out connects")
            before = open_fds()
            await wait_until(lambda: sess.reconnects >= 22, "twenty more", timeout=30)
            after = open_fds()
            assert not sess.ever_connected.is_set()
            assert after - before <= 1, f"{after - before} descriptors more after 20 timeouts"
            os.kill(pid, signal.SIGCONT)
            await asyncio.wait_for(sess.connected.wait(), 10)
            async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="probe") as probe:
                await probe.publish("probe", b"", qos=1)  # the broker has read all before it
            assert sess.connects == 1
            # the attempts given up on were reset: none of their CONNECTs took the session over
            assert "already connected" not in mosquitto.log_text()
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_a_stop_is_obeyed_when_the_disconnect_cannot_be_written(
    mosquitto: Mosquitto,
) -> None:
    """aiomqtt's ``__aexit__`` times out on a DISCONNECT stuck behind a full socket and raises
    ``MqttError`` in place of the cancel: that must end ``run``, not count as a lost link."""
    pid = mosquitto.pid
    assert pid is not None
    hung, stuck = asyncio.Event(), asyncio.Event()

    async def flood(client: aiomqtt.Client) -> None:
        await hung.wait()
        paho = client._client
        for _ in range(64):  # 64 MB: far beyond the socket buffers of a hung broker
            paho.publish("flood", b"x" * 1_000_000, qos=0)
        stuck.set()
        await asyncio.Future()

    endpoint = Endpoint("127.0.0.1", mosquitto.port, "session-under-test", timeout=0.5)
    sess = Session(endpoint, Retry(0.01, 0.02), label="test broker", down="testing offline")
    try:
        async with running(sess, flood) as task:
            await asyncio.wait_for(sess.connected.wait(), 10)
            os.kill(pid, signal.SIGSTOP)
            hung.set()
            await asyncio.wait_for(stuck.wait(), 10)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=5)
            assert done, f"still running 5 s after its cancel ({sess.reconnects} reconnects)"
            assert task.cancelled()
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_a_message_is_acknowledged_only_once_settled_and_redelivered_if_not(
    mosquitto: Mosquitto,
) -> None:
    """With ``settled``, paho's PUBACK waits for it: a session that ends before gets the
    message again on its next connect (persistent session); once acknowledged, never again."""
    got: list[bytes] = []
    release = asyncio.Event()
    asked = asyncio.Event()

    async def settled() -> None:
        asked.set()
        await release.wait()

    def make() -> Session:
        endpoint = Endpoint("127.0.0.1", mosquitto.port, "acker", keepalive=5, timeout=2.0)
        return Session(
            endpoint, FAST, label="b", down="d", subscriptions=[("in/#", 1)], settled=settled
        )

    async def deliver_run(sess: Session) -> asyncio.Task[None]:
        async def serve(client: aiomqtt.Client) -> None:
            await sess.closed(client)

        return asyncio.create_task(sess.run(serve, lambda _t, p: got.append(p)), name="test:acker")

    first = make()
    task = await deliver_run(first)
    try:
        await asyncio.wait_for(first.connected.wait(), 10)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="dev") as dev:
            await dev.publish("in/a", b"press", qos=1)
        await asyncio.wait_for(asked.wait(), 10)  # delivered; its PUBACK waits for settled
        assert got == [b"press"]
    finally:
        task.cancel()  # gone before it settled: as a process that died
        await asyncio.wait({task})
    assert first.acks is not None
    assert first.acks.sent == 0

    second = make()
    task = await deliver_run(second)
    try:
        await wait_until(lambda: len(got) == 2, "the press handed over again")
        assert got == [b"press", b"press"]
        release.set()
        await wait_until(lambda: second.acks is not None and second.acks.sent == 1, "acked")
    finally:
        task.cancel()
        await asyncio.wait({task})

    third = make()  # acknowledged: the broker keeps nothing for the session
    task = await deliver_run(third)
    try:
        await asyncio.wait_for(third.connected.wait(), 10)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="dev") as dev:
            await dev.publish("in/a", b"later", qos=1)  # behind anything still queued
        await wait_until(lambda: len(got) == 3, "the next press")
        assert got[2] == b"later"
    finally:
        task.cancel()
        await asyncio.wait({task})
