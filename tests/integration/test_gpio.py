"""The GPIO driver against gpiozero's own mock pin factory (its official test backend).

Edges are driven on ``MockPin``s; with a ``ManualClock`` an edge is stamped with the clock's
time when it is driven, so chatter, debounce and hold are decided by the test, not by the
machine's load. Waiting is always for an event (or a pin state), never a fixed sleep.
"""

import asyncio
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Device, DigitalInputDevice
from gpiozero.pins.mock import MockFactory

from drivers.gpio import Debouncer, GpioInputs, GpioOutputs, GpioUnavailable, pattern_for
from drivers.gpio.inputs import Change
from gateway.config.gpio import GpioDeviceConfig
from gateway.core.clock import ManualClock, SystemClock
from gateway.core.errors import PermanentError, TransientError
from gateway.core.messages import ContactEvent

WALL0 = 1_800_000_000.0  # ManualClock's default wall time


@pytest.fixture
def factory() -> Iterator[Any]:
    """gpiozero's MockFactory as the process-wide pin factory, removed again afterwards."""
    mock = MockFactory()
    Device.pin_factory = mock
    try:
        yield mock
    finally:
        mock.reset()
        Device.pin_factory = None


class Recorder:
    """The ``emit`` callback: queues events and notes the thread it was called on."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[ContactEvent] = asyncio.Queue()
        self.threads: set[int] = set()

    def __call__(self, event: ContactEvent) -> None:
        self.threads.add(threading.get_ident())
        self.queue.put_nowait(event)

    async def next(self) -> ContactEvent:
        async with asyncio.timeout(5):
            return await self.queue.get()


def check(event: ContactEvent, name: str, active: bool, ts: float, held: bool = False) -> None:
    """``event`` is from input ``name`` of device "panel", with these values (ts to 1 µs)."""
    assert (event.device, event.input, event.active, event.held) == ("panel", name, active, held)
    assert event.ts == pytest.approx(ts, abs=1e-6)


class ThreadNotingClock(SystemClock):
    """The real clock, noting which threads stamp edges (the driver reads it at each edge)."""

    def __init__(self) -> None:
        self.threads: set[int] = set()

    def mono(self) -> float:
        self.threads.add(threading.get_ident())
        return super().mono()


def device(*inputs: dict[str, Any], outputs: tuple[dict[str, Any], ...] = ()) -> GpioDeviceConfig:
    return GpioDeviceConfig.model_validate(
        {"kind": "gpio", "id": "panel", "inputs": list(inputs), "outputs": list(outputs)}
    )


# -- pure: the debouncer ------------------------------------------------------------------------


def test_debouncer_reports_a_level_once_it_persisted() -> None:
    d = Debouncer(debounce=0.05)
    assert d.edge(True, 10.0, 100.0) == []
    assert d.deadline() == pytest.approx(10.05)
    assert d.settle(10.049) == []
    assert d.settle(10.05) == [Change(True, 100.0)]
    assert d.deadline() is None
    assert d.edge(False, 11.0, 101.0) == []
    assert d.settle(11.05) == [Change(False, 101.0)]


def test_debouncer_judges_chatter_by_edge_stamps_not_by_when_it_is_told() -> None:
    """Edges processed late (a stalled loop) are still judged at their own stamps."""
    d = Debouncer(debounce=0.05)
    out: list[Change] = []
    for i, level in enumerate([True, False, True, False, True]):
        out += d.edge(level, 10.0 + i * 0.01, 100.0 + i * 0.01)
    assert out == []
    [change] = d.settle(10.09)
    assert (change.active, change.held) == (True, False)
    assert change.ts == pytest.approx(100.04)  # the last edge's stamp


def test_debouncer_ignores_a_glitch_back_to_the_reported_level() -> None:
    d = Debouncer(debounce=0.05)
    d.edge(True, 10.0, 100.0)
    d.edge(False, 10.02, 100.02)
    assert d.deadline() is None
    assert d.settle(20.0) == []


def test_debouncer_without_debounce_reports_at_once() -> None:
    d = Debouncer(debounce=0.0)
    assert d.edge(True, 10.0, 100.0) == [Change(True, 100.0)]
    assert d.edge(False, 10.001, 100.001) == [Change(False, 100.001)]


def test_debouncer_hold_counts_from_the_edge_across_a_short_bounce() -> None:
    d = Debouncer(debounce=0.05, hold=1.0)
    d.edge(True, 10.0, 100.0)
    assert d.settle(10.05) == [Change(True, 100.0)]
    assert d.deadline() == pytest.approx(11.0)
    d.edge(False, 10.5, 100.5)  # a bounce, back within the debounce
    d.edge(True, 10.52, 100.52)
    assert d.settle(10.99) == []
    assert d.settle(11.0) == [Change(True, 101.0, held=True)]
    assert d.deadline() is None  # one held event per press
    assert d.edge(False, 12.0, 102.0) == []
    assert d.settle(12.05) == [Change(False, 102.0)]


def test_debouncer_short_press_is_not_held() -> None:
    d = Debouncer(debounce=0.05, hold=1.0)
    d.edge(True, 10.0, 100.0)
    d.edge(False, 10.5, 100.5)  # judged at 10.5: the press is reported, the hold not due
    assert d.settle(12.0) == [Change(False, 100.5)]
    assert d.reported is False
    assert d.held is False


# -- inputs ---------------------------------------------------------------------------------------


async def test_press_and_release_of_a_normally_open_pull_up_button(factory: Any) -> None:
    clock, rec = ManualClock(), Recorder()
    cfg = device({"name": "call_101", "pin": 17}, {"name": "call_102", "pin": 27})
    async with GpioInputs(cfg, rec, clock) as inputs:
        factory.pin(27).drive_low()  # pressed: pull-up, contact to ground
        clock.advance(0.05)
        check(await rec.next(), "call_102", True, WALL0)
        assert inputs.active("call_102")
        assert not inputs.active("call_101")
        factory.pin(27).drive_high()
        clock.advance(0.05)
        check(await rec.next(), "call_102", False, WALL0 + 0.05)
        assert not inputs.active("call_102")
    assert rec.queue.empty()


async def test_normally_closed_contact_alarms_when_it_opens(factory: Any) -> None:
    clock, rec = ManualClock(), Recorder()
    pin = factory.pin(22)
    async with GpioInputs(device({"name": "fire", "pin": 22, "contact": "nc"}), rec, clock):
        pin.drive_low()  # the loop closes before the start-up level (open) could settle
        clock.advance(1.0)
        pin.drive_high()  # the fire panel's relay opens: alarm
        clock.advance(0.05)
        check(await rec.next(), "fire", True, WALL0 + 1.0)
        pin.drive_low()
        clock.advance(0.05)
        check(await rec.next(), "fire", False, WALL0 + 1.05)


async def test_pull_down_contact_is_active_high(factory: Any) -> None:
    clock, rec = ManualClock(), Recorder()
    pin = factory.pin(23)
    async with GpioInputs(device({"name": "tamper", "pin": 23, "pull": "down"}), rec, clock):
        assert pin.state is False  # the pull-down holds the idle line low
        pin.drive_high()
        clock.advance(0.05)
        check(await rec.next(), "tamper", True, WALL0)
        pin.drive_low()
        clock.advance(0.05)
        check(await rec.next(), "tamper", False, WALL0 + 0.05)


async def test_hold_emits_a_held_event(factory: Any) -> None:
    clock, rec = ManualClock(), Recorder()
    pin = factory.pin(17)
    async with GpioInputs(device({"name": "ack", "pin": 17, "hold": 0.3}), rec, clock):
        pin.drive_low()  # a short press first: no held event
        clock.advance(0.1)
        pin.drive_high()
        clock.advance(0.05)
        check(await rec.next(), "ack", True, WALL0)
        check(await rec.next(), "ack", False, WALL0 + 0.1)
        clock.advance(1.0)
        pin.drive_low()  # a long press
        clock.advance(0.05)
        check(await rec.next(), "ack", True, WALL0 + 1.15)
        clock.advance(0.25)
        check(await rec.next(), "ack", True, WALL0 + 1.45, held=True)
        pin.drive_high()
        clock.advance(0.05)
        check(await rec.next(), "ack", False, WALL0 + 1.45)


async def test_chatter_within_debounce_gives_one_event_once_stable(factory: Any) -> None:
    clock, rec = ManualClock(), Recorder()
    pin = factory.pin(17)
    async with GpioInputs(device({"name": "call", "pin": 17}), rec, clock):
        for drive in [pin.drive_low, pin.drive_high, pin.drive_low, pin.drive_high]:
            drive()
            clock.advance(0.01)
        pin.drive_low()  # 5 edges in 0.04 s, ending pressed
        clock.advance(0.05)
        check(await rec.next(), "call", True, WALL0 + 0.04)
        pin.drive_high()
        clock.advance(0.05)
        # Any extra event from the chatter would have been queued before this one.
        check(await rec.next(), "call", False, WALL0 + 0.09)


async def test_a_glitch_shorter_than_debounce_is_not_reported(factory: Any) -> None:
    clock, rec = ManualClock(), Recorder()
    pin = factory.pin(17)
    async with GpioInputs(device({"name": "call", "pin": 17}), rec, clock):
        pin.drive_low()
        clock.advance(0.02)
        pin.drive_high()
        clock.advance(1.0)
        pin.drive_low()  # the real press
        clock.advance(0.05)
        check(await rec.next(), "call", True, WALL0 + 1.02)


async def test_normally_closed_contact_open_at_start_emits_one_event(factory: Any) -> None:
    rec = Recorder()
    # The mock line idles at its pull-up: an NC contact that is open (a cut wire, a fire panel
    # in alarm while the gateway restarted).
    cfg = device({"name": "fire", "pin": 22, "contact": "nc"}, {"name": "call", "pin": 17})
    clock = ManualClock()
    async with GpioInputs(cfg, rec, clock) as inputs:
        clock.advance(0.05)
        check(await rec.next(), "fire", True, WALL0)
        factory.pin(22).drive_low()
        clock.advance(0.05)
        check(await rec.next(), "fire", False, WALL0 + 0.05)  # nothing for the idle "call"
        assert not inputs.active("call")


async def test_button_pressed_during_restart_is_reported_at_open(factory: Any) -> None:
    clock, rec = ManualClock(), Recorder()
    pin = factory.pin(24)  # an externally driven line: pull none keeps the level we set
    pin.drive_low()
    cfg = device({"name": "call", "pin": 24, "pull": "none", "active_level": "low"})
    async with GpioInputs(cfg, rec, clock):
        clock.advance(0.05)
        check(await rec.next(), "call", True, WALL0)
        pin.drive_high()
        clock.advance(0.05)
        check(await rec.next(), "call", False, WALL0 + 0.05)


async def test_edges_from_another_thread_arrive_on_the_loop_thread(factory: Any) -> None:
    clock, rec = ThreadNotingClock(), Recorder()
    call, instant = factory.pin(17), factory.pin(27)

    def chatter_then_press() -> None:
        for _ in range(5):
            call.drive_low()
            call.drive_high()
        call.drive_low()
        instant.drive_low()  # no debounce: reported by the edge itself, not by a timer

    def release() -> None:
        call.drive_high()
        instant.drive_high()

    cfg = device(
        {"name": "call", "pin": 17, "debounce": 0.2}, {"name": "instant", "pin": 27, "debounce": 0}
    )
    async with GpioInputs(cfg, rec, clock):
        worker = threading.Thread(target=chatter_then_press, name="edge-driver")
        worker.start()
        worker.join()
        pressed = {(e.input, e.active) for e in [await rec.next(), await rec.next()]}
        releaser = threading.Thread(target=release, name="edge-driver")
        releaser.start()
        releaser.join()
        released = {(e.input, e.active) for e in [await rec.next(), await rec.next()]}
    assert pressed == {("call", True), ("instant", True)}
    assert released == {("call", False), ("instant", False)}
    assert {worker.ident, releaser.ident} <= clock.threads  # gpiozero called back on them
    assert rec.threads == {threading.get_ident()}  # emit ran on the loop's thread only


async def test_close_releases_every_pin(factory: Any) -> None:
    cfg = device({"name": "a", "pin": 17}, {"name": "b", "pin": 27})
    async with GpioInputs(cfg, Recorder()):
        assert factory.pin(17).when_changed is not None
    assert factory.pin(17).when_changed is None
    for pin in (17, 27):  # claimable again, so the devices were closed
        DigitalInputDevice(pin).close()


async def test_a_busy_pin_fails_the_open_and_releases_the_others(factory: Any) -> None:
    other = DigitalInputDevice(27)  # someone else holds GPIO27
    try:
        cfg = device({"name": "a", "pin": 17}, {"name": "b", "pin": 27})
        with pytest.raises(GpioUnavailable, match=r"'panel'.*'b' on GPIO27") as err:
            async with GpioInputs(cfg, Recorder()):
                pass
        assert isinstance(err.value, TransientError)
    finally:
        other.close()
    DigitalInputDevice(17).close()


# -- outputs --------------------------------------------------------------------------------------

OUTPUTS = (
    {"name": "siren", "pin": 5, "kind": "siren"},
    {"name": "strobe", "pin": 6, "kind": "strobe"},
    {"name": "relay", "pin": 13, "kind": "led", "active_high": False},
)


async def until(cond: Callable[[], bool]) -> None:
    """Poll ``cond``: a mock output pin changes on gpiozero's blink thread and signals nobody."""
    async with asyncio.timeout(5):
        while not cond():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def on(pin: Any) -> bool:
    """The pin's level (a call, so mypy does not narrow ``pin.state`` between checks)."""
    return bool(pin.state)


