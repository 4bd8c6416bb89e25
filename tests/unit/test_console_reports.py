"""Which local days a report query of the console asks for (``gateway.console.reports``)."""

from datetime import date

import pytest

from gateway.console.reports import BadPeriod, resolve


def test_this_month_runs_from_its_first_to_today_and_is_the_default() -> None:
    today = date(2026, 12, 7)
    assert resolve({}, today) == (date(2026, 12, 1), today, None)
    assert resolve({"period": "this_month", "by": "day"}, today) == (
        date(2026, 12, 1), today, "day",
    )  # fmt: skip


def test_last_month_is_the_whole_calendar_month_before_across_a_year_and_a_short_month() -> None:
    assert resolve({"period": "last_month"}, date(2027, 1, 1)) == (
        date(2026, 12, 1), date(2026, 12, 31), None,
    )  # fmt: skip
    assert resolve({"period": "last_month", "by": "month"}, date(2028, 3, 31)) == (
        date(2028, 2, 1), date(2028, 2, 29), "month",
    )  # fmt: skip


def test_dates_win_over_a_period_and_are_checked() -> None:
    query = {"period": "last_month", "from": "2026-11-20", "to": "2026-11-30"}
    assert resolve(query, date(2026, 12, 7)) == (date(2026, 11, 20), date(2026, 11, 30), None)
    with pytest.raises(BadPeriod, match="before it starts"):
        resolve({"from": "2026-11-30", "to": "2026-11-20"}, date(2026, 12, 7))
    with pytest.raises(BadPeriod, match='"to" must be a date'):
        resolve({"from": "2026-11-30"}, date(2026, 12, 7))
