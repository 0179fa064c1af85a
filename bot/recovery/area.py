"""The recovery area on the hub: the urge follow-up and the daily tip."""

from __future__ import annotations

from bot.core.hub import Hub
from bot.recovery import sos, tips


def install(hub: Hub) -> None:
    sos.setup(hub.sweeper, hub.content)
    tips.setup(hub.sweeper, hub.content, hub.lifecycle)