async def test_steady_then_silence(factory: Any) -> None:
    siren, strobe = factory.pin(5), factory.pin(6)
    async with GpioOutputs(device(outputs=OUTPUTS)) as outputs:
        assert (on(siren), on(strobe)) == (False, False)
        outputs.set("siren", "steady")
        assert on(siren)
        assert outputs.patterns == {"siren": "steady", "strobe": None, "relay": None}
        outputs.set("strobe", "fast")
        outputs.silence_all()
        assert (on(siren), on(strobe)) == (False, False)
        assert set(outputs.patterns.values()) == {None}
        outputs.set("siren", "steady")
    assert not on(siren)  # closing switches off what is still on


async def test_beep_toggles_on_gpiozero_timing_and_steady_stays_on(factory: Any) -> None:
    siren, relay = factory.pin(5), factory.pin(13)
    async with GpioOutputs(device(outputs=OUTPUTS)) as outputs:
        siren.clear_states()
        relay.clear_states()
        outputs.set("siren", "beep")
        outputs.set("relay", "steady")
        await until(lambda: len(siren.states) >= 3)
        outputs.set("siren", "beep")  # unchanged: a restart would switch on 0.8 s early
        assert not on(siren)
        await until(lambda: len(siren.states) >= 5)  # 1.1 s: on, off, on, off
        siren.assert_states_and_times(
            [(0.0, False), (0.0, True), (0.1, False), (0.9, True), (0.1, False)]
        )
        assert [p.state for p in relay.states] == [True, False]  # on (active low), no toggling
    assert not on(siren)  # closed switched off


