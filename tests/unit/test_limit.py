"""The per-device budgets of the MQTT inputs (``drivers.mqtt.limit``), on a hand-moved clock."""

from drivers.mqtt.limit import MAX_KEYS, Limiter
from gateway.config.mqtt_devices import RateLimitConfig
from gateway.core.clock import ManualClock


def limiter(rate: float = 20.0, burst: int = 40) -> tuple[Limiter, ManualClock]:
    clock = ManualClock()
    return Limiter(RateLimitConfig(rate=rate, burst=burst), clock.mono), clock


def test_a_burst_then_the_sustained_rate() -> None:
    lim, clock = limiter(rate=20, burst=40)
    assert [lim.admit("b1") for _ in range(41)] == [True] * 40 + [False]
    clock.advance(0.5)  # 10 tokens back
    assert sum(lim.admit("b1") for _ in range(20)) == 10
    clock.advance(100)  # never more than the burst
    assert sum(lim.admit("b1") for _ in range(100)) == 40


def test_each_device_has_its_own_budget() -> None:
    lim, _ = limiter(rate=1, burst=2)
    assert [lim.admit("junk") for _ in range(5)] == [True, True, False, False, False]
    assert [lim.admit("real") for _ in range(2)] == [True, True]


def test_a_change_of_state_is_told_from_a_repeat() -> None:
    lim, _ = limiter()
    key = ("b1", "sos")
    assert lim.changed(key, True)  # nothing went on yet
    lim.passed(key, True)
    assert not lim.changed(key, True)
    assert lim.changed(key, False)
    assert lim.changed(("b1", "cancel"), True)  # another input of the same device


def test_memory_is_bounded_and_a_forgotten_device_gets_a_full_budget() -> None:
    lim, clock = limiter(rate=1, burst=3)
    for i in range(MAX_KEYS):
        lim.admit(f"d{i}")  # every bucket has 2 tokens of 3: none is full
        lim.passed((f"d{i}", "sos"), True)
    lim.admit("new")  # the table is full and every device is spending: the oldest tenth goes
    assert len(lim._buckets) == MAX_KEYS - MAX_KEYS // 10 + 1
    assert [lim.admit("d0") for _ in range(4)] == [True, True, True, False]
    lim.passed(("new", "sos"), True)
    assert len(lim._states) == MAX_KEYS
    assert lim.changed(("d0", "sos"), True)  # the oldest state was forgotten: one more gets in
    clock.advance(2)  # every bucket is full again: the same as none
    for i in range(MAX_KEYS - len(lim._buckets)):
        lim.admit(f"e{i}")  # full again, the new ones spending
    lim.admit("newest")
    kept = set(lim._buckets)  # those spending: d0 (emptied above), the e*, the newest
    assert kept == {"d0", "newest"} | {f"e{i}" for i in range(len(kept) - 2)}
