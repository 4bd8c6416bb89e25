"""The alarm lifecycle over a simulated clock: escalation timing, latching, ack, restart."""

import copy
import json
from typing import Any

import pytest

from gateway.alarms.lifecycle import Lifecycle, LifecycleError
from gateway.alarms.model import Condition, Notify, State
from gateway.config.alarms import AlarmsConfig

LADDERS = [
    {
        "id": "default",
        "renotify": 60,
        "tiers": [
            {"after": 0, "channels": ["guard"]},
            {"after": 120, "channels": ["manager"]},
            {"after": 300, "channels": ["platform"]},
        ],
    },
    {"id": "quiet", "renotify": 0, "tiers": [{"after": 0, "channels": ["log"]}]},
]


def lifecycle(**kw: Any) -> Lifecycle:
    return Lifecycle(AlarmsConfig.model_validate({"ladders": LADDERS, **kw}))


def sos(active: bool = True, ts: float = 1000.0, cause: str = "sos/btn/b1") -> Condition:
    return Condition(
        cause,
        "sos",
        "contact",
        "btn",
        active,
        "critical",
        True,
        "default",
        "emergency input b1 pressed",
        ts,
        active,
    )


def pm(
    active: bool = True, ts: float = 1000.0, device: str = "pm-1", ladder: str = "default"
) -> Condition:
    return Condition(
        f"pm/{device}/pm25",
        "pm",
        "threshold",
        device,
        active,
        "warning",
        False,
        ladder,
        "pm25 80 > 75",
        ts,
        80.0,
    )


def rungs(notes: list[Notify]) -> list[tuple[int, tuple[str, ...], bool]]:
    return [(n.tier, n.channels, n.repeat) for n in notes]


def run_clock(lc: Lifecycle, until: float, step: float = 1.0) -> list[tuple[float, Notify]]:
    out = []
    t = 0.0
    while t <= until:
        out += [(t, n) for n in lc.tick(t)]
        t += step
    return out


def test_raise_notifies_the_first_rung_at_once() -> None:
    lc = lifecycle()
    transitions, notes = lc.on_condition(sos(), mono=0.0)
    assert [(t.previous, t.alarm.state) for t in transitions] == [(None, State.RAISED)]
    assert rungs(notes) == [(0, ("guard",), False)]


def test_escalation_ladder_fires_each_rung_at_its_time_and_repeats() -> None:
    lc = lifecycle()
    lc.on_condition(sos(), mono=0.0)
    timeline = [(t, n.tier, n.repeat) for t, n in run_clock(lc, 400)]
    # rung 1 at 120 s, rung 2 at 300 s; the highest rung reached repeats every 60 s between
    assert timeline == [
        (60, 0, True),
        (120, 1, False),
        (180, 1, True),
        (240, 1, True),
        (300, 2, False),
        (360, 2, True),
    ]
    # a reminder goes to every rung told so far, not only the highest
    reminders = {t: n.channels for t, n in run_clock(lifecycle_raised(), 400) if n.repeat}
    assert reminders == {
        60: ("guard",),
        180: ("guard", "manager"),
        240: ("guard", "manager"),
        360: ("guard", "manager", "platform"),
    }


def lifecycle_raised() -> Lifecycle:
    lc = lifecycle()
    lc.on_condition(sos(), mono=0.0)
    return lc


def test_acknowledge_stops_escalation_and_records_time_to_ack() -> None:
    lc = lifecycle()
    (raised,), _ = lc.on_condition(sos(ts=1000.0), mono=0.0)
    assert run_clock(lc, 100)[0][0] == 60
    out = lc.acknowledge(raised.alarm.id, "guard-wang", wall=1000.0 + 101)
    assert [(t.previous, t.alarm.state) for t in out] == [(State.RAISED, State.ACKNOWLEDGED)]
    assert out[0].alarm.time_to_ack == 101
    assert out[0].alarm.acked_by == "guard-wang"
    assert [n for t, n in run_clock(lc, 1000) if t > 101] == []
    assert lc.next_deadline() is None


