"""The privacy area on the hub: erasure remembers what was sent to staff about a patient."""

from __future__ import annotations

from bot.core.hub import Hub
from bot.privacy import erasure


def install(hub: Hub) -> None:
    erasure.install(hub)
