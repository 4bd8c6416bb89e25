"""The response report's figure against the plan's 8 minutes."""

from typing import Any

from gateway.alarms.report import ACK_TARGET_S, response_figures


def test_the_share_within_8_minutes_counts_unacknowledged_alarms_against_it() -> None:
    alarms: list[dict[str, Any]] = [
        {"raised_at": 0.0, "acked_at": 30.0},  # answered in 30 s
        {"raised_at": 0.0, "acked_at": ACK_TARGET_S},  # exactly on time still counts
        {"raised_at": 0.0, "acked_at": ACK_TARGET_S + 1},  # late
        {"raised_at": 0.0, "acked_at": None, "cleared_at": 5.0},  # never answered
    ]
    figures = response_figures(alarms)
    assert figures["acknowledged"] == 3
    assert figures["within_target"] == 2
    assert figures["within_target_share"] == 0.5
    assert figures["target_s"] == 480.0
    assert response_figures([])["within_target_share"] is None
