"""Health, the status line and metrics, rendered from snapshots made by hand (no runtime)."""

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.core.snapshots import (
    AlarmsSnapshot,
    ApiSnapshot,
    ChannelState,
    CommandsSnapshot,
    ConsoleSnapshot,
    DeviceSnapshot,
    InputsSnapshot,
    InputState,
    LinkageSnapshot,
    ModemState,
    OpenAlarm,
    SinkSnapshot,
    StoreSnapshot,
    StoreStats,
)
from gateway.ops.health import health, status_line
from gateway.ops.metrics import registry_for, render
from gateway.ops.snapshot import GatewayInfo, GatewaySnapshot

MIB = 1024**2


def healthy(store_path: Path = Path("/nonexistent/buffer.db")) -> GatewaySnapshot:
    """A gateway with every optional part configured and everything up."""
    return GatewaySnapshot(
        gateway=GatewayInfo("s1", "gw1", "1.2.3", 3725.06, True, 2, 1, True),
        store=StoreSnapshot(
            StoreStats({"mqtt": 7, "influx": 3}, MIB, 16 * MIB, 4, 5, 1, 2), store_path
        ),
        alarms=AlarmsSnapshot(True, (), {"critical": (2, 30.5)}),
        mqtt=SinkSnapshot(True, "", delivered=120, reconnects=1),
        influx=SinkSnapshot(
            True, "", delivered=80, dead_lettered=2, retries=3, dead_by_lane={"telemetry": 2}
        ),
        influx_configured=True,
        api=ApiSnapshot("127.0.0.1:8080", True),
        inputs=InputsSnapshot(
            {"local_broker:buttons": True}, {"mqtt_buttons": {"bad_json": 2, "unknown": 1}}
        ),
        commands=CommandsSnapshot(True, 4, 1, {"bad_signature": 3}, 0),
        linkage=LinkageSnapshot(False, 0),
        devices=(
            DeviceSnapshot("dev-1", True, 10, 1, 0.5, 0.04, implausible=3),
            DeviceSnapshot(
                "dev-2",
                False,
                6,
                6,
                1.5,
                0.25,
                reason="cannot connect to bus rs485-1 (/dev/ttyUSB0): /dev/ttyUSB0: No such file"
                " or directory (ENOENT)",
            ),
            DeviceSnapshot("dev-3", None, 0, 0, 0.0, 0.0),
        ),
    )


def test_health_of_a_healthy_gateway_is_ok_and_says_what_each_component_does() -> None:
    code, doc = health(healthy())
    assert (code, doc["status"], doc["failing"]) == (200, "ok", [])
    assert doc["gateway"] == {"site_id": "s1", "gateway_id": "gw1", "version": "1.2.3",
                              "uptime_s": 3725.1}  # fmt: skip
    assert doc["components"] == {
        "store": {"ok": True, "detail": "1.0 MiB of 16.0 MiB used"},
        "alarms": {"ok": True, "detail": "0 open"},
        "api": {"ok": True, "detail": "listening on 127.0.0.1:8080"},
        "sink:mqtt": {"ok": True, "detail": "connected"},
        "sink:influx": {"ok": True, "detail": "writing"},
        "local_broker:buttons": {"ok": True, "detail": "subscribed"},
    }
    assert list(doc["components"])[:2] == ["store", "alarms"]
    assert doc["devices"] == {"dev-1": "online", "dev-2": "offline", "dev-3": "unknown"}
    assert doc["offline"] == {  # why, with the path and errno of a serial port that will not open
        "dev-2": "cannot connect to bus rs485-1 (/dev/ttyUSB0): /dev/ttyUSB0: No such file or"
        " directory (ENOENT)"
    }
    assert doc["backlog"] == {"mqtt": 7, "influx": 3}
    assert doc["alarms"] == {"open": 0, "unacknowledged": 0, "worst": None}
    assert (doc["uplink"], doc["reloads"]) == ("up", {"ok": 2, "refused": 1})


def test_health_while_starting_is_503_and_names_what_is_not_up_yet() -> None:
    snap = dataclasses.replace(
        healthy(),
        gateway=dataclasses.replace(healthy().gateway, ready=False),
        alarms=AlarmsSnapshot(False, (), {}),
        mqtt=None,
        influx=None,
        api=ApiSnapshot("127.0.0.1:8080", False),
    )
    code, doc = health(snap)
    assert (code, doc["status"]) == (503, "starting")
    assert doc["failing"] == ["alarms", "api", "sink:influx", "sink:mqtt"]
    comps = doc["components"]
    assert comps["alarms"]["detail"] == comps["sink:mqtt"]["detail"] == "starting"
    assert comps["api"]["detail"] == "not listening"
    assert comps["sink:influx"]["detail"] == "failing: no write yet"
    assert doc["uplink"] == "down"


