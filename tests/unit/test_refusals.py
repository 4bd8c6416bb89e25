"""Which row a broker refuses by closing the connection: the evidence ``Refusals`` weighs."""

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.messages import Lane
from gateway.sinks.refusals import LIMIT, Key, Loss, Refusals

A, T = Lane.ALARM, Lane.TELEMETRY
REFUSED: Key = (A, 7)


def closed(*pending: Key, published: Key | None = None) -> Loss:
    """The broker's side closed the connection with ``pending`` awaiting their PUBACK."""
    return Loss(True, pending, published if published is not None else pending[-1])


def narrow(r: Refusals) -> bool:
    """``r.narrow``, read afresh (mypy keeps a property's value across calls)."""
    return r.narrow


def test_a_refused_alarm_among_telemetry_is_narrowed_down_then_dead_lettered() -> None:
    r = Refusals()
    telemetry = [(T, n) for n in range(100, 120)]
    assert r.ended(closed(REFUSED, *telemetry)) is None
    assert not narrow(r)  # once is an ordinary lost link
    assert r.ended(closed(REFUSED, *telemetry)) is None
    assert narrow(r)  # the same head twice: one row at a time from now on
    for _ in range(LIMIT - 1):
        assert r.ended(closed(REFUSED)) is None
    assert r.ended(closed(REFUSED)) == REFUSED
    assert narrow(r)  # the telemetry in flight with it is still to be cleared, one at a time
    for key in telemetry:
        r.acked(key)
    assert not narrow(r)
    assert r.strikes(REFUSED) == 0


def test_a_row_alone_in_flight_is_struck_at_once_and_kept_alone() -> None:
    r = Refusals()
    assert r.ended(closed(REFUSED)) is None
    assert (r.strikes(REFUSED), r.narrow) == (1, True)
    r.acked(REFUSED)  # it went through alone: the close was the link's, not the broker's
    assert (r.strikes(REFUSED), r.narrow) == (0, False)


def test_the_sink_ending_a_connection_is_no_evidence_and_breaks_the_series() -> None:
    r = Refusals()
    for _ in range(LIMIT - 1):
        assert r.ended(closed(REFUSED)) is None
    # the PUBACK watchdog (a hung broker, a black hole) or a stop ended it, the row in flight
    assert r.ended(Loss(False, [REFUSED], REFUSED)) is None
    assert r.strikes(REFUSED) == 0
    for _ in range(LIMIT - 1):
        assert r.ended(closed(REFUSED)) is None
    assert r.ended(closed(REFUSED)) == REFUSED


def test_a_row_handed_out_but_not_yet_published_is_not_struck() -> None:
    r = Refusals()
    for _ in range(2 * LIMIT):
        assert r.ended(Loss(True, [REFUSED], published=(A, 6))) is None
    assert r.strikes(REFUSED) == 0


def test_a_close_with_nothing_or_another_head_in_flight_breaks_the_narrowing_series() -> None:
    r = Refusals()
    assert r.ended(closed((T, 1), (T, 2))) is None
    assert r.ended(Loss(True, [])) is None
    assert r.ended(closed((T, 1), (T, 2))) is None
    assert not narrow(r)
    assert r.ended(closed((T, 3), (T, 4))) is None
    assert not narrow(r)


def test_a_suspect_is_cleared_by_a_later_row_of_its_lane() -> None:
    r = Refusals()
    r.ended(closed((T, 1), (T, 2), (T, 3)))
    r.ended(closed((T, 1), (T, 2), (T, 3)))
    assert narrow(r)
    r.acked((T, 5))  # 1-3 were evicted meanwhile: 5 went out after them
    assert not narrow(r)


@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.lists(st.tuples(st.sampled_from(list(Lane)), st.integers(1, 4)), max_size=4),
            st.integers(0, 3),
        ),
        max_size=40,
    )
)
def test_no_row_is_dead_lettered_without_limit_lone_closes_in_a_row(
    ends: list[tuple[bool, list[Key], int]],
) -> None:
    """Closes with several rows in flight, closes by the sink, rows not yet published: none
    of them convicts a row; only ``LIMIT`` closes in a row with that row alone do."""
    r = Refusals()
    alone: dict[Key, int] = {}
    for by_peer, rows, pick in ends:
        pending = sorted(set(rows))
        published = pending[pick % len(pending)] if pending else None
        lone = by_peer and len(pending) == 1 and published == pending[0]
        for key in pending:
            if lone:
                alone[key] = alone.get(key, 0) + 1
            elif not by_peer:
                alone[key] = 0
        convicted = r.ended(Loss(by_peer, pending, published))
        if convicted is not None:
            assert lone
            assert alone[convicted] >= LIMIT
            alone[convicted] = 0
