"""The recovery area on the hub: its rules (content/rules/sos.yaml) for the handlers, the urge
follow-up and the daily tip."""

from __future__ import annotations

from bot.core.hub import Hub
from bot.recovery import sos, tips
from bot.recovery.rules import load_sos_rules


def install(hub: Hub) -> None:
    hub.provide(load_sos_rules(hub.content.root))
    sos.setup(hub.sweeper, hub.content)
    tips.setup(hub.sweeper, hub.content, hub.lifecycle)
