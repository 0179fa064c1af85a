"""The check-ins area on the hub: its sweeper kinds, life-cycle hooks and start-up task."""

from __future__ import annotations

import logging

from bot.checkins import service as checkins
from bot.core.hub import Hub
from bot.escalation.rules import Workflow

log = logging.getLogger(__name__)


def install(hub: Hub) -> None:
    checkins.setup(hub.sweeper, hub.content, hub.lifecycle, lambda: hub.get(Workflow))
    hub.on_start.append(_ensure_prompts)


async def _ensure_prompts(hub: Hub) -> None:
    """Every active patient has a next prompt (one may be missing after a crash or an upgrade)."""
    async with hub.db.transaction() as s:
        n = await checkins.ensure_prompts(s, hub.clock.now())
    if n:
        log.info("checkins: scheduled the next prompt for %s patients at start-up", n)
