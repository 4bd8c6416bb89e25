"""The pure parts of welfare checks: which items are signs of life, the night window, wording."""

from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.alarms.model import Alarm, Notify, State
from gateway.alarms.wording import staff_message
from gateway.config.welfare import WelfareConfig
from gateway.core.access import AccessEvent, Kind
from gateway.core.messages import ContactEvent, DeviceStatus, Quality, Reading, Sample
from gateway.welfare.signs import Signs
from gateway.welfare.watch import Sign, Watch

TZ = ZoneInfo("Asia/Shanghai")
ME = "p1:ab12:" + "0" * 31 + "1"
OLD_ME = "p1:cd34:" + "0" * 31 + "1"  # the same resident under the key before a rotation
OTHER = "p1:ab12:" + "0" * 31 + "2"
CFG = WelfareConfig.model_validate(
    {
        "households": [
            {
                "id": "h1",
                "person": ME,
                "windows": [{"start": "22:00", "end": "08:00", "quiet": "12h"}],
                "signs": [
                    {"kind": "door", "door": "d1"},
                    {"kind": "button", "device": "b1", "inputs": ["fine"]},
                    {"kind": "point", "device": "wm", "point": "flow", "above": 0.5},
                ],
            },
            {"id": "h2", "signs": [{"kind": "point", "device": "wm", "point": "total"}]},
        ]
    }
)


def at(hour: int, minute: int = 0, day: int = 7) -> float:
    return datetime(2026, 12, day, hour, minute, tzinfo=TZ).timestamp()


def grant(person: str, ts: float, kind: Kind = "granted", previous: str = "") -> AccessEvent:
    return AccessEvent.build("t1", "d1", kind, ts, skew_limit=30, retention=60,
                             person=person, person_previous=previous,
                             reason="expired" if kind == "denied" else "")  # fmt: skip


def test_only_the_watched_persons_grants_and_the_listed_inputs_are_signs() -> None:
    signs = Signs(CFG, {"d1": "t1"})
    assert signs.sources == {"h1": frozenset({"t1", "b1", "wm"}), "h2": frozenset({"wm"})}
    assert signs.of(grant(ME, 1.0))[0] == [Sign("h1", 1.0, "door", "d1")]
    assert signs.of(grant(OTHER, 2.0, previous=ME))[0] == [Sign("h1", 2.0, "door", "d1")]
    assert signs.of(grant(OTHER, 3.0))[0] == []
    assert signs.of(grant(ME, 4.0, "denied"))[0] == []
    assert signs.of(ContactEvent("b1", "sos", True, 5.0))[0] == []
    assert signs.of(ContactEvent("b1", "fine", True, 6.0))[0] == [
        Sign("h1", 6.0, "button", "b1/fine")
    ]
    offline = AccessEvent.build("t1", "", "terminal_offline", 7.0, skew_limit=30, retention=60)
    assert signs.of(offline) == ([], [("t1", False, 7.0)])
    assert signs.of(DeviceStatus("wm", True, 8.0, "ok")) == ([], [("wm", True, 8.0)])


def test_a_point_counts_above_its_value_or_when_it_changes() -> None:
    signs = Signs(CFG, {})

    def sample(ts: float, flow: float, total: float, quality: Quality = Quality.GOOD) -> Sample:
        readings = (Reading("flow", flow, "m3/h", quality), Reading("total", total, "m3", quality))
        return Sample("wm", ts, readings)

    assert signs.of(sample(1.0, 0.0, 10.0))[0] == []  # the first total only records
    assert signs.of(sample(2.0, 0.0, 10.0))[0] == []
    assert signs.of(sample(3.0, 0.9, 10.0, Quality.BAD))[0] == []
    got = signs.of(sample(4.0, 0.9, 10.2))[0]
    assert got == [Sign("h1", 4.0, "point", "wm/flow"), Sign("h2", 4.0, "point", "wm/total")]


def test_the_night_window_has_its_own_limit() -> None:
    watch = Watch(CFG, "Asia/Shanghai", {"h1": frozenset({"t1"})}, at(9), max_step=600)
    watch.sign(Sign("h1", at(9), "door", "d1"))
    watch.sign(Sign("h2", at(9), "point", "wm/total"))
    t = at(9)
    raised = []
    while t < at(23):
        t += 600
        raised += [(v.household, datetime.fromtimestamp(v.ts, TZ).strftime("%H:%M"), v.limit)
                   for v in watch.tick(t)]  # fmt: skip
    # by day 24 h; from 22:00 12 h, and by then 13 h had passed without a sign
    assert raised == [("h1", "22:00", 43200.0)]
    assert watch.households["h1"].counted == 14 * 3600


def test_staff_read_a_welfare_check_in_their_language_and_local_time() -> None:
    alarm = Alarm(
        id="a1", cause="welfare/7-0304", rule="welfare", kind="welfare_check", device="7-0304",
        severity="warning", latched=False, ladder="welfare", message="no sign of life for 24.0 h",
        state=State.RAISED, active=True, raised_at=at(8, day=9), raised_mono=0.0, value=24.0,
        facts={"quiet_h": "24.0", "last_kind": "door", "last_source": "7-0304",
               "last_ts": repr(at(8, day=8))},
    )  # fmt: skip
    note = Notify(alarm, 0, ("guard",), False)
    title, body = staff_message(alarm, note, "huayuan-b7", "zh-CN", "Asia/Shanghai")
    assert title == (
        "【警告】关爱探访：已 24.0 小时无活动迹象；最后迹象：门禁 7-0304，"
        "2026年12月8日 08:00:00 (Asia/Shanghai) - 7-0304"
    )
    assert "确认告警：cgw alarms ack a1" in body
    title, _ = staff_message(alarm, note, "huayuan-b7", "en", "Asia/Shanghai")
    assert title == (
        "[WARNING] welfare check: no sign of life for 24.0 h; last sign: door 7-0304,"
        " Dec 8, 2026, 8:00:00\u202fAM (Asia/Shanghai) - 7-0304"
    )