async def test_fast_blink_toggles(factory: Any) -> None:
    strobe = factory.pin(6)
    async with GpioOutputs(device(outputs=OUTPUTS)) as outputs:
        strobe.clear_states()
        outputs.set("strobe", "fast")
        await until(lambda: len(strobe.states) >= 4)
        strobe.assert_states_and_times([(0.0, False), (0.0, True), (0.25, False), (0.25, True)])
        outputs.set("strobe", None)
        assert not on(strobe)


async def test_active_low_output_inverts_the_pin(factory: Any) -> None:
    relay = factory.pin(13)
    async with GpioOutputs(device(outputs=OUTPUTS)) as outputs:
        assert on(relay)  # off
        outputs.set("relay", "steady")
        assert not on(relay)
        outputs.set("relay", None)
        assert on(relay)
    assert on(relay)  # left off on close


async def test_unknown_output_or_pattern_is_refused(factory: Any) -> None:
    async with GpioOutputs(device(outputs=OUTPUTS)) as outputs:
        with pytest.raises(PermanentError, match="no open output 'horn'"):
            outputs.set("horn", "steady")
        with pytest.raises(ValueError, match="unknown pattern 'disco'"):
            outputs.set("siren", "disco")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("severity", "kind", "pattern"),
    [
        ("critical", "siren", "steady"),
        ("critical", "strobe", "fast"),
        ("critical", "led", "fast"),
        ("warning", "siren", "beep"),
        ("warning", "strobe", "slow"),
        ("warning", "led", "slow"),
        ("info", "siren", None),
        ("info", "strobe", None),
        ("info", "led", "slow"),
    ],
)
def test_pattern_for_severity(severity: str, kind: str, pattern: str | None) -> None:
    assert pattern_for(severity, kind) == pattern