def test_notified_moves_raised_to_notified_once() -> None:
    lc = lifecycle()
    (raised,), _ = lc.on_condition(pm(), mono=0.0)
    first = lc.notified(raised.alarm.id, wall=1001)
    assert [(t.previous, t.alarm.state) for t in first] == [(State.RAISED, State.NOTIFIED)]
    assert lc.notified(raised.alarm.id, wall=1002) == []
    assert first[0].alarm.notified_at == 1001


def test_latched_alarm_stays_after_release_until_ack_and_reset() -> None:
    lc = lifecycle()
    (raised,), _ = lc.on_condition(sos(), mono=0.0)
    aid = raised.alarm.id
    with pytest.raises(LifecycleError, match="still active"):
        lc.reset(aid, "guard", wall=1001)
    released, _ = lc.on_condition(sos(active=False, ts=1002), mono=2.0)
    assert released[0].alarm.state is State.RAISED  # released, still open
    assert not released[0].alarm.active
    assert aid in lc.alarms
    assert rungs(lc.tick(120.0))[-1] == (1, ("manager",), False)  # still escalating
    out = lc.reset(aid, "guard", wall=1200)
    assert [t.alarm.state for t in out] == [State.ACKNOWLEDGED, State.CLEARED]
    assert out[-1].alarm.cleared_at == 1200
    assert aid not in lc.alarms


def test_non_latched_alarm_clears_on_return_to_normal_even_unacked() -> None:
    lc = lifecycle()
    lc.on_condition(pm(), mono=0.0)
    (cleared,), _ = lc.on_condition(pm(active=False, ts=1500), mono=500.0)
    assert cleared.alarm.state is State.CLEARED
    assert cleared.alarm.time_to_ack is None
    assert lc.alarms == {}
    assert lc.tick(1000.0) == []


def test_one_alarm_per_cause_repeats_are_counted() -> None:
    lc = lifecycle()
    (raised,), _ = lc.on_condition(sos(), mono=0.0)
    lc.on_condition(sos(active=False), mono=1.0)
    again, notes = lc.on_condition(sos(), mono=2.0)
    lc.on_condition(sos(), mono=3.0)  # still active: not another onset
    assert len(lc.alarms) == 1
    assert again[0].alarm.id == raised.alarm.id
    assert lc.alarms[raised.alarm.id].repeats == 1
    assert notes == []


def test_storm_control_limits_new_alarms_per_device_but_never_emergencies() -> None:
    lc = lifecycle(storm={"per_device": 3, "window": 60})
    raised = 0
    for i in range(10):
        cond = Condition(
            f"r{i}/dev",
            f"r{i}",
            "threshold",
            "dev",
            True,
            "warning",
            False,
            "default",
            "x",
            1000.0 + i,
        )
        t, _ = lc.on_condition(cond, mono=float(i))
        raised += len(t)
    assert raised == 3
    assert lc.suppressed == 7
    t, _ = lc.on_condition(sos(cause="sos/dev/b1"), mono=11.0)  # latched: always gets through
    assert len(t) == 1
    # another device is not affected, and the window slides
    assert len(lc.on_condition(pm(device="other"), mono=12.0)[0]) == 1
    later = Condition(
        "late/dev", "late", "threshold", "dev", True, "warning", False, "default", "x", 2000.0
    )
    assert len(lc.on_condition(later, mono=70.0)[0]) == 1


def test_ladder_without_renotify_only_fires_its_rungs() -> None:
    lc = lifecycle()
    _, notes = lc.on_condition(pm(ladder="quiet"), mono=0.0)
    assert rungs(notes) == [(0, ("log",), False)]
    assert run_clock(lc, 1000) == []


