"""Staff notifications through real apprise against real local peers (LIBRARIES.md §3.9).

The peers: an in-process aiohttp server on 127.0.0.1:0 whose one catch-all route records every
request and answers what the test sets, and an aiosmtpd SMTP sink. WeCom, DingTalk and Feishu
plugins are pointed at the local server by patching their ``notify_url`` class attribute. No
part of apprise is mocked.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.message
import email.policy
import hashlib
import hmac
import itertools
import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from apprise.plugins.dingtalk import NotifyDingTalk
from apprise.plugins.feishu import NotifyFeishu
from apprise.plugins.wecombot import NotifyWeComBot

from gateway.config.notify import ChannelConfig
from gateway.core.errors import ConfigError
from gateway.notify import Attempt, Channel, Notifier
from tests.support.ports import free_port

WECOM_KEY = "wecom-key-0123456789"
DING_TOKEN = "dingtoken0123456789"
DING_SECRET = "SECdingsecret0123456789"
NOTIFY = "gateway.notify.channel"  # the logger of our notification records


# -- peers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float  # the loop's monotonic clock on arrival

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    """What the server replies: status, JSON body text, and a delay before replying."""

    status: int = 200
    body: str = '{"errcode": 0, "errmsg": "ok"}'
    delay: float = 0.0


@dataclass
class HttpPeer:
    """The catch-all HTTP server: it replies ``script.pop(0)`` while the script lasts, then
    ``answers[path]`` for a listed path and ``answer`` for any other."""

    port: int = 0
    answer: Answer = field(default_factory=Answer)
    answers: dict[str, Answer] = field(default_factory=dict)
    script: list[Answer] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def at(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(
            Seen(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=await request.read(),
                at=asyncio.get_running_loop().time(),
            )
        )
        by_path = self.answers.get(request.path, self.answer)
        answer = self.script.pop(0) if self.script else by_path
        if answer.delay:  # cut short at teardown, so the runner need not wait for it
            try:
                async with asyncio.timeout(answer.delay):
                    await self.release.wait()
            except TimeoutError:
                pass
        return web.Response(status=answer.status, text=answer.body, content_type="application/json")


@pytest_asyncio.fixture
async def http() -> AsyncIterator[HttpPeer]:
    peer = HttpPeer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", peer.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    peer.port = runner.addresses[0][1]
    try:
        yield peer
    finally:
        peer.release.set()
        await runner.cleanup()


class MailSink:
    """aiosmtpd handler that keeps every message."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


@dataclass(frozen=True)
class SmtpPeer:
    sink: MailSink
    port: int


@pytest.fixture
def smtp() -> Iterator[SmtpPeer]:
    sink = MailSink()
    port = free_port()  # Controller cannot bind port 0 (P21)
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpPeer(sink, port)
    finally:
        controller.stop()


# -- helpers ----------------------------------------------------------------------------------


def channel_config(tmp_path: Path, *urls: str, id: str = "guard", **fields: Any) -> ChannelConfig:
    """A channel whose URL file (mode 0600) holds ``urls`` from line 3 on.

    The rate defaults to 600/min (0.1 s apart) so that retries are paced by the backoff under
    test rather than by the limiter.
    """
    path = tmp_path / f"{id}.urls"
    path.write_text("# staff channel\n\n" + "\n".join(urls) + "\n", encoding="utf-8")
    path.chmod(0o600)
    fields.setdefault("rate", 600)
    return ChannelConfig(id=id, url_file=path, **fields)


