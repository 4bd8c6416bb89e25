"""The platform's command channel as a component: signed commands in, results out.

Contract: ``run_commands`` is the component's ``run`` (see ``gateway.runtime.components``). It
gets what the command actions act on as ports (the dispatcher, the linkage, the health
document, the planned absences), and ``hold``, which the runtime uses to hand incoming command
messages to the running service (``None`` after: the runtime counts what arrives meanwhile).
"""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.commands.dispatch import Dispatcher
from gateway.config.models import Config
from gateway.core.clock import Clock
from gateway.core.messages import Record
from gateway.core.timesync import SyncState

if TYPE_CHECKING:
    from gateway.alarms.linkage import FireLinkage
    from gateway.commands.actions import Absences
    from gateway.commands.service import CommandService


async def run_commands(
    cfg: Config,
    add: Callable[[Record], None],
    clock: Clock,
    synced: SyncState,
    orders: Dispatcher,
    linkage: "Callable[[], FireLinkage | None]",
    health: Callable[[], tuple[int, dict[str, Any]]],
    absences: "Callable[[], Absences | None]",
    hold: "Callable[[CommandService | None], None]",
) -> None:
    """Take the platform's commands until cancelled (``cfg.commands`` must be set)."""
    from gateway.commands.actions import GatewayActions  # cryptography: only when configured
    from gateway.commands.service import CommandService

    assert cfg.commands is not None
    service = CommandService(
        cfg.commands,
        cfg.store.path,
        cfg.gateway.site_id,
        cfg.gateway.gateway_id,
        add,
        clock,
        synced,
        GatewayActions(orders, linkage, health, absences),
    )
    hold(service)
    try:
        await service.run()
    finally:
        hold(None)