def test_restart_mid_lifecycle_keeps_alarms_and_escalation_timing() -> None:
    lc = lifecycle()
    (latched,), _ = lc.on_condition(sos(ts=1000.0), mono=50.0)
    (acked,), _ = lc.on_condition(pm(ts=1000.0), mono=50.0)
    lc.acknowledge(acked.alarm.id, "guard", wall=1010.0)
    lc.tick(50.0 + 130)  # rung 1 of the emergency went out
    saved = json.loads(json.dumps(lc.dump()))  # what the store keeps

    after = lifecycle()
    after.load(saved, wall=1000.0 + 200, mono=7.0)  # new process: monotonic restarted
    assert set(after.alarms) == {latched.alarm.id, acked.alarm.id}
    assert after.alarms[acked.alarm.id].state is State.ACKNOWLEDGED
    em = after.alarms[latched.alarm.id]
    assert (em.state, em.tier, em.latched) == (State.RAISED, 1, True)
    # 200 s after raising: rung 2 is due at 300 s, i.e. 100 s after the restart
    assert after.next_deadline() == 7.0  # a repeat of rung 1 first, at once
    notes = run_clock_from(after, 7.0, 7.0 + 101)
    assert [(round(t - 7.0), n.tier, n.repeat) for t, n in notes] == [
        (0, 1, True),
        (60, 1, True),
        (100, 2, False),
    ]
    # ids keep counting past the restored ones only if the store supplies them; the
    # causes stay bound: a new press of the same button is a repeat, not a second alarm
    t, _ = after.on_condition(sos(ts=1300.0), mono=120.0)
    assert t[0].alarm.id == latched.alarm.id


def run_clock_from(lc: Lifecycle, start: float, until: float) -> list[tuple[float, Notify]]:
    out = []
    t = start
    while t <= until:
        out += [(t, n) for n in lc.tick(t)]
        t += 1.0
    return out


def test_unknown_alarm_is_a_clear_error() -> None:
    lc = lifecycle()
    with pytest.raises(LifecycleError, match="no open alarm 'nope'"):
        lc.acknowledge("nope", "x", 0.0)


def test_an_alarm_row_of_an_older_release_is_restored_to_wait_for_staff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The oldest store kept id, state and severity only; the engine crashed on it (KeyError)
    at every start. An open alarm from before an upgrade must reach staff, not stop the box."""
    after = lifecycle()
    after.load([{"id": "a1", "state": "raised", "severity": "warning"}], wall=5000.0, mono=3.0)
    alarm = after.alarms["a1"]
    assert (alarm.state, alarm.latched, alarm.severity, alarm.raised_at) == (
        State.RAISED,
        True,
        "warning",
        5000.0,
    )
    assert alarm.cause == "restored/a1"
    assert "restored from an older store" in alarm.message
    assert "alarm a1 from an older store lacks" in caplog.text
    assert after.next_deadline() == 3.0  # its first rung goes out at once
    after.acknowledge("a1", "guard", wall=5010.0)
    assert "a1" in after.alarms  # latched: staff close it with a reset once checked
    after.reset("a1", "guard", wall=5020.0)
    assert "a1" not in after.alarms


def test_the_log_gets_who_answered_a_welfare_check_never_the_note() -> None:
    from gateway.alarms.model import Transition
    from gateway.alarms.records import journal_note

    lc = lifecycle()
    cond = Condition("welfare/h1", "welfare", "welfare_check", "h1", True, "warning", False,
                     "default", "no sign of life for 25 h; last sign: door", 1000.0)  # fmt: skip
    (raised,), _ = lc.on_condition(cond, mono=1.0)
    answered = Transition(raised.alarm, State.RAISED, "cleared: answered by 王保安: 女儿接去住院")
    assert journal_note(answered) == "cleared: answered by 王保安"
    assert journal_note(raised) == "no sign of life for 25 h; last sign: door"  # as it was
    other = copy.copy(raised.alarm)
    other.kind = "contact"
    assert journal_note(Transition(other, None, "answered by 王保安: x")) == "answered by 王保安: x"
