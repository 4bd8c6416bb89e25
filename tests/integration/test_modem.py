"""The modem channel through python-gsmmodem-new against an emulated modem on a socat pty.

Nothing of the library is replaced: the gateway opens the pty as the modem's AT port, and the
emulator (``tests/support/modem.py``) answers as a Quectel EC25 would and decodes every SMS PDU
with the library's own decoder.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
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


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatedModem]:
    with EmulatedModem(tmp_path / "pty") as modem:
        yield modem


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


async def send_once(cfg: ModemChannelConfig, title: str = "t", body: str = "b") -> list[Attempt]:
    """One message on a channel of its own modem, closed afterwards."""
    modem = Modem(cfg)
    try:
        return await ModemChannel(cfg, modem).send(title, body, severity="critical")
    finally:
        await modem.aclose()


@pytest_asyncio.fixture
async def channel(emulator: EmulatedModem) -> AsyncIterator[ModemChannel]:
    cfg = config(emulator.port)
    modem = Modem(cfg)
    try:
        yield ModemChannel(cfg, modem, backoff_base=0.01, backoff_cap=0.01)
    finally:
        await modem.aclose()


async def test_chinese_sms_goes_as_ucs2_pdus_in_concatenated_parts(
    emulator: EmulatedModem, channel: ModemChannel
) -> None:
    attempts = await channel.send(TITLE, BODY, severity="critical")
    assert [a.ok for a in attempts] == [True], attempts
    assert emulator.sms == [(GUARD, f"{TITLE}\n{BODY}")]
    assert len(emulator.pdus) == 2  # 71 characters: more than one UCS-2 part holds
    assert channel.modem.state().last_send is not None


async def test_english_sms_is_one_gsm7_part(emulator: EmulatedModem, channel: ModemChannel) -> None:
    attempts = await channel.send("[CRITICAL] emergency call", "lobby, 08:15", severity="critical")
    assert attempts[-1].ok
    assert emulator.sms == [(GUARD, "[CRITICAL] emergency call\nlobby, 08:15")]
    assert len(emulator.pdus) == 1


async def test_text_longer_than_max_parts_is_cut(emulator: EmulatedModem, tmp_path: Path) -> None:
    attempts = await send_once(config(emulator.port, max_parts=2), "紧急", "呼" * 300)
    assert attempts[-1].ok
    ((_, text),) = emulator.sms
    assert len(text) == 2 * 67
    assert text.endswith("…")
    assert text.startswith("紧急\n呼")
    assert len(emulator.pdus) == 2


async def test_a_call_rings_until_answered_then_hangs_up(emulator: EmulatedModem) -> None:
    attempts = await send_once(config(emulator.port, recipients=CALL_MANAGER))
    assert attempts[-1].ok, attempts
    assert emulator.dialled == [(MANAGER, "hung up")]
    assert emulator.sms == []
    assert "ATH" in emulator.commands


@pytest.mark.parametrize(("outcome", "reason"), [("busy", "busy"), ("reject", "no carrier")])
async def test_a_busy_or_rejected_call_is_a_failure_that_says_why(
    emulator: EmulatedModem, outcome: str, reason: str
) -> None:
    emulator.calls[MANAGER] = CallPlan(outcome)
    attempts = await send_once(config(emulator.port, recipients=CALL_MANAGER))
    assert [a.ok for a in attempts] == [False]
    assert attempts[0].error == f"manager (call): {reason}"
    assert emulator.dialled == [(MANAGER, outcome)]
    assert MANAGER not in attempts[0].error


async def test_an_unanswered_call_is_hung_up_after_ring_seconds(emulator: EmulatedModem) -> None:
    emulator.calls[MANAGER] = CallPlan("no-answer")
    t0 = time.monotonic()
    attempts = await send_once(config(emulator.port, ring=1.5, recipients=CALL_MANAGER))
    assert attempts[0].error == "manager (call): not answered within 1.5 s"
    assert 1.4 < time.monotonic() - t0 < 10
    assert emulator.dialled == [(MANAGER, "cancelled")]


async def test_check_reports_sim_registration_signal_operator(
    emulator: EmulatedModem, channel: ModemChannel
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
    with emulator.lock:
        emulator.registered = False
    state = await channel.modem.check()
    assert (state.registered, state.csq, state.problem) == (
        False,
        None,
        "not registered on the mobile network",
    )


async def test_an_unregistered_modem_fails_the_sms_and_says_why(
    emulator: EmulatedModem, channel: ModemChannel
) -> None:
    emulator.registered = False
    attempts = await channel.send("t", "b", severity="critical")
    assert attempts[0].error.startswith("guard (sms): the SMS text refused: CmsError 331")


async def test_a_modem_that_stops_answering_mid_send_is_reset_and_recovers(
    emulator: EmulatedModem, channel: ModemChannel
) -> None:
    emulator.silent_after = "<pdu>"  # takes AT+CMGS and the PDU, then says nothing
    t0 = time.monotonic()
    attempts = await channel.send("t", "b", severity="critical")
    assert time.monotonic() - t0 < 10  # sms_timeout 2 s, not a stuck alarm path
    assert attempts[0].error == "guard (sms): no answer to the SMS text"
    state = channel.modem.state()
    assert (state.open, state.resets, state.problem) == (False, 1, "no answer to the SMS text")
    with emulator.lock:
        emulator.silent_after = None
    assert (await channel.send("t", "b", severity="critical"))[0].ok
    assert emulator.commands.count("ATZ") == 2  # the session was opened again
    assert (await channel.modem.check()).ok


async def test_garbage_from_the_modem_is_a_failure_and_a_reset(
    emulator: EmulatedModem, channel: ModemChannel
) -> None:
    assert (await channel.modem.check()).ok
    with emulator.lock:
        emulator.garbage = True
    attempts = await channel.send("t", "b", severity="critical")
    assert not attempts[0].ok
    assert channel.modem.state().resets == 1
    with emulator.lock:
        emulator.garbage = False
    assert (await channel.send("t", "b", severity="critical"))[0].ok


async def test_a_missing_modem_is_reported_and_found_again(tmp_path: Path) -> None:
    emulator = EmulatedModem(tmp_path / "pty")
    cfg = config(emulator.port)
    modem = Modem(cfg)
    try:
        state = await modem.check()
        assert not state.ok
        assert state.problem.startswith("cannot open the modem"), state
        emulator.start()
        try:
            assert (await modem.check()).ok
        finally:
            await modem.aclose()
            emulator.stop()
    finally:
        await modem.aclose()  # a second close does nothing


async def test_the_sim_pin_comes_from_its_file(emulator: EmulatedModem, tmp_path: Path) -> None:
    emulator.sim = "pin"
    pin = tmp_path / "pin"
    pin.write_text("1234\n")
    pin.chmod(0o600)
    cfg = config(emulator.port, pin_file=str(pin))
    modem = Modem(cfg)
    try:
        assert (await modem.check()).sim == "ready"
    finally:
        await modem.aclose()
    assert 'AT+CPIN="1234"' in emulator.commands


async def test_no_pin_for_a_locked_sim_is_reported(emulator: EmulatedModem) -> None:
    emulator.sim = "pin"
    modem = Modem(config(emulator.port))
    try:
        state = await modem.check()
    finally:
        await modem.aclose()
    assert state.problem == "the SIM needs a PIN and no pin_file is configured"


async def test_channels_on_one_port_share_the_modem_and_the_watch_reports_each(
    emulator: EmulatedModem,
) -> None:
    sms = config(emulator.port, poll=1)
    call = config(
        emulator.port,
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
            await emulator.wait(lambda _: len(seen) >= 2)
        finally:
            watch.cancel()
            with pytest.raises(asyncio.CancelledError):
                await watch
    assert {cid for cid, _ in seen} == {"guard-sms", "duty-call"}
    assert all(st.ok for _, st in seen)
    assert emulator.commands.count("ATZ") == 1  # one session for both channels