def test_health_when_running_but_cut_off_is_degraded_with_the_reasons() -> None:
    snap = dataclasses.replace(
        healthy(),
        mqtt=SinkSnapshot(False, "connection refused", delivered=0, reconnects=3),
        influx=SinkSnapshot(False, "HTTP 503", delivered=0),
        inputs=InputsSnapshot({"local_broker:buttons": False}, {}),
    )
    code, doc = health(snap)
    assert (code, doc["status"]) == (503, "degraded")
    assert doc["failing"] == ["local_broker:buttons", "sink:influx", "sink:mqtt"]
    comps = doc["components"]
    assert comps["sink:mqtt"]["detail"] == "unreachable: connection refused"
    assert comps["sink:influx"]["detail"] == "failing: HTTP 503"
    assert comps["local_broker:buttons"]["detail"] == "not connected"
    assert doc["uplink"] == "down"


def test_health_of_a_store_on_a_full_disk_is_degraded_and_says_alarms_wait_in_memory() -> None:
    stats = StoreStats({"mqtt": 7}, MIB, 16 * MIB, 4, 5, 1, 2, problem="disk full (no space)")
    snap = dataclasses.replace(healthy(), store=StoreSnapshot(stats, Path("/x/buffer.db")))
    code, doc = health(snap)
    assert (code, doc["status"], doc["failing"]) == (503, "degraded", ["store"])
    assert doc["components"]["store"] == {
        "ok": False,
        "detail": "not writable: disk full (no space); alarms wait in memory",
    }
    text = render(registry_for(lambda: snap)).decode()
    assert "cgw_store_writable 0.0" in text
    assert "cgw_store_writable 1.0" in render(registry_for(healthy)).decode()


def test_health_leaves_out_what_is_not_configured() -> None:
    snap = dataclasses.replace(
        healthy(), influx=None, influx_configured=False, api=None, inputs=InputsSnapshot({}, {})
    )
    _, doc = health(snap)
    assert list(doc["components"]) == ["store", "alarms", "sink:mqtt"]


def test_health_counts_unacknowledged_alarms_and_names_the_worst_of_them() -> None:
    alarms = (
        OpenAlarm("a1", "critical", unacknowledged=False),  # taken on: not the worst any more
        OpenAlarm("a2", "warning", unacknowledged=True),
        OpenAlarm("a3", "info", unacknowledged=True),
    )
    _, doc = health(dataclasses.replace(healthy(), alarms=AlarmsSnapshot(True, alarms, {})))
    assert doc["alarms"] == {"open": 3, "unacknowledged": 2, "worst": "warning"}
    assert doc["components"]["alarms"]["detail"] == "3 open"


