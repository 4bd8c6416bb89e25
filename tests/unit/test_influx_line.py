"""The InfluxDB sink's line protocol is the one influxdb-client's ``Point`` writes."""

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from influxdb_client.client.write import point as client
from influxdb_client.domain.write_precision import WritePrecision

from gateway.sinks.influx import line

_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=6)
_number = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False)
)


@given(
    measurement=_text.filter(lambda m: not m.startswith("#")),
    tags=st.lists(st.tuples(_text, _text), max_size=3, unique_by=lambda t: t[0]),
    fields=st.lists(st.tuples(_text, _number), min_size=1, max_size=4),
    ms=st.integers(0, 2**42),
)
def test_lines_match_the_client_library(
    measurement: str, tags: list[tuple[str, str]], fields: list[tuple[str, int | float]], ms: int
) -> None:
    point_cls: Any = client.Point  # untyped library: one Any at the boundary
    point = point_cls(measurement)
    for key, text in tags:
        point.tag(key, text)
    for name, value in fields:
        point.field(name, value)
    point.time(ms, WritePrecision.MS)
    assert line(measurement, tags, fields, ms) == point.to_line_protocol()


def test_a_reading_line() -> None:
    tags = (("device", "th 1"), ("gateway", "gw-1"), ("site", "s,1"))
    fields = (("temperature", 21.0), ("count", 3), ("rh", 45.5))
    assert (
        line("env", tags, fields, 1_800_000_000_000)
        == r"env,device=th\ 1,gateway=gw-1,site=s\,1 count=3i,rh=45.5,temperature=21 1800000000000"
    )
