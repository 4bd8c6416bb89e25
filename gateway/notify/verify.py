"""apprise plugins that read the verdict in the answer's body: WeCom group bot and DingTalk.

Both services answer HTTP 200 to a message they refuse and put the refusal in the JSON body
(``{"errcode": 93000, "errmsg": "invalid webhook url"}``, ``{"errcode": 310000, "errmsg":
"keywords not in content"}``); apprise 2.3.0's plugins look only at the status code and report
such a message as delivered (LIBRARIES.md P17). apprise has no per-request hook (its plugins call
``requests.post`` themselves), so these subclasses replace ``send()`` alone: the same payload
and request as apprise's own ``send()``, plus the check. URL parsing and validation, DingTalk's
signing and the privacy-masked ``url()`` are inherited unchanged, with one fix: apprise 2.3.0
URL-quotes DingTalk's signature twice (see ``VerifiedDingTalk.send``).

Contract of ``send()``: True only for HTTP 200 with a JSON object whose ``errcode`` (or
``code``) is 0. Anything else is logged at WARNING on apprise's logger (captured into the
attempt's error, see ``transport``) without the URL: a ``requests`` exception's text names the
URL, token included, so only its class name is logged.

Importing this module imports apprise; ``transport`` imports it lazily.
"""

import json
from typing import Any
from urllib.parse import unquote

import requests  # apprise depends on it
from apprise.common import NotifyFormat, NotifyType
from apprise.plugins.base import NotifyBase
from apprise.plugins.dingtalk import NotifyDingTalk
from apprise.plugins.wecombot import NotifyWeComBot

__all__ = ["VerifiedDingTalk", "VerifiedWeComBot", "verdict", "verified"]

_ERRMSG_MAX = 200  # characters of the service's errmsg kept in the error


def verdict(content: bytes) -> str | None:
    """Why an HTTP 200 answer of a WeCom/DingTalk bot is a refusal, or None if it is a success."""
    try:
        doc = json.loads(content)
    except ValueError:
        return "the answer is not JSON"
    if not isinstance(doc, dict):
        return "the answer is not a JSON object"
    code = doc.get("errcode", doc.get("code"))
    if code is None:
        return "the answer has no errcode"
    if code in (0, "0"):
        return None
    errmsg = str(doc.get("errmsg", doc.get("msg", "")))[:_ERRMSG_MAX]
    return f"errcode={code} errmsg={errmsg}"


def _post(
    plugin: NotifyBase, url: str, payload: dict[str, Any], params: dict[str, str] | None
) -> bool:
    """POST ``payload`` as JSON like apprise's plugins do, then read the verdict in the body."""
    headers = {"User-Agent": plugin.app_id, "Content-Type": "application/json; charset=utf-8"}
    plugin.throttle()  # type: ignore[no-untyped-call]  # apprise's convention before any remote I/O (a no-op once disabled)
    name = plugin.service_name
    try:
        answer = requests.post(
            url,
            data=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
            headers=headers,
            params=params,
            verify=plugin.verify_certificate,
            timeout=plugin.request_timeout,
            allow_redirects=plugin.redirects,
        )
    except requests.RequestException as exc:
        # str(exc) contains the request URL, and with it the key: log the kind of failure only.
        plugin.logger.warning("%s: request failed (%s)", name, type(exc).__name__)
        return False
    if answer.status_code != requests.codes.ok:
        plugin.logger.warning("%s answered HTTP %d", name, answer.status_code)
        return False
    problem = verdict(answer.content)
    if problem is not None:
        plugin.logger.warning("%s refused the message: %s", name, problem)
        return False
    return True


class VerifiedWeComBot(NotifyWeComBot):  # type: ignore[no-untyped-call]
    """``wecombot://{key}`` that also checks ``errcode`` in the answer."""

    def send(
        self,
        body: str,
        title: str = "",
        notify_type: NotifyType = NotifyType.INFO,
        **kwargs: Any,
    ) -> bool:
        # A WeCom bot has no title (title_maxlen = 0): apprise has already put it into the body.
        payload = {"msgtype": "text", "text": {"content": body}}
        return _post(self, self.api_url, payload, None)


class VerifiedDingTalk(NotifyDingTalk):  # type: ignore[no-untyped-call]
    """``dingtalk://{token}/`` or signed ``dingtalk://{secret}@{token}/``, checking ``errcode``."""

    def send(
        self,
        body: str,
        title: str = "",
        notify_type: NotifyType = NotifyType.INFO,
        body_format: NotifyFormat | None = None,
        **kwargs: Any,
    ) -> bool:
        payload: dict[str, Any] = {
            "msgtype": "text",
            "at": {"atMobiles": self.targets, "isAtAll": False},
        }
        if body_format == NotifyFormat.MARKDOWN:
            # As apprise: markdown.title is only a preview, so the title is repeated as a heading.
            title = " ".join(title.split()).lstrip("#- ")
            payload["msgtype"] = "markdown"
            payload["markdown"] = {
                "title": title or self.app_desc,
                "text": f"# {title}\n{body}" if title else body,
            }
        else:
            payload["text"] = {"content": f"{title}\r\n{body}" if title else body}
        params = None
        if self.secret:
            timestamp, signature = self.get_signature()  # type: ignore[no-untyped-call]
            # get_signature() returns the signature URL-quoted and apprise hands that to requests'
            # params=, which quotes it again: DingTalk decodes once, sees '%2F...%3D' instead of
            # base64, and the reported answer is 310000 "sign not match" (wowiwj/ding-notice#11).
            # requests quotes once, so it gets the plain base64.
            params = {"timestamp": timestamp, "sign": unquote(signature)}
        return _post(self, self.notify_url.format(token=self.token), payload, params)


_VERIFIED: dict[type[NotifyBase], type[NotifyBase]] = {
    NotifyWeComBot: VerifiedWeComBot,
    NotifyDingTalk: VerifiedDingTalk,
}


def verified(plugin: NotifyBase) -> NotifyBase:
    """The errcode-checking twin of ``plugin``, or ``plugin`` itself when there is none.

    The twin is built from the plugin's own canonical URL, so native forms such as
    ``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...`` are covered too.
    """
    twin = _VERIFIED.get(type(plugin))
    if twin is None:
        return plugin
    kwargs = twin.parse_url(plugin.url(privacy=False))  # type: ignore[no-untyped-call]
    if not kwargs:  # a URL the plugin itself produced always parses: never fall back silently
        raise RuntimeError(f"apprise could not re-read its own {plugin.service_name} URL")
    kwargs["asset"] = plugin.asset
    return twin(**kwargs)
