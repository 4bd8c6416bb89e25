"""Config of staff notification channels: where a message goes, how fast, how persistently.

An apprise URL carries the channel's token or key, so URLs never appear in the YAML: ``url_file``
names a file that only its owner may read (mode 0600) with one URL per line. The file is read
when the channel is built (``gateway.notify``); its contents are never logged.
"""

from pydantic import Field

from gateway.config.base import Model, Name, SecretFile


class ChannelConfig(Model):
    """One staff notification channel, e.g. the guard room's WeCom group bot."""

    id: Name = Field(description="Channel id; escalation tiers refer to it")
    url_file: SecretFile = Field(
        description="File (mode 0600) with one apprise URL per line, e.g. 'wecombot://<key>';"
        " blank lines and lines starting with '#' are ignored; with several URLs every message"
        " goes to each of them"
    )
    rate: float = Field(
        20.0,
        gt=0,
        le=600,
        description="Messages per minute at most, retries included; sends are spaced 60/rate s"
        " apart (a WeCom group bot allows 20 per minute)",
    )
    retries: int = Field(
        3,
        ge=0,
        le=10,
        description="Tries after a failed one, with capped exponential backoff (1 + retries"
        " tries in all)",
    )
    timeout: float = Field(
        10.0,
        gt=0,
        le=120,
        description="Seconds one try may take; also the connect and read timeout of each URL",
    )
    verify_errcode: bool = Field(
        True,
        description="Count an HTTP 200 whose JSON body holds a non-zero 'errcode' as a failure"
        " (WeCom group bot and DingTalk, which apprise alone reports as delivered); see"
        " docs/notifications.md for what is verified",
    )
    title_prefix: str = Field(
        "",
        max_length=64,
        description="Text put before every title, e.g. '[阳光花园] ' to name the community",
    )
