"""The modem channel through python-gsmmodem-new against an emulated modem on a socat pty.

Nothing of the library is replaced: the gateway opens the pty as the modem's AT port, and the
emulator (``tests/support/modem.py``) answers as a Quectel EC25 would and decodes every SMS PDU
with the library's own decoder.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from gateway.config.notify import ModemChannelConfig
from gateway.core.snapshots import ModemState
from gateway.notify import Attempt, Notifier
from gateway.notify.modem import Modem, ModemChannel
from tests.support.modem import CallPlan, EmulatedModem

GUARD = "+8613800000001"
MANAGER = "+8613900000002"
TITLE = "【紧急】紧急呼叫 - 3号楼2单元"
CALL_MANAGER = [{"name": "manager", "phone": MANAGER, "sms": False, "call": True}]
BODY = (
    "站点 阳光花园，设备 3-2-501 紧急按钮：紧急呼叫：按钮被按下。告警编号 a1b2c3，发生时间 08:15。"
)


def config(port: Path, **fields: Any) -> ModemChannelConfig:
    doc: dict[str, Any] = {
        "kind": "modem",
        "id": "guard-sms",
        "port": str(port),
        "recipients": [{"name": "guard", "phone": GUARD}],
        "command_timeout": 1.0,
        "sms_timeout": 2.0,
        "retries": 0,
        "rate": 60,
    }
    return ModemChannelConfig.model_validate(doc | fields)


def pin_file(tmp_path: Path, pin: str) -> Path:
    """A SIM PIN file, as the installer writes it (mode 0600)."""
    path = tmp_path / "pin"
    path.write_text(f"{pin}\n")
    path.chmod(0o600)
    return path


async def send_once(cfg: ModemChannelConfig, title: str = "t", body: str = "b") -> list[Attempt]:
    """One message on a channel of its own modem, closed afterwards."""
    modem = Modem(cfg)
    try:
        return await ModemChannel(cfg, modem).send(title, body, severity="critical")
    finally:
        await modem.aclose()


@pytest_asyncio.fixture
async def channel(emulated_modem: EmulatedModem) -> AsyncIterator[ModemChannel]:
    cfg = config(emulated_modem.port)
    modem = Modem(cfg)
    try:
        yield ModemChannel(cfg, modem, backoff_base=0.01, backoff_cap=0.01)
    finally:
        await modem.aclose()


async def test_chinese_sms_goes_as_ucs2_pdus_in_concatenated_parts(
    emulated_modem: EmulatedModem, channel: ModemChannel
) -> None:
    attempts = await channel.send(TITLE, BODY, severity="critical")
    assert [a.ok for a in attempts] == [True], attempts
    assert emulated_modem.sms == [(GUARD, f"{TITLE}\n{BODY}")]
    assert len(emulated_modem.pdus) == 2  # 71 characters: more than one UCS-2 part holds
    assert channel.modem.state().last_send is not None


async def test_english_sms_is_one_gsm7_part(
    emulated_modem: EmulatedModem, channel: ModemChannel
) -> None:
    attempts = await channel.send("[CRITICAL] emergency call", "lobby, 08:15", severity="critical")
    assert attempts[-1].ok
    assert emulated_modem.sms == [(GUARD, "[CRITICAL] emergency call\nlobby, 08:15")]
    assert len(emulated_modem.pdus) == 1


@pytest.mark.parametrize(
    ("title", "body", "capacity", "end"),
    [
        ("紧急", "呼" * 300, 67, "呼…"),  # UCS-2: 67 characters a part
        ("SOS", "x" * 400, 153, "x..."),  # GSM 7-bit: '…' would force UCS-2, so '...'
    ],
)
async def test_text_longer_than_max_parts_is_cut_to_fit_them(
    emulated_modem: EmulatedModem, title: str, body: str, capacity: int, end: str
) -> None:
    attempts = await send_once(config(emulated_modem.port, max_parts=2), title, body)
    assert attempts[-1].ok
    ((_, text),) = emulated_modem.sms
    assert len(text) == 2 * capacity
    assert text.startswith(f"{title}\n")
    assert text.endswith(end)
    assert len(emulated_modem.pdus) == 2


async def test_a_call_rings_until_answered_then_hangs_up(emulated_modem: EmulatedModem) -> None:
    attempts = await send_once(config(emulated_modem.port, recipients=CALL_MANAGER))
    assert attempts[-1].ok, attempts
    assert emulated_modem.dialled == [(MANAGER, "hung up")]
    assert emulated_modem.sms == []
    assert "ATH" in emulated_modem.commands


@pytest.mark.parametrize(("outcome", "reason"), [("busy", "busy"), ("reject", "no carrier")])
async def test_a_busy_or_rejected_call_is_a_failure_that_says_why(
    emulated_modem: EmulatedModem, outcome: str, reason: str
) -> None:
    emulated_modem.calls[MANAGER] = CallPlan(outcome)
    attempts = await send_once(config(emulated_modem.port, recipients=CALL_MANAGER))
    assert [a.ok for a in attempts] == [False]
    assert attempts[0].error == f"manager (call): {reason}"
    assert emulated_modem.dialled == [(MANAGER, outcome)]
    assert MANAGER not in attempts[0].error


async def test_an_unanswered_call_is_hung_up_after_ring_seconds(
    emulated_modem: EmulatedModem,
) -> None:
    emulated_modem.calls[MANAGER] = CallPlan("no-answer")
    t0 = time.monotonic()
    attempts = await send_once(config(emulated_modem.port, ring=1.5, recipients=CALL_MANAGER))
    assert attempts[0].error == "manager (call): not answered within 1.5 s"
    assert 1.4 < time.monotonic() - t0 < 10
    assert emulated_modem.dialled == [(MANAGER, "cancelled")]


async def test_check_reports_sim_registration_signal_operator(
    emulated_modem: EmulatedModem, channel: ModemChannel
) -> None:
    state = await channel.modem.check()
    assert (state.open, state.sim, state.registered, state.csq, state.operator) == (
        True,
        "ready",
        True,
        21,
        "CHINA MOBILE",
    )
    assert state.ok
    with emulated_modem.lock:
        emulated_modem.registered = False
    state = await channel.modem.check()
    assert (state.registered, state.csq, state.problem) == (
        False,
        None,
        "not registered on the mobile network",
    )


async def test_an_unregistered_modem_fails_the_sms_and_says_why(
    emulated_modem: EmulatedModem, channel: ModemChannel
) -> None:
    emulated_modem.registered = False
    attempts = await channel.send("t", "b", severity="critical")
    assert attempts[0].error.startswith("guard (sms): the SMS text refused: CmsError 331")


async def test_a_modem_that_stops_answering_mid_send_is_reset_and_recovers(
    emulated_modem: EmulatedModem, channel: ModemChannel
) -> None:
    emulated_modem.silent_after = "<pdu>"  # takes AT+CMGS and the PDU, then says nothing
    t0 = time.monotonic()
    attempts = await channel.send("t", "b", severity="critical")
    assert time.monotonic() - t0 < 10  # sms_timeout 2 s, not a stuck alarm path
    assert attempts[0].error == "guard (sms): no answer to the SMS text"
    state = channel.modem.state()
    assert (state.open, state.resets, state.problem) == (False, 1, "no answer to the SMS text")
    with emulated_modem.lock:
        emulated_modem.silent_after = None
    assert (await channel.send("t", "b", severity="critical"))[0].ok
    assert emulated_modem.commands.count("ATZ") == 2  # the session was opened again
    assert (await channel.modem.check()).ok


async def test_garbage_from_the_modem_is_a_failure_and_a_reset(
    emulated_modem: EmulatedModem, channel: ModemChannel
) -> None:
    assert (await channel.modem.check()).ok
    with emulated_modem.lock:
        emulated_modem.garbage = True
    attempts = await channel.send("t", "b", severity="critical")
    assert not attempts[0].ok
    assert channel.modem.state().resets == 1
    with emulated_modem.lock:
        emulated_modem.garbage = False
    assert (await channel.send("t", "b", severity="critical"))[0].ok


async def test_a_missing_modem_is_reported_and_found_again(tmp_path: Path) -> None:
    emulated_modem = EmulatedModem(tmp_path / "pty")
    cfg = config(emulated_modem.port)
    modem = Modem(cfg)
    try:
        state = await modem.check()
        assert not state.ok
        assert state.problem.startswith("cannot open the modem"), state
        emulated_modem.start()
        try:
            assert (await modem.check()).ok
        finally:
            await modem.aclose()
            emulated_modem.stop()
    finally:
        await modem.aclose()  # a second close does nothing


async def test_the_sim_pin_comes_from_its_file(
    emulated_modem: EmulatedModem, tmp_path: Path
) -> None:
    emulated_modem.sim = "pin"
    pin = pin_file(tmp_path, "1234")
    cfg = config(emulated_modem.port, pin_file=str(pin))
    modem = Modem(cfg)
    try:
        assert (await modem.check()).sim == "ready"
    finally:
        await modem.aclose()
    assert 'AT+CPIN="1234"' in emulated_modem.commands


async def test_no_pin_for_a_locked_sim_is_reported(emulated_modem: EmulatedModem) -> None:
    emulated_modem.sim = "pin"
    modem = Modem(config(emulated_modem.port))
    try:
        state = await modem.check()
    finally:
        await modem.aclose()
    assert state.problem == "the SIM needs a PIN and no pin_file is configured"


async def test_channels_on_one_port_share_the_modem_and_the_watch_reports_each(
    emulated_modem: EmulatedModem,
) -> None:
    sms = config(emulated_modem.port, poll=1)
    call = config(
        emulated_modem.port,
        id="duty-call",
        poll=1,
        recipients=CALL_MANAGER,
    )
    seen: list[tuple[str, ModemState]] = []
    async with Notifier.from_config([sms, call]) as notifier:
        results = await notifier.send(["guard-sms", "duty-call"], "t", "b", severity="critical")
        assert all(tries[-1].ok for tries in results.values()), results
        watch = asyncio.create_task(notifier.watch(lambda cid, st: seen.append((cid, st))))
        try:
            await emulated_modem.wait(lambda _: len(seen) >= 2)
        finally:
            watch.cancel()
            with pytest.raises(asyncio.CancelledError):
                await watch
    assert {cid for cid, _ in seen} == {"guard-sms", "duty-call"}
    assert all(st.ok for _, st in seen)
    assert emulated_modem.commands.count("ATZ") == 1  # one session for both channels


async def test_a_refused_pin_is_never_sent_twice(
    emulated_modem: EmulatedModem, tmp_path: Path
) -> None:
    emulated_modem.sim = "pin"
    pin = pin_file(tmp_path, "9999")
    modem = Modem(config(emulated_modem.port, pin_file=str(pin)))
    try:
        for _ in range(3):
            state = await modem.check()
            assert state.problem == (
                "the SIM refused the PIN of pin_file; it is not sent again until the gateway"
                " restarts"
            )
    finally:
        await modem.aclose()
    assert emulated_modem.commands.count('AT+CPIN="9999"') == 1  # three wrong ones lock the SIM
