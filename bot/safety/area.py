"""The safety area on the hub: the timeout of an unanswered safety question."""

from __future__ import annotations

from bot.core.hub import Hub
from bot.safety import service as safety


def install(hub: Hub) -> None:
    safety.install(hub)
