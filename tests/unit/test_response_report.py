"""The response report's figures against the answer targets, and the alarms that missed them."""

from typing import Any

from gateway.alarms.report import ACK_TARGET_S, MAX_LATE, Targets, response_figures, response_of
from gateway.config.alarms import AlarmsConfig


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


def alarm(n: int, severity: str, ladder: str, raised: float, **times: Any) -> dict[str, Any]:
    """An alarm body as the table keeps it."""
    body = {"id": f"a{n}", "device": f"dev-{n}", "severity": severity, "ladder": ladder}
    return (
        body | {"raised_at": raised, "acked_at": None, "acked_by": "", "cleared_at": None} | times
    )


def test_targets_per_severity_the_late_list_and_ladders_that_ran_out() -> None:
    cfg = AlarmsConfig.model_validate(
        {
            "ack_targets": {"critical": 300, "warning": 900},  # info keeps 480
            "ladders": [
                {"id": "default", "tiers": [{"after": 0, "channels": ["log"]},
                                            {"after": 120, "channels": ["log"]},
                                            {"after": 300, "channels": ["log"]}]},
                {"id": "quiet", "tiers": [{"after": 0, "channels": ["log"]}]},
            ],
        }
    )  # fmt: skip
    now = 4600.0
    alarms = [
        alarm(1, "critical", "default", 1000.0, acked_at=1100.0, acked_by="wang"),  # in time
        alarm(2, "critical", "default", 1010.0, acked_at=1410.0, acked_by="li"),  # late; top rung
        alarm(3, "warning", "default", 1020.0, acked_at=1420.0, acked_by="li"),  # in its 900 s
        alarm(4, "warning", "quiet", 1030.0, cleared_at=1090.0),  # cleared unanswered: never
        alarm(6, "info", "default", 1040.0),  # open for an hour: late, ran out
        alarm(5, "critical", "default", now - 200),  # open 200 s: not late yet
    ]
    report = response_of(alarms, Targets.of(cfg), now)
    picked = ("alarms", "acknowledged", "unacknowledged_open", "target_s", "within_target",
              "within_target_share", "escalation_exhausted")  # fmt: skip
    assert {k: [report[s][k] for s in ("all", "critical", "warning", "info")] for k in picked} == {
        "alarms": [6, 3, 2, 1],
        "acknowledged": [3, 2, 1, 0],
        "unacknowledged_open": [2, 1, 0, 1],
        "target_s": [None, 300.0, 900.0, 480.0],  # the mix has no one target
        "within_target": [2, 1, 1, 0],
        "within_target_share": [0.3333, 0.3333, 0.5, 0.0],
        "escalation_exhausted": [3, 1, 1, 1],  # a2, a3, a6: unanswered when 300 s came
    }
    assert report["late"] == [
        {"id": "a2", "device": "dev-2", "severity": "critical",
         "raised_at": "1970-01-01T00:16:50.000Z", "time_to_ack_s": 400.0, "acked_by": "li"},
        {"id": "a4", "device": "dev-4", "severity": "warning",
         "raised_at": "1970-01-01T00:17:10.000Z", "time_to_ack_s": None, "acked_by": None},
        {"id": "a6", "device": "dev-6", "severity": "info",
         "raised_at": "1970-01-01T00:17:20.000Z", "time_to_ack_s": None, "acked_by": None},
    ]  # fmt: skip
    assert report["late_total"] == 3


def test_the_late_list_is_bounded_and_counts_them_all() -> None:
    alarms = [alarm(n, "critical", "default", float(n)) for n in range(MAX_LATE + 5)]
    report = response_of(alarms, Targets(), None)  # no "now": every open alarm is late
    assert (len(report["late"]), report["late_total"]) == (MAX_LATE, MAX_LATE + 5)
    assert report["late"][0]["id"] == "a0"
