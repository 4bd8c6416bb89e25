"""``to_reading`` scales and judges raw values; ``Backoff`` paces retries. Both are pure."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config.modbus import PointConfig
from gateway.core.backoff import Backoff
from gateway.core.messages import Quality, Reading
from gateway.pipeline.scale import to_reading


def _pt(**fields: Any) -> PointConfig:
    return PointConfig.model_validate({"name": "p", "address": 0, "unit": "degC", **fields})


def test_missing_value_stays_missing_with_comm_error() -> None:
    reading = to_reading(_pt(scale=0.1, offset=5.0, range=[0, 10]), None)
    assert reading == Reading("p", None, "degC", Quality.COMM_ERROR)


@pytest.mark.parametrize("raw", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_become_missing_and_bad(raw: float) -> None:
    for point in (_pt(type="float32"), _pt(type="float32", scale=2.0, range=[-1, 1])):
        assert to_reading(point, raw) == Reading("p", None, "degC", Quality.BAD)


@pytest.mark.parametrize(
    ("raw", "fields", "expected"),
    [
        pytest.param(658, {"scale": 0.1}, 65.8, id="x0.1"),
        pytest.param(-101, {"type": "int16", "scale": 0.1}, -10.1, id="negative-x0.1"),
        pytest.param(100, {"scale": 0.5, "offset": -40.0}, 10.0, id="scale-and-offset"),
        pytest.param(3, {"offset": 273.15}, 276.15, id="offset-only"),
        pytest.param(1234, {"scale": 0.01}, 12.34, id="x0.01"),
        pytest.param(7, {"scale": -1.0}, -7.0, id="negative-scale"),
        pytest.param(23.1, {"type": "float32", "scale": 10.0}, 231.0, id="float-raw"),
    ],
)
def test_scale_and_offset_are_applied_and_rounded(
    raw: float, fields: dict[str, Any], expected: float
) -> None:
    reading = to_reading(_pt(**fields), raw)
    assert reading.value == expected  # exact: 0.1 * 658 is 65.80000000000001 before rounding
    assert reading.quality is Quality.GOOD
    assert (reading.name, reading.unit) == ("p", "degC")


def test_unscaled_integer_stays_an_integer() -> None:
    reading = to_reading(_pt(), 42)
    assert reading.value == 42
    assert type(reading.value) is int


@pytest.mark.parametrize(
    ("raw", "value", "quality"),
    [
        pytest.param(0, 0.0, Quality.GOOD, id="at-min"),
        pytest.param(1000, 100.0, Quality.GOOD, id="at-max"),
        pytest.param(1001, 100.1, Quality.BAD, id="above-max"),
        pytest.param(-1, -0.1, Quality.BAD, id="below-min"),
        pytest.param(5000, 500.0, Quality.BAD, id="far-above"),
    ],
)
def test_range_is_judged_on_the_scaled_value_and_kept_when_bad(
    raw: int, value: float, quality: Quality
) -> None:
    reading = to_reading(_pt(type="int16", scale=0.1, range=[0, 100]), raw)
    assert reading.value == value
    assert reading.quality is quality


@pytest.mark.parametrize("raw", [True, False])
def test_bool_passes_through_unscaled(raw: bool) -> None:
    point = PointConfig.model_validate(
        {"name": "door", "table": "coil", "address": 3, "type": "bool", "scale": 2.0}
    )
    reading = to_reading(point, raw)
    assert reading.value is raw
    assert reading.quality is Quality.GOOD
    assert reading.name == "door"


def test_string_passes_through() -> None:
    assert to_reading(_pt(), "fault") == Reading("p", "fault", "degC", Quality.GOOD)


@given(
    raw=st.floats(-1e9, 1e9, allow_nan=False),
    scale=st.floats(0.001, 1000).map(lambda s: round(s, 3)),
    offset=st.floats(-1000, 1000),
    bounds=st.tuples(st.floats(-1e6, 1e6), st.floats(0.001, 1e6)),
)
def test_finite_values_are_always_kept_and_judged_by_range(
    raw: float, scale: float, offset: float, bounds: tuple[float, float]
) -> None:
    low, width = bounds
    point = _pt(type="float32", scale=scale, offset=offset, range=[low, low + width])
    reading = to_reading(point, raw)
    assert isinstance(reading.value, float)
    assert math.isclose(reading.value, raw * scale + offset, rel_tol=1e-9, abs_tol=1e-6)
    inside = low <= reading.value <= low + width
    assert reading.quality is (Quality.GOOD if inside else Quality.BAD)


# -- backoff ------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(base=0.5, cap=5.0, jitter=0.0)
    assert [backoff.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_backoff_jitter_only_shortens_the_pause_by_at_most_its_fraction() -> None:
    backoff = Backoff(base=1.0, cap=8.0, jitter=0.25)
    pauses = [backoff.next() for _ in range(200)]
    nominal = [min(8.0, 2.0**i) for i in range(200)]
    assert all(0.75 * n <= p <= n for p, n in zip(pauses, nominal, strict=True))
    capped = pauses[10:]
    assert len(set(capped)) > 1  # jittered: thousands of gateways do not retry in step
