"""A staff channel that stops delivering becomes an alarm; one that delivers again clears it."""

from gateway.alarms.channels import CHANNEL_DOWN, ChannelWatch
from gateway.alarms.delivery import Delivery


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
