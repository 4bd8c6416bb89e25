"""Reload on SIGHUP: which new config the running gateway may take, and why it refuses one.

A reload never starts from an unchecked file: ``checked`` loads and validates it, and refuses
it (logging the keys and reasons, returning None) when it is invalid or when it changes what
only a restart can change: the identity, the topic root, the store, or the set of sinks (the
store keeps one cursor per sink, fixed when it opens).

``reload`` is the whole step: systemd hears RELOADING=1, then READY=1 whatever happens; a
config that passes is applied (the components whose config changed restart), the log level
follows it, and one INFO line says what changed.
"""

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from gateway.config.loader import load_config
from gateway.config.models import Config
from gateway.core.errors import ConfigError
from gateway.ops import systemd
from gateway.runtime.components import Changes

log = logging.getLogger(__name__)


def restart_needed(old: Config, new: Config) -> list[str]:
    """Changes a reload cannot apply: each needs ``systemctl restart cgw``."""
    out = []
    if old.gateway != new.gateway:
        out.append("gateway (the identity)")
    if old.upstream.mqtt.topic_root != new.upstream.mqtt.topic_root:
        out.append("upstream.mqtt.topic_root")
    if old.store != new.store:
        out.append("store")
    if (old.upstream.influx is None) != (new.upstream.influx is None):
        out.append("upstream.influx (adding or removing a sink)")
    return out


def checked(path: Path, running: Config) -> Config | None:
    """The config in ``path`` if a reload may apply it; else None, with the reason logged."""
    try:
        new = load_config(path)
    except ConfigError as exc:
        log.error("reload of %s refused; the running config stays: %s", path, "; ".join(exc.errors))
        return None
    blocked = restart_needed(running, new)
    if blocked:
        log.error(
            "reload of %s refused: %s changed, which needs a restart (systemctl restart cgw);"
            " the running config stays",
            path,
            ", ".join(blocked),
        )
        return None
    return new


async def reload(
    path: Path, running: Config, apply: Callable[[Config], Awaitable[Changes]]
) -> Config | None:
    """Check ``path`` and ``apply`` it: the config now running, or None if it was refused."""
    systemd.notify("RELOADING=1")
    try:
        new = checked(path, running)
        if new is None:
            return None
        changes = await apply(new)
        logging.getLogger().setLevel(new.log_level)
        log.info("config %s reloaded: %s", path, changes.summary())
        return new
    finally:
        systemd.notify("READY=1")
