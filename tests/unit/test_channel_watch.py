"""A staff channel that stops delivering becomes an alarm; one that delivers again clears it."""

from dataclasses import replace

from gateway.alarms.channels import CHANNEL_DOWN, ChannelWatch
from gateway.alarms.delivery import Delivery
from gateway.core.snapshots import ModemState


def test_three_failed_messages_in_a_row_make_a_channel_down_and_one_delivered_brings_it_up() -> (
    None
):
    watch = ChannelWatch("default")
    failed = [Delivery("wecom", False, "HTTP 500"), Delivery("wecom", False, "timeout")]
    assert watch.record(failed, 1.0) == []
    assert watch.record([*failed, Delivery("sms", True)], 2.0) == []  # sms is fine
    (down,) = watch.record(failed, 3.0)
    assert (down.cause, down.rule, down.device, down.active) == (
        f"{CHANNEL_DOWN}/wecom",
        CHANNEL_DOWN,
        "wecom",
        True,
    )
    assert (
        down.message == "staff channel wecom is down: 3 messages in a row not delivered (timeout)"
    )
    assert watch.record(failed, 4.0) == []  # still down: no second alarm
    (up,) = watch.record([Delivery("wecom", False, "x"), Delivery("wecom", True)], 5.0)
    assert (up.active, up.message) == (False, "staff channel wecom delivers again")
    wecom, sms = watch.snapshot()["wecom"], watch.snapshot()["sms"]
    assert (wecom.delivered, wecom.failed, wecom.in_a_row, wecom.last_ok) == (1, 4, 0, 5.0)
    assert (sms.delivered, sms.failed, sms.down) == (1, 0, False)


def test_the_log_channel_is_not_watched() -> None:
    watch = ChannelWatch("default")
    watch.record([Delivery("log", True)], 1.0)
    assert dict(watch.snapshot()) == {}


def test_a_modem_that_cannot_send_makes_its_channel_down_until_it_can() -> None:
    watch = ChannelWatch("default")
    good = ModemState("/dev/ttyUSB2", open=True, sim="ready", registered=True, csq=20)
    assert watch.modem("guard-sms", good, 1.0) == []
    lost = replace(good, registered=False, problem="not registered on the mobile network")
    (down,) = watch.modem("guard-sms", lost, 2.0)
    assert (down.cause, down.active) == (f"{CHANNEL_DOWN}/guard-sms", True)
    assert down.message == (
        "staff channel guard-sms is down: modem /dev/ttyUSB2: not registered on the mobile network"
    )
    assert watch.modem("guard-sms", lost, 3.0) == []
    assert watch.snapshot()["guard-sms"].down
    (up,) = watch.modem("guard-sms", good, 4.0)
    assert (up.active, up.message) == (False, "staff channel guard-sms delivers again")
    watch.record([Delivery("guard-sms", True)], 5.0)  # deliveries still count on a modem channel
    assert watch.snapshot()["guard-sms"].modem == good


def test_fallback_channels_wait_for_the_internet_channels_to_fail() -> None:
    watch = ChannelWatch("default")
    spare = frozenset({"sms"})
    assert watch.plan(["wecom", "sms"], spare) == (["wecom"], ["sms"])
    assert watch.plan(["wecom", "mail"], spare) == (["wecom", "mail"], [])
    assert watch.plan(["sms"], spare) == ([], [])  # nothing is down: the modem rests
    for t in range(3):
        watch.record([Delivery("wecom", False, "connection refused")], float(t))
    assert watch.plan(["wecom", "sms"], spare) == (["wecom", "sms"], [])  # down: both at once
    assert watch.plan(["mail", "wecom", "sms"], spare) == (["mail", "wecom"], ["sms"])
    assert watch.plan(["sms"], spare) == (["sms"], [])  # an internet channel is down