@pytest.mark.parametrize(("severity", "kind"), [("major", "siren"), ("critical", "horn")])
def test_pattern_for_refuses_unknown_names(severity: str, kind: str) -> None:
    with pytest.raises(ValueError, match="no pattern"):
        pattern_for(severity, kind)


# -- GPIO is optional -----------------------------------------------------------------------------


def _on_a_pi() -> bool:
    model = Path("/proc/device-tree/model")
    return model.exists() and "Raspberry Pi" in model.read_text(errors="replace")


@pytest.mark.skipif(_on_a_pi(), reason="a Pi has real GPIO")
async def test_no_gpio_is_a_transient_error_without_warnings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    assert Device.pin_factory is None
    cfg = device({"name": "call", "pin": 17}, outputs=OUTPUTS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as pytest's filterwarnings, whatever its config
        with pytest.raises(GpioUnavailable, match="gpio device 'panel'") as err:
            async with GpioInputs(cfg, Recorder()):
                pass
        with pytest.raises(GpioUnavailable, match="gpio device 'panel'"):
            async with GpioOutputs(cfg):
                pass
    # Every factory was tried, and its reason kept (not raised as a warning mid-search).
    assert "Falling back from lgpio" in str(err.value)
    assert "Falling back from native" in str(err.value)
    assert isinstance(err.value, TransientError)
    assert Device.pin_factory is None


@pytest.mark.skipif(_on_a_pi(), reason="a Pi has real GPIO")
@pytest.mark.parametrize("name", ["native", "no-such-factory"])
async def test_a_factory_named_in_the_environment_that_cannot_load_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", name)
    assert Device.pin_factory is None
    with pytest.raises(GpioUnavailable, match=f"gpio device 'panel'.*{name}"):
        async with GpioOutputs(device(outputs=OUTPUTS)):
            pass
    assert Device.pin_factory is None


async def test_mock_kind_uses_the_installed_mock_factory(factory: Any) -> None:
    rec = Recorder()
    cfg = GpioDeviceConfig.model_validate(
        {"kind": "gpio", "id": "demo", "pin_factory": "mock", "inputs": [{"name": "b", "pin": 4}]}
    )
    async with GpioInputs(cfg, rec):
        factory.pin(4).drive_low()
        assert (await rec.next()).device == "demo"