def test_status_line_sums_up_devices_uplink_backlog_and_alarms() -> None:
    snap = healthy()
    assert status_line(snap) == "1/3 devices online, uplink up, backlog 7, 0 open alarms"
    one = AlarmsSnapshot(True, (OpenAlarm("a", "info", True),), {})
    down = dataclasses.replace(snap, mqtt=None, alarms=one)
    assert status_line(down) == "1/3 devices online, uplink down, backlog 7, 1 open alarms"


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(snapshot: Callable[[], GatewaySnapshot]) -> Samples:
    """Every sample of one scrape, by name and labels."""
    text = render(registry_for(snapshot)).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_metrics_render_every_figure_of_the_snapshot(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    db.write_bytes(b"x" * 4096)
    Path(f"{db}-wal").write_bytes(b"x" * 1000)
    got = scrape(lambda: healthy(db))
    expected: list[tuple[str, dict[str, str], float]] = [
        ("cgw_info", {"site": "s1", "gateway": "gw1", "version": "1.2.3"}, 1),
        ("cgw_ready", {}, 1),
        ("cgw_device_online", {"device": "dev-1"}, 1),
        ("cgw_device_online", {"device": "dev-2"}, 0),
        ("cgw_device_polls_total", {"device": "dev-2"}, 6),
        ("cgw_device_poll_failures_total", {"device": "dev-2"}, 6),
        ("cgw_device_poll_seconds_total", {"device": "dev-1"}, 0.5),
        ("cgw_device_poll_latency_seconds", {"device": "dev-2"}, 0.25),
        ("cgw_device_implausible_total", {"device": "dev-1"}, 3),
        ("cgw_device_implausible_total", {"device": "dev-2"}, 0),
        ("cgw_sink_backlog_rows", {"sink": "influx"}, 3),
        ("cgw_sink_connected", {"sink": "mqtt"}, 1),
        ("cgw_sink_delivered_total", {"sink": "mqtt"}, 120),
        ("cgw_sink_delivered_total", {"sink": "influx"}, 80),
        ("cgw_sink_reconnects_total", {"sink": "mqtt"}, 1),
        ("cgw_sink_dead_lettered_total", {"sink": "influx", "lane": "telemetry"}, 2),
        ("cgw_sink_retries_total", {"sink": "influx"}, 3),
        ("cgw_store_used_bytes", {}, MIB),
        ("cgw_store_quota_bytes", {}, 16 * MIB),
        ("cgw_store_evicted_total", {}, 4),
        ("cgw_store_dropped_total", {}, 5),
        ("cgw_store_quarantined_total", {}, 1),
        ("cgw_store_purged_total", {}, 2),
        ("cgw_store_file_bytes", {}, 5096),
        ("cgw_alarms_open", {"severity": "critical"}, 0),
        ("cgw_alarm_acknowledged_total", {"severity": "critical"}, 2),
        ("cgw_alarm_time_to_ack_seconds_total", {"severity": "critical"}, 30.5),
        ("cgw_alarm_acknowledged_total", {"severity": "info"}, 0),
        ("cgw_input_rejected_total", {"input": "mqtt_buttons", "reason": "bad_json"}, 2),
        ("cgw_commands_executed_total", {}, 4),
        ("cgw_commands_unaudited_total", {}, 1),
        ("cgw_commands_rejected_total", {"reason": "bad_signature"}, 3),
        ("cgw_fire_linkage_active", {}, 0),
        ("cgw_fire_linkage_unlocks_total", {}, 0),
        ("cgw_config_reloads_total", {"result": "applied"}, 2),
        ("cgw_config_reloads_total", {"result": "refused"}, 1),
    ]
    for name, labels, want in expected:
        assert value(got, name, **labels) == want, (name, labels)
    assert ("cgw_device_online", frozenset({("device", "dev-3")})) not in got  # never polled
    assert value(got, "process_resident_memory_bytes") > 0


def test_metrics_of_a_command_channel_between_runs_count_only_what_was_dropped() -> None:
    snap = dataclasses.replace(
        healthy(), commands=CommandsSnapshot(False, 0, 0, {}, 2), linkage=None, influx=None
    )
    got = scrape(lambda: snap)
    assert value(got, "cgw_commands_rejected_total", reason="not_running") == 2
    names = {name for name, _ in got}
    assert not names & {"cgw_commands_executed_total", "cgw_fire_linkage_active"}
    assert ("cgw_sink_connected", frozenset({("sink", "influx")})) not in got


def test_metrics_take_a_fresh_snapshot_on_every_scrape() -> None:
    opened: list[OpenAlarm] = []
    taken: list[GatewaySnapshot] = []

    def snapshot() -> GatewaySnapshot:
        taken.append(dataclasses.replace(healthy(), alarms=AlarmsSnapshot(True, (*opened,), {})))
        return taken[-1]

    registry = registry_for(snapshot)
    assert 'cgw_alarms_open{severity="critical"} 0.0' in render(registry).decode()
    opened.append(OpenAlarm("a", "critical", True))
    text = render(registry).decode()
    assert len(taken) == 2
    assert 'cgw_alarms_open{severity="critical"} 1.0' in text
    assert 'cgw_alarms_unacknowledged{severity="critical"} 1.0' in text


def test_the_clock_sync_flag_shows_in_health_metrics_and_status() -> None:
    from gateway.cli.status import summary

    for synced in (True, False):
        snap = dataclasses.replace(
            healthy(), gateway=dataclasses.replace(healthy().gateway, clock_synced=synced)
        )
        code, doc = health(snap)
        assert (code, doc["clock_synced"]) == (200, synced)  # shown, not a failing component
        assert value(scrape(functools.partial(lambda s: s, snap)), "cgw_clock_synced") == int(
            synced
        )
        line = "clock: synced" if synced else "clock: NOT synced (platform commands are refused)"
        assert line in summary(doc).splitlines()


def test_messages_the_broker_refused_show_in_health_metrics_and_status() -> None:
    from gateway.cli.status import summary

    mqtt = SinkSnapshot(
        True, "", 120, dead_lettered=1, dead_by_lane={"alarm": 1, "event": 0, "telemetry": 0}
    )
    snap = dataclasses.replace(healthy(), mqtt=mqtt)
    code, doc = health(snap)
    assert code == 200  # the link works; the broker refuses what it refuses: a person's job
    assert doc["components"]["sink:mqtt"] == {
        "ok": True,
        "detail": "connected; 1 alarm message(s) refused by the broker, dead-lettered",
    }
    assert doc["dead_lettered"] == {"mqtt": {"alarm": 1}, "influx": {"telemetry": 2}}
    samples = scrape(functools.partial(lambda s: s, snap))
    assert value(samples, "cgw_sink_dead_lettered_total", sink="mqtt", lane="alarm") == 1
    assert value(samples, "cgw_sink_dead_lettered_total", sink="mqtt", lane="event") == 0
    line = "dead-lettered (refused upstream): mqtt alarm 1, influx telemetry 2"
    assert line in summary(doc).splitlines()


def with_inputs(
    *devices: InputState,
    unmatched: dict[str, int] | None = None,
    rejects: dict[str, dict[str, int]] | None = None,
) -> GatewaySnapshot:
    inputs = dataclasses.replace(
        healthy().inputs, devices=devices, unmatched=unmatched or {}, rejects=rejects or {}
    )
    return dataclasses.replace(healthy(), inputs=inputs)


def test_an_alarm_input_not_running_makes_health_degraded_with_its_reason() -> None:
    from gateway.cli.status import summary

    snap = with_inputs(
        InputState("hall", "gpio", False, "no pin factory", True),
        InputState("spare", "gpio", False, "no pin factory", False),
        InputState("btn", "mqtt_button", True, "", True),
        InputState("coils", "modbus", None, "", True),
        unmatched={"btn": 4},
        rejects={
            "mqtt_buttons": {"rate_limited": 7, "not_json": 2, "too_large": 0},
            "door_terminals": {"not_json": 0},
        },
    )
    code, doc = health(snap)
    assert (code, doc["status"], doc["failing"]) == (503, "degraded", ["input:hall"])
    assert doc["components"]["input:hall"] == {
        "ok": False, "detail": "not running: no pin factory"
    }  # fmt: skip
    assert doc["components"]["input:coils"] == {"ok": True, "detail": "unknown"}  # not yet
    assert "input:spare" not in doc["components"]  # no rule names it: listed, not required
    assert doc["inputs"]["spare"] == {
        "kind": "gpio", "state": "not running: no pin factory", "alarm": False
    }  # fmt: skip
    assert doc["unmatched"] == {"btn": 4}
    assert doc["rejected"] == {"mqtt_buttons": {"not_json": 2, "rate_limited": 7}}
    lines = summary(doc).splitlines()
    assert "inputs: 1/4 running; coils unknown; hall not running: no pin factory; spare not" \
        " running: no pin factory" in lines  # fmt: skip
    assert "contacts no rule names (no alarm): btn 4" in lines
    got = scrape(functools.partial(lambda s: s, snap))
    assert value(got, "cgw_input_running", device="hall", kind="gpio", alarm="true") == 0
    assert value(got, "cgw_input_running", device="btn", kind="mqtt_button", alarm="true") == 1
    assert value(got, "cgw_contacts_unmatched_total", device="btn") == 4
    assert health(with_inputs(InputState("hall", "gpio", True, "", True)))[1]["status"] == "ok"


def test_alarms_list_shows_the_input_and_whether_it_is_active_in_their_own_columns(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gateway.cli.alarms import _print_table

    alarm = {
        "id": "4be1c0d2a9f04e11", "state": "raised", "severity": "critical", "device": "hall",
        "input": "sos_lobby", "active": True, "raised_at": "2026-12-07T03:30:40.000Z",
        "acked_by": "", "time_to_ack_s": None, "message": "emergency input sos_lobby pressed",
    }  # fmt: skip
    _print_table([alarm, {**alarm, "id": "x", "input": None, "active": False}])
    header, first, second, _ = capsys.readouterr().out.splitlines()
    assert header.split()[:6] == ["ID", "STATE", "SEVERITY", "DEVICE", "INPUT", "NOW"]
    assert first.split()[3:6] == ["hall", "sos_lobby", "active"]
    assert second.split()[3:6] == ["hall", "-", "normal"]


def test_a_dead_staff_channel_makes_health_degraded_and_shows_in_metrics() -> None:
    wecom = ChannelState(delivered=5, failed=4, in_a_row=3, last_ok=1.8e9, last_error="HTTP 500")
    channels = {"wecom": wecom, "sms": ChannelState(delivered=7)}
    snap = healthy()
    snap = dataclasses.replace(snap, alarms=dataclasses.replace(snap.alarms, channels=channels))
    code, doc = health(snap)
    assert (code, doc["status"], doc["failing"]) == (503, "degraded", ["channel:wecom"])
    assert (
        doc["components"]["channel:wecom"]["detail"] == "down: 3 messages not delivered (HTTP 500)"
    )
    assert doc["components"]["channel:sms"] == {"ok": True, "detail": "7 delivered, 0 failed"}
    text = render(registry_for(lambda: snap)).decode()
    assert 'cgw_notify_channel_down{channel="wecom"} 1.0' in text
    assert 'cgw_notify_failed_total{channel="wecom"} 4.0' in text
    assert 'cgw_notify_delivered_total{channel="sms"} 7.0' in text
    assert 'cgw_notify_last_success_timestamp_seconds{channel="wecom"} 1.8e+09' in text


def test_a_modem_that_cannot_send_shows_in_health_metrics_and_status() -> None:
    from gateway.cli.status import summary

    good = ModemState(
        "/dev/ttyUSB2", open=True, sim="ready", registered=True, csq=21,
        operator="CHINA MOBILE", checked=1.8e9, last_send=1.8e9 - 60,
    )  # fmt: skip
    lost = dataclasses.replace(
        good,
        registered=False,
        csq=None,
        operator="",
        problem="not registered on the mobile network",
    )
    for state, status in ((good, "ok"), (lost, "degraded")):
        channels = {"guard-sms": ChannelState(modem=state), "duty-call": ChannelState(modem=state)}
        snap = healthy()
        snap = dataclasses.replace(snap, alarms=dataclasses.replace(snap.alarms, channels=channels))
        code, doc = health(snap)
        assert doc["status"] == status
        modem = doc["modems"]["/dev/ttyUSB2"]
        assert modem["channels"] == ["duty-call", "guard-sms"]
        samples = scrape(functools.partial(lambda s: s, snap))
        assert value(samples, "cgw_modem_up", port="/dev/ttyUSB2") == int(state.ok)
        assert value(samples, "cgw_modem_registered", port="/dev/ttyUSB2") == int(state.registered)
        line = next(x for x in summary(doc).splitlines() if x.startswith("modem "))
        if state.ok:
            assert (code, modem["state"], modem["csq"], modem["operator"]) == (
                200,
                "ok",
                21,
                "CHINA MOBILE",
            )
            assert value(samples, "cgw_modem_signal_csq", port="/dev/ttyUSB2") == 21
            assert line.startswith(
                "modem /dev/ttyUSB2: ok; registered (CHINA MOBILE), signal 21/31, SIM ready"
            )
        else:
            assert doc["failing"] == ["channel:duty-call", "channel:guard-sms"]
            assert doc["components"]["channel:guard-sms"]["detail"] == (
                "down: modem /dev/ttyUSB2: not registered on the mobile network"
            )
            assert line.startswith(
                "modem /dev/ttyUSB2: CANNOT SEND: not registered on the mobile network;"
                " not registered, signal unknown"
            )


@pytest.mark.parametrize(
    ("left", "ok", "said"),
    [
        (400.0, True, "valid until 2027-01-15"),
        (29.6, False, "expires on 2027-01-15, in 30 days; renew it: install.sh --console ADDR"),
        (-2.0, False, "expired on 2027-01-15: browsers refuse the console; renew it"),
    ],
)
def test_the_console_certificate_warns_a_month_before_it_ends(
    left: float, ok: bool, said: str
) -> None:
    ends = 1800000000.0  # 2027-01-15
    console = ConsoleSnapshot(1, 0, 0, 3, 0, 0, cert_ends=ends, cert_days_left=left)
    code, doc = health(dataclasses.replace(healthy(), console=console))
    component = doc["components"]["console:certificate"]
    assert component["ok"] is ok
    assert said in component["detail"]
    assert (code, doc["status"]) == ((200, "ok") if ok else (503, "degraded"))
    snap = dataclasses.replace(healthy(), console=console)
    text = render(registry_for(lambda: snap)).decode()
    assert "cgw_console_certificate_expiry_timestamp_seconds 1.8e+09" in text
    plain = dataclasses.replace(console, cert_ends=None, cert_days_left=None)
    _, doc = health(dataclasses.replace(healthy(), console=plain))  # loopback, no HTTPS
    assert "console:certificate" not in doc["components"]
