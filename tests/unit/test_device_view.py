"""The device view the API, ``cgw devices`` and the console show: its exact shape."""

from gateway.core.commission import BlockRead, DeviceRead, Found, Guess, ScanReport
from gateway.core.devices import DeviceStates
from gateway.core.messages import Quality, Reading, Sample
from gateway.ops.device_view import device_view, read_view, scan_view

T = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def test_a_modbus_device_with_an_implausible_and_a_disabled_point() -> None:
    states = DeviceStates()
    states.register("th-1", "modbus", "rs485-1", "th-rs485")
    states.availability("th-1", True, T, "ok")
    readings = (
        Reading("humidity", 105.0, "%RH", Quality.BAD),
        Reading("temperature", None, "degC", Quality.COMM_ERROR),
    )
    states.sample(Sample("th-1", T + 30.25, readings))
    states.disable("th-1", "temperature", "exception 0x02 at holding 1")
    states.polled("th-1", 0.0125)
    states.error("th-1", "exception 0x02 at holding 1")
    assert device_view(states.snapshot()["th-1"]) == {
        "id": "th-1",
        "kind": "modbus",
        "bus": "rs485-1",
        "profile": "th-rs485",
        "online": True,
        "since": "2027-01-15T08:00:00.000Z",
        "reason": "ok",
        "points": [
            {
                "name": "humidity",
                "value": 105.0,
                "unit": "%RH",
                "quality": "bad",
                "ts": "2027-01-15T08:00:30.250Z",
                "implausible": True,
            }
        ],
        "disabled": {"temperature": "exception 0x02 at holding 1"},
        "counters": {"implausible": 1, "polls": 1, "latency_sum": 0.0125, "last_latency": 0.0125},
        "last_error": "exception 0x02 at holding 1",
    }


def test_a_device_of_another_kind_has_no_bus_and_an_unknown_since() -> None:
    states = DeviceStates()
    states.register("panel", "gpio")
    view = device_view(states.snapshot()["panel"])
    assert (view["bus"], view["profile"], view["online"], view["since"]) == (None, None, None, None)
    assert view["points"] == []


def test_a_read_shows_the_registers_only_when_asked() -> None:
    read = DeviceRead(
        "noise-1",
        "rs485-1",
        2,
        T,
        (Reading("noise", 25.0, "dB(A)", Quality.BAD),),
        (BlockRead("holding", 0, 1, ("noise",), (250,)),),
    )
    plain = read_view(read, raw=False)
    assert plain == {
        "device": "noise-1",
        "bus": "rs485-1",
        "unit": 2,
        "ts": "2027-01-15T08:00:00.000Z",
        "points": [
            {"name": "noise", "value": 25.0, "unit": "dB(A)", "quality": "bad", "implausible": True}
        ],
    }
    assert read_view(read, raw=True)["blocks"] == [
        {
            "table": "holding",
            "address": 0,
            "count": 1,
            "points": ["noise"],
            "registers": [250],
            "hex": ["0x00FA"],
            "error": None,
        }
    ]


def test_a_scan_cut_short_says_how_far_it_got() -> None:
    found = Found(2, "registers", (Guess("th-rs485", 2, 2, 2, 0), Guess("noise-rs485", 1, 1, 1, 0)))
    report = ScanReport(
        "rs485-1", (1, 2, 3), 247, (found, Found(3, "exception 0x01", ())), 0.31, 0.1
    )
    view = scan_view(report)
    assert (view["asked"], view["wanted"], view["complete"], view["last_unit"]) == (
        3,
        247,
        False,
        3,
    )
    assert view["found"][0]["profile"] == "th-rs485"
    assert view["found"][0]["candidates"][1] == {
        "profile": "noise-rs485",
        "score": 1,
        "matched": 1,
        "checks": 1,
        "unanswered": 0,
    }
    assert view["found"][1] == {
        "unit": 3,
        "answer": "exception 0x01",
        "profile": "unknown",
        "candidates": [],
    }