@pytest.fixture
def wecom(http: HttpPeer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A wecombot:// URL whose plugin posts to the local server."""
    url = f"http://{http.host}/cgi-bin/webhook/send?key={{key}}"
    monkeypatch.setattr(NotifyWeComBot, "notify_url", url)
    return f"wecombot://{WECOM_KEY}"


@pytest.fixture
def dingtalk(http: HttpPeer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A signed dingtalk:// URL whose plugin posts to the local server."""
    url = f"http://{http.host}/robot/send?access_token={{token}}"
    monkeypatch.setattr(NotifyDingTalk, "notify_url", url)
    return f"dingtalk://{DING_SECRET}@{DING_TOKEN}/"


def fast(config: ChannelConfig) -> Channel:
    """A channel with a short backoff (0.05 s doubling up to 0.2 s), for retry tests."""
    return Channel(config, backoff_base=0.05, backoff_cap=0.2)


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


# -- delivery ---------------------------------------------------------------------------------


async def test_json_webhook_gets_one_request_with_title_and_body(
    tmp_path: Path, http: HttpPeer
) -> None:
    config = channel_config(
        tmp_path, f"json://{http.host}/alarm?+X-Gateway=gw01", title_prefix="[阳光花园] "
    )
    before = time.time()
    async with Channel(config) as channel:
        attempts = await channel.send(
            "烟感报警 B7-3F", "3F east smoke detector", severity="critical"
        )

    (attempt,) = attempts
    assert attempt.ok, attempt.error
    assert (attempt.channel, attempt.number, attempt.error) == ("guard", 1, "")
    assert before <= attempt.started <= time.time()
    assert 0 < attempt.duration < 5
    (seen,) = http.seen
    assert (seen.method, seen.path) == ("POST", "/alarm")
    assert seen.headers["X-Gateway"] == "gw01"
    doc = seen.json()
    assert doc["title"] == "[阳光花园] 烟感报警 B7-3F"
    assert doc["message"] == "3F east smoke detector"
    assert doc["type"] == "failure"  # severity critical


async def test_sms_gateway_form_of_json_webhook(tmp_path: Path, http: HttpPeer) -> None:
    """The docs' SMS gateway URL: a header token, fixed phone numbers, renamed and dropped keys."""
    url = (
        f"json://{http.host}/sms/send?+X-Api-Key=sms-api-key-42&-site=sunny"
        "&:phones=13800000000,13900000000&:message=text&:version=&:attachments="
    )
    async with Channel(channel_config(tmp_path, url)) as channel:
        (attempt,) = await channel.send("紧急呼叫 3-2-501", "pressed at 08:15", severity="critical")
    assert attempt.ok, attempt.error
    (seen,) = http.seen
    assert (seen.path, seen.query) == ("/sms/send", {"site": "sunny"})
    assert seen.headers["X-Api-Key"] == "sms-api-key-42"
    assert seen.json() == {
        "title": "紧急呼叫 3-2-501",
        "text": "pressed at 08:15",
        "type": "failure",
        "phones": "13800000000,13900000000",
    }


@pytest.mark.parametrize(("severity", "kind"), [("warning", "warning"), ("info", "info")])
async def test_severity_maps_to_notify_type(
    tmp_path: Path, http: HttpPeer, severity: Any, kind: str
) -> None:
    async with Channel(channel_config(tmp_path, f"json://{http.host}/x")) as channel:
        (attempt,) = await channel.send("t", "b", severity=severity)
    assert attempt.ok
    assert http.seen[0].json()["type"] == kind


async def test_http_500_is_retried_with_backoff_and_every_try_recorded(
    tmp_path: Path, http: HttpPeer
) -> None:
    http.answer = Answer(status=500, body='{"error": "boom"}')
    config = channel_config(tmp_path, f"json://{http.host}/alarm", retries=2)
    async with Channel(config, backoff_base=0.2, backoff_cap=1.0) as channel:
        attempts = await channel.send("t", "b", severity="critical")

    assert [(a.number, a.ok) for a in attempts] == [(1, False), (2, False), (3, False)]
    for attempt in attempts:
        assert "line 3 (JSON)" in attempt.error  # line 3: after a comment and a blank line
        assert "error=500" in attempt.error
    assert len(http.at("/alarm")) == 3  # 1 + retries requests reached the server
    # Backoff base 0.2 s doubling, up to 25 % jitter taken off: 0.15-0.2 s, then 0.3-0.4 s.
    first, second = gaps([s.at for s in http.seen])
    assert 0.14 <= first < 0.6
    assert 0.28 <= second < 0.9
    started = [a.started for a in attempts]
    assert started == sorted(started)


async def test_retry_goes_only_to_the_urls_that_failed(tmp_path: Path, http: HttpPeer) -> None:
    http.answers["/bad"] = Answer(status=503)
    config = channel_config(
        tmp_path, f"json://{http.host}/good", f"json://{http.host}/bad", retries=2
    )
    async with fast(config) as channel:
        attempts = await channel.send("t", "b", severity="warning")

    assert [a.ok for a in attempts] == [False, False, False]
    assert all("line 4 (JSON)" in a.error and "line 3" not in a.error for a in attempts)
    assert len(http.at("/good")) == 1
    assert len(http.at("/bad")) == 3


async def test_delivery_on_a_later_try_ends_the_retries(tmp_path: Path, http: HttpPeer) -> None:
    http.script = [Answer(status=502), Answer(status=502)]
    config = channel_config(tmp_path, f"json://{http.host}/alarm", retries=5)
    async with fast(config) as channel:
        attempts = await channel.send("t", "b", severity="critical")
    assert [(a.number, a.ok) for a in attempts] == [(1, False), (2, False), (3, True)]
    assert attempts[-1].error == ""
    assert len(http.seen) == 3


async def test_dead_port_fails_quickly(tmp_path: Path) -> None:
    config = channel_config(tmp_path, f"json://127.0.0.1:{free_port()}/alarm", retries=0)
    started = time.monotonic()
    async with Channel(config) as channel:
        (attempt,) = await channel.send("t", "b", severity="critical")
    assert not attempt.ok
    assert attempt.error.startswith("line 3 (JSON): ")
    assert attempt.duration < 2.0
    assert time.monotonic() - started < 3.0


async def test_a_silent_peer_is_cut_off_at_the_timeout(tmp_path: Path, http: HttpPeer) -> None:
    http.answer = Answer(delay=5.0)
    config = channel_config(tmp_path, f"json://{http.host}/alarm", retries=0, timeout=0.5)
    async with Channel(config) as channel:
        (attempt,) = await channel.send("t", "b", severity="critical")
    assert not attempt.ok
    assert attempt.error.startswith("line 3 (JSON): ")
    assert 0.4 <= attempt.duration < 1.5


async def test_rate_limit_spaces_sends(tmp_path: Path, http: HttpPeer) -> None:
    config = channel_config(tmp_path, f"json://{http.host}/alarm", rate=120)  # one per 0.5 s
    async with Channel(config) as channel, asyncio.TaskGroup() as group:
        sends = [group.create_task(channel.send(f"t{i}", "b", severity="info")) for i in range(5)]
    assert all(a.ok for task in sends for a in task.result())
    times = [s.at for s in http.seen]
    assert len(times) == 5
    assert all(gap >= 0.4 for gap in gaps(times)), gaps(times)
    assert 1.8 <= times[-1] - times[0] < 4.0


# -- bots that answer 200 with an error body (P17) -------------------------------------------


async def test_wecombot_errcode_is_a_failure_when_verified(
    tmp_path: Path, http: HttpPeer, wecom: str
) -> None:
    http.answer = Answer(body='{"errcode": 93000, "errmsg": "invalid webhook url"}')
    async with fast(channel_config(tmp_path, wecom, retries=1)) as channel:
        attempts = await channel.send("烟感报警", "3F east", severity="critical")

    assert [a.ok for a in attempts] == [False, False]
    assert "errcode=93000 errmsg=invalid webhook url" in attempts[0].error
    assert "WeCom Bot" in attempts[0].error
    assert WECOM_KEY not in attempts[0].error
    seen = http.seen[0]
    assert (seen.path, seen.query) == ("/cgi-bin/webhook/send", {"key": WECOM_KEY})
    assert seen.json() == {"msgtype": "text", "text": {"content": "烟感报警\r\n3F east"}}


async def test_wecombot_errcode_zero_is_delivered_when_verified(
    tmp_path: Path, http: HttpPeer, wecom: str
) -> None:
    async with Channel(channel_config(tmp_path, wecom)) as channel:
        (attempt,) = await channel.send("t", "b", severity="critical")
    assert attempt.ok, attempt.error


@pytest.mark.parametrize(
    "body",
    ["<html>captive portal</html>", "[]", '{"errmsg": "ok"}'],
    ids=["html", "list", "no-code"],
)
async def test_wecombot_answer_without_a_verdict_is_a_failure(
    tmp_path: Path, http: HttpPeer, wecom: str, body: str
) -> None:
    http.answer = Answer(body=body)
    async with Channel(channel_config(tmp_path, wecom, retries=0)) as channel:
        (attempt,) = await channel.send("t", "b", severity="critical")
    assert not attempt.ok
    assert "refused the message: the answer" in attempt.error


async def test_wecombot_errcode_is_reported_delivered_when_not_verified(
    tmp_path: Path, http: HttpPeer, wecom: str
) -> None:
    """apprise alone cannot tell: verify_errcode=false shows its verdict (P17)."""
    http.answer = Answer(body='{"errcode": 93000, "errmsg": "invalid webhook url"}')
    config = channel_config(tmp_path, wecom, verify_errcode=False)
    async with Channel(config) as channel:
        (attempt,) = await channel.send("t", "b", severity="critical")
    assert attempt.ok
    assert http.seen[0].json() == {"msgtype": "text", "text": {"content": "t\r\nb"}}


async def test_wecombot_native_https_url_is_verified_too(
    tmp_path: Path, http: HttpPeer, wecom: str
) -> None:
    http.answer = Answer(body='{"errcode": 93000, "errmsg": "invalid webhook url"}')
    native = f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={WECOM_KEY}"
    async with Channel(channel_config(tmp_path, native, retries=0)) as channel:
        (attempt,) = await channel.send("t", "b", severity="critical")
    assert not attempt.ok
    assert "errcode=93000" in attempt.error


async def test_dingtalk_signed_errcode_is_a_failure_and_signature_is_valid(
    tmp_path: Path, http: HttpPeer, dingtalk: str
) -> None:
    http.answer = Answer(body='{"errcode": 310000, "errmsg": "keywords not in content"}')
    async with Channel(channel_config(tmp_path, dingtalk, retries=0)) as channel:
        (attempt,) = await channel.send("门禁报警", "east gate forced", severity="warning")

    assert not attempt.ok
    assert "errcode=310000 errmsg=keywords not in content" in attempt.error
    assert DING_SECRET not in attempt.error
    assert DING_TOKEN not in attempt.error
    (seen,) = http.seen
    assert seen.query["access_token"] == DING_TOKEN
    # DingTalk's rule: sign = base64(HMAC-SHA256(secret, f"{timestamp}\n{secret}")), URL-quoted
    # once; the server's query parser undoes that one quoting.
    timestamp = seen.query["timestamp"]
    mac = hmac.new(DING_SECRET.encode(), f"{timestamp}\n{DING_SECRET}".encode(), hashlib.sha256)
    assert seen.query["sign"] == base64.b64encode(mac.digest()).decode()
    assert abs(int(timestamp) / 1000 - time.time()) < 60
    assert seen.json()["text"] == {"content": "门禁报警\r\neast gate forced"}


async def test_dingtalk_unverified_is_apprise_as_is_double_quoted_sign_and_all(
    tmp_path: Path, http: HttpPeer, dingtalk: str
) -> None:
    """Stock apprise 2.3.0: the signature arrives quoted twice and 310000 counts as delivered."""
    http.answer = Answer(body='{"errcode": 310000, "errmsg": "sign not match"}')
    config = channel_config(tmp_path, dingtalk, verify_errcode=False)
    async with Channel(config) as channel:
        (attempt,) = await channel.send("t", "b", severity="warning")
    assert attempt.ok
    assert "%" in http.seen[0].query["sign"]


async def test_feishu_checks_its_body_code_natively(
    tmp_path: Path, http: HttpPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        NotifyFeishu, "notify_url", f"http://{http.host}/open-apis/bot/v2/hook/{{token}}/"
    )
    http.answer = Answer(body='{"code": 9499, "msg": "Bad Request", "data": {}}')
    config = channel_config(tmp_path, "feishu://feishutoken0123456789", retries=0)
    async with Channel(config) as channel:
        (attempt,) = await channel.send("t", "b", severity="critical")
    assert not attempt.ok
    assert "code=9499" in attempt.error
    assert http.seen[0].json() == {"msg_type": "text", "content": {"text": "t\r\nb"}}


async def test_json_webhook_errcode_body_is_not_verified(tmp_path: Path, http: HttpPeer) -> None:
    """json:// judges by HTTP status only: an SMS gateway must answer non-2xx to refuse."""
    http.answer = Answer(body='{"errcode": 40001, "errmsg": "no such phone"}')
    async with Channel(channel_config(tmp_path, f"json://{http.host}/sms")) as channel:
        (attempt,) = await channel.send("t", "b", severity="critical")
    assert attempt.ok


# -- e-mail -----------------------------------------------------------------------------------


async def test_email_arrives_with_the_title_as_subject(tmp_path: Path, smtp: SmtpPeer) -> None:
    url = f"mailto://127.0.0.1:{smtp.port}?from=gw01@example.com&to=staff@example.com&mode=insecure"
    config = channel_config(tmp_path, url, title_prefix="[阳光花园] ")
    async with Channel(config) as channel:
        (attempt,) = await channel.send(
            "紧急呼叫 3-2-501", "pressed at 08:15\n第二行", severity="critical"
        )

    assert attempt.ok, attempt.error
    (envelope,) = smtp.sink.envelopes
    assert envelope.mail_from == "gw01@example.com"
    assert envelope.rcpt_tos == ["staff@example.com"]
    assert isinstance(envelope.content, bytes)
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert message["Subject"] == "[阳光花园] 紧急呼叫 3-2-501"
    assert isinstance(message, email.message.EmailMessage)
    text = message.get_body(("plain",))
    assert text is not None
    assert text.get_content().splitlines() == ["pressed at 08:15", "第二行"]


# -- several channels -------------------------------------------------------------------------


async def test_a_slow_channel_does_not_delay_a_fast_one(tmp_path: Path, http: HttpPeer) -> None:
    http.answers["/slow"] = Answer(delay=2.0)
    slow = channel_config(tmp_path, f"json://{http.host}/slow", id="slow", timeout=5)
    fast = channel_config(tmp_path, f"json://{http.host}/fast", id="fast", timeout=5)
    started = time.monotonic()
    async with Notifier([Channel(slow), Channel(fast)]) as notifier:
        result = await notifier.send(["slow", "fast"], "t", "b", severity="critical")
    elapsed = time.monotonic() - started

    assert set(result) == {"slow", "fast"}
    (slow_try,) = result["slow"]
    (fast_try,) = result["fast"]
    assert slow_try.ok
    assert fast_try.ok

    def ends(a: Attempt) -> float:
        return a.started + a.duration

    assert ends(fast_try) < ends(slow_try) - 1.0
    assert fast_try.duration < 1.0
    assert 1.9 <= slow_try.duration < 4.0
    assert elapsed < 4.0  # concurrent, not 2 s + 2 s


async def test_notifier_refuses_unknown_and_duplicate_channels(
    tmp_path: Path, http: HttpPeer
) -> None:
    config = channel_config(tmp_path, f"json://{http.host}/x")
    with pytest.raises(ConfigError, match="defined twice"):
        Notifier([Channel(config), Channel(config)])
    async with Notifier.from_config([config]) as notifier:
        assert notifier.ids == {"guard"}
        with pytest.raises(ConfigError, match="no notify channel 'duty'"):
            await notifier.send(["guard", "duty"], "t", "b", severity="info")
    assert http.seen == []


# -- building channels, secrets ---------------------------------------------------------------


async def test_bad_urls_are_config_errors_naming_lines_not_urls(tmp_path: Path) -> None:
    bad_key = "wecombot://bad!key!secret"
    config = channel_config(tmp_path, "json://127.0.0.1/x", bad_key, "nonsense-secret-value")
    with pytest.raises(ConfigError) as info:
        Channel(config)
    assert info.value.errors == [
        f"notify channel guard: line 4 of {config.url_file} is not a URL apprise can use"
        " (scheme 'wecombot')",
        f"notify channel guard: line 5 of {config.url_file} is not a URL apprise can use"
        " (scheme missing)",
    ]


async def test_a_url_file_without_urls_is_a_config_error(tmp_path: Path) -> None:
    config = channel_config(tmp_path)
    with pytest.raises(ConfigError, match="holds no URL"):
        Channel(config)


async def test_secrets_never_reach_the_logs(
    tmp_path: Path, http: HttpPeer, wecom: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    http.answers["/cgi-bin/webhook/send"] = Answer(status=500)
    password = "json-password-0123456789"
    secret_urls = [wecom, f"json://gw:{password}@{http.host}/alarm?+X-Token=header-secret-42"]
    config = channel_config(tmp_path, *secret_urls, retries=1)
    async with fast(config) as channel:
        attempts = await channel.send("t", "b", severity="critical")
    with pytest.raises(ConfigError) as info:
        Channel(channel_config(tmp_path, "dingtalk://bad!secret@dingtoken0123456789/", id="d"))

    assert [a.ok for a in attempts] == [False, False]
    assert "notify guard: try 1 of 2 failed" in caplog.text
    assert "notify guard: not delivered after 2 tries" in caplog.text
    assert all(getattr(r, "channel", None) == "guard" for r in caplog.records if r.name == NOTIFY)
    assert http.at("/alarm")[0].headers["X-Token"] == "header-secret-42"
    # apprise's own records never reach the gateway's handlers. (pytest's caplog attaches itself
    # to non-propagating loggers too, so they are left out here by name: apprise logs the token
    # of a DingTalk URL with a bad secret at WARNING.)
    assert logging.getLogger("apprise").propagate is False
    peer = ("apprise", "aiohttp.access")  # aiohttp.access: the local server's own access log
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith(peer)]
    shown = "\n".join(ours) + str(info.value) + "".join(a.error for a in attempts)
    for secret in [WECOM_KEY, password, "header-secret-42", "dingtoken0123456789", *secret_urls]:
        assert secret not in shown


def test_importing_the_package_does_not_import_apprise() -> None:
    code = "import sys, gateway.notify; print('apprise' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
