"""Staff notifications: one message on named channels (WeCom, DingTalk, Feishu, e-mail, webhooks,
and SMS and voice calls through a local 4G modem).

``Notifier`` holds the channels by id and sends to several at once; a ``Channel`` rate-limits,
retries with backoff and returns every try as an ``Attempt``. Neither raises for a message that
was not delivered. apprise does the delivery; it is imported only when a channel is built
(``transport``), so importing this package stays cheap; the modem library is imported with
``gateway.notify.modem``. See docs/notifications.md.
"""

from gateway.notify.channel import Attempt, Channel, Severity
from gateway.notify.notifier import Notifier

__all__ = ["Attempt", "Channel", "Notifier", "Severity"]
