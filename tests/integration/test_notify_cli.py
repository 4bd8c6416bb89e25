"""``cgw notify test``: an installer sends a test message on one channel, as a process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.config.notify import ModemChannelConfig
from gateway.notify.modem import Modem
from tests.support.daemon import run_cgw, write_config
from tests.support.modem import EmulatedModem
from tests.support.ports import free_port

GUARD = "+8613800000001"
INSTALLER = "+8613700000003"


def gateway(tmp_path: Path, channels: list[dict[str, Any]], language: str = "zh-CN") -> Path:
    doc = {
        "gateway": {"site_id": "sunny-garden", "gateway_id": "gw1"},
        "store": {"path": str(tmp_path / "buffer.db")},
        "upstream": {"mqtt": {"host": "127.0.0.1", "port": free_port()}},
        "alarms": {"language": language, "timezone": "Asia/Shanghai"},
        "channels": channels,
    }
    return write_config(tmp_path / "gateway.yaml", doc)


def modem_channel(port: Path) -> dict[str, Any]:
    return {
        "kind": "modem",
        "id": "guard-sms",
        "port": str(port),
        "recipients": [{"name": "guard", "phone": GUARD}],
        "command_timeout": 2.0,
        "retries": 0,
    }


async def test_a_modem_channel_test_reaches_the_recipients_in_the_staff_language(
    tmp_path: Path, emulated_modem: EmulatedModem
) -> None:
    config = gateway(tmp_path, [modem_channel(emulated_modem.port)])
    code, out, err = await run_cgw("notify", "test", "guard-sms", "-c", str(config))
    assert (code, err) == (0, ""), out
    assert out.startswith("guard-sms: try 1, ")
    assert out.rstrip().endswith("delivered")
    ((number, text),) = emulated_modem.sms
    assert number == GUARD
    assert text.startswith(
        "【测试】站点 sunny-garden：通知渠道测试\n这是通知渠道 guard-sms 的测试消息"
    )


async def test_to_sends_the_test_sms_to_the_installer_only(
    tmp_path: Path, emulated_modem: EmulatedModem
) -> None:
    config = gateway(tmp_path, [modem_channel(emulated_modem.port)], language="en")
    code, out, _ = await run_cgw(
        "notify", "test", "guard-sms", "-c", str(config), "--to", INSTALLER
    )
    assert code == 0, out
    ((number, text),) = emulated_modem.sms
    assert number == INSTALLER
    assert text.startswith("[TEST] Site sunny-garden: staff channel test\nA test of staff channel")


async def test_a_modem_the_running_gateway_holds_is_refused_not_shared(
    tmp_path: Path, emulated_modem: EmulatedModem
) -> None:
    channel = modem_channel(emulated_modem.port)
    held = Modem(ModemChannelConfig.model_validate(channel))  # as the daemon holds it
    try:
        assert (await held.check()).ok
        code, out, _ = await run_cgw(
            "notify", "test", "guard-sms", "-c", str(gateway(tmp_path, [channel]))
        )
    finally:
        await held.aclose()
    assert code == 1
    assert "failed: guard (sms): cannot open the modem" in out
    assert emulated_modem.sms == []


async def test_an_internet_channel_test_says_why_it_failed(tmp_path: Path) -> None:
    urls = tmp_path / "urls"
    urls.write_text(f"json://127.0.0.1:{free_port()}/hook\n")
    urls.chmod(0o600)
    channel = {"id": "guard-room", "url_file": str(urls), "retries": 0, "timeout": 2}
    config = gateway(tmp_path, [channel])
    code, out, _ = await run_cgw("notify", "test", "guard-room", "-c", str(config))
    assert code == 1
    assert out.startswith("guard-room: try 1, ")
    assert "failed: line 1 (JSON)" in out


async def test_unknown_channel_and_to_on_an_internet_channel_are_usage_errors(
    tmp_path: Path,
) -> None:
    urls = tmp_path / "urls"
    urls.write_text("json://127.0.0.1:9/hook\n")
    urls.chmod(0o600)
    config = gateway(tmp_path, [{"id": "guard-room", "url_file": str(urls)}])
    code, _, err = await run_cgw("notify", "test", "nobody", "-c", str(config))
    assert (code, err.strip()) == (2, f"no channel 'nobody' in {config} (known: guard-room)")
    code, _, err = await run_cgw("notify", "test", "guard-room", "-c", str(config), "--to", GUARD)
    assert code == 2
    assert "--to needs a modem channel" in err
